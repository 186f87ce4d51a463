"""air-interp: hooks, probes and training for shared-weight recurrent Transformers (AIR, HRM).

    from air_interp import AIRConfig, HookedAIR, load_model
"""
from .checkpoints import convert, export_official, load_model, save_model
from .config import INJECTION_PRESETS, PRESETS, AIRConfig
from .errors import AirInterpError
from .hooks import Site, SiteHookPoint
from .model import ACTCarry, HookedAIR, RolloutOutput

__all__ = [
    "ACTCarry", "AIRConfig", "AirInterpError", "HookedAIR", "INJECTION_PRESETS", "PRESETS", "RolloutOutput",
    "Site", "SiteHookPoint", "convert", "export_official", "load_model", "save_model",
]
