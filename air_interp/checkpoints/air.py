"""The AIR release's checkpoints: modules ``air.air_1net_<variant>``, one shared stack ``f_level``."""
from __future__ import annotations

from typing import Any, Optional

from ..config import AIRConfig, variant_fields
from ..errors import AirInterpError
from .public import PublicConfig, PublicFormat

_PREFIX = "air_1net_"
# Our variant names the release spells otherwise (variant_fields reads both spellings).
_RELEASE_NAMES = {"gx_nonlinear": "gx_non_linear", "hadamard": "had_prod",
                  "L2x_H2x_token_addition": "L2x_H2x_input_token_addition",
                  "L2x_H2x_token_prepend": "L2x_H2x_input_token_prepend",
                  "L2x_H2x_token_prepend_persist": "L2x_H2x_input_token_prepend_no_strip"}


class AirFormat(PublicFormat):
    label = "AIR"
    stacks = {"stack": "f_level"}

    def fields(self, config: PublicConfig) -> Optional[dict[str, Any]]:
        if not config.module.startswith(_PREFIX):
            return None
        try:
            return variant_fields(config.module.removeprefix(_PREFIX))
        except AirInterpError:
            raise AirInterpError(f"{config.file}: unknown variant {config.name!r} in arch.name") from None

    def arch(self, cfg: AIRConfig) -> Optional[dict[str, Any]]:
        """The release has attention, one L-state beside z_H and ceil(puzzle_emb_ndim / d) prefix rows."""
        runs = (cfg.arch == "air" and not cfg.variant.startswith("trm") and cfg.mixer == "attention"
                and cfg.L_states == 1 and not cfg.single_state and cfg.puzzle_emb_rows == 0)
        return {"name": f"air.{_PREFIX}{_RELEASE_NAMES.get(cfg.variant, cfg.variant)}@AIR"} if runs else None


AIR = AirFormat()
