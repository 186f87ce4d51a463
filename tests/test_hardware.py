"""Precision per machine and CPU threads: the decision for any CPU, and the probes' --dtype."""
import json
import shutil

import pandas as pd
import pytest
import torch
import yaml

from air_interp import hardware, load_model
from air_interp.cli import main
from air_interp.data import load_dataset
from air_interp.defaults import DEFAULT_DATASETS
from air_interp.errors import AirInterpError
from air_interp.probes.attention import AttentionOptions, attention_contrasts
from conftest import FIXTURES, tiny_model

# The flags lines of /proc/cpuinfo on this project's two kinds of machine (abridged).
EPYC_ZEN3 = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat sse sse2 ht syscall nx mmxext "
             "fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 "
             "movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy abm sse4a misalignsse "
             "3dnowprefetch bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt "
             "xsavec xgetbv1 clzero xsaveerptr rdpru wbnoinvd arat npt nrip_save umip pku ospke vaes vpclmulqdq rdpid")
SAPPHIRE_RAPIDS = ("fpu vme de pse tsc msr pae sse sse2 ss ht syscall nx pdpe1gb rdtscp lm fma cx16 sse4_1 sse4_2 "
                   "avx f16c avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512vbmi "
                   "avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8")
COOPER_LAKE_LIKE = "sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16"  # AVX512-BF16 without AMX (also Zen 4)


def fake_cpuinfo(tmp_path, monkeypatch, flags: str, model: str = "Test CPU") -> None:
    """Point the flag reader at a /proc/cpuinfo with two processors."""
    block = f"processor\t: {{n}}\nvendor_id\t: Test\nmodel name\t: {model}\nflags\t\t: {flags}\n"
    path = tmp_path / "cpuinfo"
    path.write_text(block.format(n=0) + "\n" + block.format(n=1))
    monkeypatch.setattr(hardware, "CPUINFO", path)
    hardware.cpu_flags.cache_clear()
    hardware.cpu_model.cache_clear()


@pytest.fixture(autouse=True)
def fresh_flag_cache():
    hardware.cpu_flags.cache_clear()
    hardware.cpu_model.cache_clear()
    yield
    hardware.cpu_flags.cache_clear()
    hardware.cpu_model.cache_clear()


@pytest.mark.parametrize("flags, native", [(EPYC_ZEN3, False), (SAPPHIRE_RAPIDS, True), (COOPER_LAKE_LIKE, True)])
def test_flags_are_read_from_cpuinfo_and_decide_the_cpu_dtype(tmp_path, monkeypatch, flags, native):
    fake_cpuinfo(tmp_path, monkeypatch, flags, model="AMD EPYC 7B13" if flags == EPYC_ZEN3 else "Intel Xeon")
    assert hardware.cpu_flags() == frozenset(flags.split())
    assert hardware.native_bf16(hardware.cpu_flags()) is native
    assert hardware.cpu_model() in ("AMD EPYC 7B13", "Intel Xeon")
    cpu_choice = hardware.resolve_dtype("auto", "cpu", checkpoint_dtype="bfloat16")
    assert cpu_choice == ("bfloat16" if native else "float32")
    assert hardware.resolve_dtype("float32", "cpu") == "float32"  # an explicit request always wins
    assert hardware.resolve_dtype("bfloat16", "cpu") == "bfloat16"


@pytest.mark.parametrize("stored", ["float32", "bfloat16"])
def test_cuda_keeps_the_checkpoint_dtype_whatever_the_cpu(stored):
    for flags in (EPYC_ZEN3.split(), SAPPHIRE_RAPIDS.split(), []):
        assert hardware.preferred_dtype("cuda", flags, stored) == stored


def test_missing_cpuinfo_means_no_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "absent")
    assert hardware.cpu_flags() == frozenset()
    assert hardware.resolve_dtype("auto", "cpu") == "float32"


def test_unknown_dtype_is_a_one_line_error():
    with pytest.raises(AirInterpError, match="dtype must be one of auto, float32, bfloat16"):
        hardware.resolve_dtype("float64", "cpu")


def test_load_model_dtype_override_and_slow_bf16_warning(tmp_path, monkeypatch):
    fake_cpuinfo(tmp_path, monkeypatch, EPYC_ZEN3)
    path = tmp_path / "bf16.safetensors"
    tiny_model(forward_dtype="bfloat16").save(path)
    with pytest.warns(UserWarning, match="without native bf16 matmuls"):
        assert load_model(path).cfg.forward_dtype == "bfloat16"
    assert load_model(path, dtype="auto").cfg.forward_dtype == "float32"
    assert load_model(path, dtype="float32").state_dict().keys() == load_model(path, dtype="auto").state_dict().keys()
    fake_cpuinfo(tmp_path, monkeypatch, SAPPHIRE_RAPIDS)
    assert load_model(tmp_path / "bf16.safetensors", dtype="auto").cfg.forward_dtype == "bfloat16"


def test_default_threads_respect_omp_and_leave_half_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert hardware.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(hardware, "available_cores", lambda: 8)
    assert hardware.default_threads() == 4
    monkeypatch.setattr(hardware, "available_cores", lambda: 1)
    assert hardware.default_threads() == 1
    before = torch.get_num_threads()
    try:
        assert hardware.set_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(AirInterpError, match="--threads must be at least 1"):
        hardware.set_threads(0)


@pytest.fixture
def public_bf16_checkpoint(tmp_path):
    """The public Lx_H fixture with its all_config.yaml saying nothing about the dtype: the
    public code's default, bfloat16 (SPEC 4)."""
    run = tmp_path / "public_run"
    shutil.copytree(FIXTURES / "air_1net_Lx_H", run)
    config = yaml.safe_load((run / "all_config.yaml").read_text())
    del config["arch"]["forward_dtype"]
    (run / "all_config.yaml").write_text(yaml.safe_dump(config))
    return run / "step_1"


def attention_cli(checkpoint, out, *extra: str) -> pd.DataFrame:
    assert main(["attention", str(checkpoint), "--puzzles", "2", "--steps", "2", "--bootstrap", "100",
                 "--out", str(out), "--quiet", "--threads", "1", *extra]) == 0
    return pd.read_csv(out / "attention_rows.csv")


@pytest.mark.slow
def test_attention_on_a_public_bf16_checkpoint_runs_fp32_without_native_bf16(
        tmp_path, monkeypatch, capsys, public_bf16_checkpoint):
    fake_cpuinfo(tmp_path, monkeypatch, EPYC_ZEN3)
    split = load_dataset(DEFAULT_DATASETS["sudoku"]).split("test")
    options = AttentionOptions(steps=(2,))

    def library_rows(dtype: str) -> pd.DataFrame:
        model = load_model(public_bf16_checkpoint, dtype=dtype)
        assert model.cfg.forward_dtype == dtype
        return attention_contrasts(model, split.inputs[:2], split.labels[:2], options, progress=False)

    rows = attention_cli(public_bf16_checkpoint, tmp_path / "auto")
    printed = capsys.readouterr().out
    assert "forward dtype float32 (auto: this CPU has no native bf16 matmuls" in printed
    assert "the checkpoint says bfloat16" in printed
    info = json.loads((tmp_path / "auto" / "attention_run.json").read_text())
    assert info["checkpoints"][0]["forward_dtype"] == "float32" and info["threads"] == 1
    pd.testing.assert_frame_equal(rows, library_rows("float32"), check_dtype=False, rtol=1e-5, atol=1e-6)

    rows = attention_cli(public_bf16_checkpoint, tmp_path / "bf16", "--dtype", "bfloat16")
    assert "forward dtype bfloat16 (as requested)" in capsys.readouterr().out
    pd.testing.assert_frame_equal(rows, library_rows("bfloat16"), check_dtype=False, rtol=1e-5, atol=1e-6)
