"""What this machine does well: the forward dtype a model should run in, and how many CPU threads.

The one place that decides precision. On CUDA a model runs in its checkpoint's dtype (bf16 for
the paper's). On a CPU with native bf16 matrix instructions (AMX or AVX512-BF16, e.g. Intel
Sapphire Rapids) it runs in bf16: benchmarks/train_step.py measured 5-6x the fp32 matmul
throughput there, and training steps 2.3-2.5x as fast. On any other CPU (e.g. AMD EPYC with AVX2
only) it runs in fp32: bf16 matmuls are emulated there and were 6-9x *slower* (docs/training.md). The decision is a pure function of
(device type, CPU flags), :func:`preferred_dtype`, so it can be checked for any machine; the
flags are read from ``/proc/cpuinfo``. Torch is imported lazily so command-line help stays quick.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .errors import AirInterpError

if TYPE_CHECKING:
    from .model import HookedAIR

DTYPE_CHOICES = ("auto", "float32", "bfloat16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# The ISA flags a benchmark reports (the ones that decide matmul speed per precision).
BENCHMARK_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_fields() -> dict[str, str]:
    """``key: value`` lines of the first processor in /proc/cpuinfo (empty where there is none)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's ISA flags as the kernel reports them (x86 ``flags``, Arm ``Features``)."""
    fields = _cpuinfo_fields()
    return frozenset((fields.get("flags") or fields.get("Features") or "").split())


@lru_cache(maxsize=1)
def cpu_model() -> str:
    import platform

    fields = _cpuinfo_fields()
    return fields.get("model name") or fields.get("Model") or platform.processor() or "unknown CPU"


def native_bf16(flags: Iterable[str]) -> bool:
    """True when the flags name a native bf16 matrix instruction set (AMX-BF16 or AVX512-BF16)."""
    return any(flag in NATIVE_BF16_FLAGS for flag in flags)


def preferred_dtype(device_type: str, flags: Iterable[str], checkpoint_dtype: str = "bfloat16") -> str:
    """The forward dtype that runs fastest without giving up accuracy (see the module docstring).

    ``device_type`` is a torch device type (``"cpu"``, ``"cuda"``); off the CPU the checkpoint's
    own dtype is kept.
    """
    if device_type != "cpu":
        return checkpoint_dtype
    return "bfloat16" if native_bf16(flags) else "float32"


def resolve_dtype(requested: str, device_type: str, checkpoint_dtype: str = "bfloat16") -> str:
    """``requested`` (``auto``, ``float32`` or ``bfloat16``) as a concrete dtype name for this machine."""
    if requested not in DTYPE_CHOICES:
        raise AirInterpError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {requested!r}")
    if requested != "auto":
        return requested
    return preferred_dtype(device_type, cpu_flags(), checkpoint_dtype)


def dtype_note(requested: str, resolved: str, device_type: str, checkpoint_dtype: str) -> str:
    """One line saying which dtype runs and why, for a command's output."""
    if requested != "auto":
        reason = "as requested"
    elif device_type != "cpu":
        reason = f"auto: the checkpoint's dtype on {device_type}"
    elif native_bf16(cpu_flags()):
        found = "/".join(flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags())
        reason = f"auto: this CPU has native bf16 matmuls ({found})"
    else:
        reason = "auto: this CPU has no native bf16 matmuls (no amx_bf16 or avx512_bf16)"
    if checkpoint_dtype != resolved:
        reason += f"; the checkpoint says {checkpoint_dtype}"
    return f"{resolved} ({reason})"


def apply_dtype(model: "HookedAIR", requested: str) -> str:
    """Set a loaded :class:`~air_interp.model.HookedAIR`'s forward dtype from ``requested``
    (``auto``, ``float32``, ``bfloat16``) for the device it is on; returns :func:`dtype_note`."""
    device_type, stored = model.device.type, model.cfg.forward_dtype
    resolved = resolve_dtype(requested, device_type, stored)
    model.set_forward_dtype(resolved)
    return dtype_note(requested, resolved, device_type, stored)


def slow_bf16_warning(model: "HookedAIR") -> Optional[str]:
    """A warning when ``model`` would run bf16 on a CPU without native bf16 matmuls, else None."""
    if model.cfg.forward_dtype != "bfloat16" or model.device.type != "cpu" or native_bf16(cpu_flags()):
        return None
    return ("this model runs in bfloat16 on a CPU without native bf16 matmuls (no amx_bf16 or avx512_bf16), "
            "6-9x slower than float32 here; pass dtype='auto' or 'float32' to load_model")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set, else half the available cores (at least 1).

    Half, because these machines are shared: two spinning OpenMP threads that compete with
    another process ran 10 to 30 times slower here (docs/training.md).
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, available_cores() // 2)


def set_threads(threads: Optional[int] = None) -> int:
    """Set torch's intra-op thread count (``None``: :func:`default_threads`); returns it."""
    import torch

    count = default_threads() if threads is None else threads
    if count < 1:
        raise AirInterpError(f"--threads must be at least 1, got {count}")
    torch.set_num_threads(count)
    return count


def numerics_signature() -> str:
    """The kind of CPU kernels that fp32 results depend on, e.g. ``torch2.13.0-GenuineIntel-AVX512-AMX``.

    The same fp32 operations give the same bits only on the same kernels: matrix products and
    softmax/norm reductions are vectorised per CPU capability (and per vendor in MKL), and a
    16-step rollout amplifies a last-bit difference to O(1). So a stored number holds bit for bit
    only where this signature matches the one it was made under. ``ATEN_CPU_CAPABILITY=avx2``
    changes it, as it changes the kernels. The definition is the public fixtures' own (their
    README, "Numerics"), so a signature names the same machine kind there and here.
    """
    import platform

    import torch

    fields = _cpuinfo_fields()
    vendor = fields.get("vendor_id", platform.machine())
    amx = "-AMX" if " amx_tile" in " " + fields.get("flags", "") else ""
    return f"torch{torch.__version__.split('+')[0]}-{vendor}-{torch.backends.cpu.get_cpu_capability()}{amx}"


def machine_record() -> dict[str, object]:
    """What every stored result records of the machine behind it: the CPU, its numerics signature
    (a number is reproducible bit for bit only under the same one) and torch's thread count."""
    import torch

    return {"cpu": cpu_model(), "numerics": numerics_signature(), "threads": torch.get_num_threads()}


def machine_summary() -> str:
    """CPU model, the ISA flags that matter for matmul speed, cores, torch's thread count and version."""
    import torch

    flags = cpu_flags()
    isa = " ".join(flag for flag in BENCHMARK_FLAGS if flag in flags) or "none of " + " ".join(BENCHMARK_FLAGS)
    return (f"CPU: {cpu_model()} ({available_cores()} cores); ISA: {isa}; native bf16: "
            f"{'yes' if native_bf16(flags) else 'no'}; torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()} kernels), {torch.get_num_threads()} thread(s)")
