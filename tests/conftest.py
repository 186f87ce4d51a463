"""Shared helpers: tiny models and random batches, so model tests run in seconds on a CPU."""
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # commands default to it (air_interp.hardware.default_threads)

import json  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from air_interp import AIRConfig, HookedAIR
from air_interp.hardware import numerics_signature

FIXTURES = Path(__file__).parent / "data" / "public_checkpoints"
# One thread, as the fixtures were made; tiny models run as fast, and never oversubscribe a shared machine.
torch.set_num_threads(1)

# Numerics (../shared/fixtures/README.md, "Numerics"): stored fp32 bits hold only on the kind of CPU
# kernels that made them. NUMERICS names this machine's kind; RECORDED the kinds with fixture outputs.
NUMERICS = numerics_signature()
RECORDED = json.loads((FIXTURES / "signatures.json").read_text())
# After one ACT step the recorded kinds' kernels differ by at most 2.9e-5 (the public code on Zen 4, its
# AVX512 against its AVX2 kernels, over all 16 variants); an AVX2-only Zen 3 differs from Zen 4 by
# 2.9e-5 too. A convention error moves these outputs by 1e-2 or more.
STEP1_TOLERANCE = 1e-4


def tiny_config(variant: str = "Lx_H", task: str = "sudoku", **overrides) -> AIRConfig:
    sizes = dict(d_model=32, n_heads=4, n_layers=2, puzzle_emb_ndim=32, halt_max_steps=2, forward_dtype="float32")
    sizes.update(overrides)
    return AIRConfig.preset(variant, task=task, **sizes)


def tiny_model(variant: str = "Lx_H", seed: int = 0, randomise: bool = True, **overrides) -> HookedAIR:
    """A small model; with ``randomise`` every parameter (zero-initialised ones too) gets noise."""
    torch.manual_seed(seed)
    model = HookedAIR(tiny_config(variant, **overrides)).eval()
    if randomise:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.startswith(("puzzle_emb", "level_token", "q_head")):
                    param.normal_(0, 0.5)
    return model


def sudoku_test_puzzles(count: int):
    """(inputs, labels) of the first ``count`` puzzles of the shipped Sudoku test split."""
    from air_interp.data import load_dataset
    from air_interp.defaults import DEFAULT_DATASETS

    split = load_dataset(DEFAULT_DATASETS["sudoku"]).split("test")
    return split.inputs[:count], split.labels[:count]


def random_batch(model: HookedAIR, size: int = 3, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    return {
        "inputs": torch.randint(0, cfg.vocab_size, (size, cfg.seq_len), generator=gen),
        "puzzle_identifiers": torch.zeros(size, dtype=torch.long),
    }


@pytest.fixture
def model(request) -> HookedAIR:
    """A tiny randomised model; a test module may set ``MODEL_OVERRIDES`` (e.g. more ACT steps)."""
    return tiny_model(**getattr(request.module, "MODEL_OVERRIDES", {}))


@pytest.fixture(scope="module")
def puzzles(request):
    """(inputs, labels) of the first ``N_PUZZLES`` (a module attribute, default 5) shipped Sudoku test puzzles."""
    return sudoku_test_puzzles(getattr(request.module, "N_PUZZLES", 5))
