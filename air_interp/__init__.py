"""air-interp: hooks, probes and training for shared-weight recurrent Transformers (AIR, HRM).

    from air_interp import AIRConfig, HookedAIR, load_model

The names below are imported on first use, so importing a part of the package that needs no
torch (the command-line parser, the config) stays quick.
"""
from importlib import import_module
from typing import Any

_HOMES = {
    "convert": "checkpoints", "export_official": "checkpoints", "load_model": "checkpoints",
    "save_model": "checkpoints",
    "INJECTION_PRESETS": "config", "PRESETS": "config", "AIRConfig": "config",
    "AirInterpError": "errors",
    "Site": "hooks", "SiteHookPoint": "hooks",
    "ACTCarry": "model", "HookedAIR": "model", "RolloutOutput": "model",
    "Trace": "trace",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'air_interp' has no attribute {name!r}")
    value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
