"""HRM's checkpoints: module ``hrm.hrm_act_v1``, two stacks ``H_level`` and ``L_level``.

Its hub repositories (``sapientinc/HRM-checkpoint-*``, SPEC 5.2) publish the state dict as one file
named ``checkpoint`` beside ``all_config.yaml``, instead of a run's ``step_<N>``.
"""
from __future__ import annotations

from typing import Any, Optional

from ..config import AIRConfig, variant_fields
from .public import PublicConfig, PublicFormat

HUB_FILE = "checkpoint"
_NAME = "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"


def hrm_fields(config: PublicConfig) -> dict[str, Any]:
    """The HRM baseline's fields and its H-stack depth (AIR's one stack has none)."""
    return dict(variant_fields("hrm"), **config.values({"H_layers": "H_layers"}))


class HrmFormat(PublicFormat):
    label = "HRM"
    stacks = {"L_stack": "L_level", "H_stack": "H_level"}
    published_files = (HUB_FILE,)

    def fields(self, config: PublicConfig) -> Optional[dict[str, Any]]:
        return hrm_fields(config) if config.module == "hrm_act_v1" else None

    def arch(self, cfg: AIRConfig) -> Optional[dict[str, Any]]:
        runs = cfg.arch == "hrm" and cfg.mixer == "attention" and cfg.puzzle_emb_rows == 0
        return {"name": _NAME} if runs else None


HRM = HrmFormat()
