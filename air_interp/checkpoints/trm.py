"""The TRM repository's checkpoints (SPEC 5.1): modules ``recursive_reasoning.trm``, ``.trm_singlez``
and ``.trm_hier6`` (one shared stack, named ``L_level``; ``H_layers`` is ignored, as there) and its
copy of HRM, ``recursive_reasoning.hrm``. Each may replace attention by the MLP over positions
(``arch.mlp_t``); the trm modules write their prefix length (``arch.puzzle_emb_len``), HRM's copy
ignores it. Its ``all_config.yaml`` is a pydantic dump: every entry not read here is ignored.
"""
from __future__ import annotations

from typing import Any, Optional

from ..allowed import Allowed
from ..config import AIRConfig, variant_fields
from .hrm import hrm_fields
from .public import PublicConfig, PublicFormat

_PACKAGE = "recursive_reasoning"
_TRM_CLASS, _HRM_CLASS = "TinyRecursiveReasoningModel_ACTV1", "HierarchicalReasoningModel_ACTV1"
_MODULE_OF_STATES = {1: "trm", 6: "trm_hier6"}  # L-states -> module; a one-state model is trm_singlez
_TRM_MODULES = ("trm", "trm_singlez", "trm_hier6")  # each is also our preset of that name


class TrmFormat(PublicFormat):
    label = "TRM"
    stacks = {"stack": "L_level", "L_stack": "L_level", "H_stack": "H_level"}

    def fields(self, config: PublicConfig) -> Optional[dict[str, Any]]:
        if config.package != _PACKAGE or config.module not in (*_TRM_MODULES, "hrm"):
            return None
        mlp_t = Allowed(bool).check(config.arch.get("mlp_t", False), f"{config.file}: arch.mlp_t")
        if config.module == "hrm":
            fields = hrm_fields(config)
        else:
            fields = variant_fields("trm_mlp_t" if mlp_t and config.module == "trm" else config.module)
            fields.update(config.values({"puzzle_emb_len": "puzzle_emb_rows"}))
        return dict(fields, mixer="mlp_t") if mlp_t else fields

    def arch(self, cfg: AIRConfig) -> Optional[dict[str, Any]]:
        module = _module(cfg)
        if module is None:
            return None
        name = f"{_PACKAGE}.{module}@{_HRM_CLASS if module == 'hrm' else _TRM_CLASS}"
        return {"name": name, "puzzle_emb_len": cfg.puzzle_emb_rows, "mlp_t": cfg.mixer == "mlp_t"}


def _module(cfg: AIRConfig) -> Optional[str]:
    """The module of the TRM repository that runs ``cfg``: its trm models, and its HRM for the
    mlp_t mixer that HRM's own code lacks."""
    if cfg.arch == "hrm":
        return "hrm" if cfg.mixer == "mlp_t" and cfg.puzzle_emb_rows == 0 else None
    if not cfg.variant.startswith("trm"):
        return None
    return "trm_singlez" if cfg.single_state else _MODULE_OF_STATES.get(cfg.L_states)


TRM = TrmFormat()
