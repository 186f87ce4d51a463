"""The hook-point tree: one TransformerLens ``HookPoint`` per place the shared stack is called.

The weights of the stack are shared by every sub-step, but the hook points are not: the tree
``step.{s}.sub.{k}.layer.{l}...`` has a separate point for every call site, so each point fires
at most once per forward and ``run_with_cache`` / ``run_with_hooks`` / nnsight address a single
sub-step by name. Every point carries its :class:`Site` as data.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from .errors import AirInterpError

if TYPE_CHECKING:
    from .config import AIRConfig

# What TransformerLens's ``model.hooks(fwd_hooks=...)`` takes: (name or name filter, hook function) pairs.
FwdHooks = list[tuple[Union[str, Callable[..., Any]], Callable[..., Any]]]


@dataclass(frozen=True)
class Site:
    """Where a hook point sits: ACT step, sub-step, update kind ('L'/'H'), layer and the state the
    sub-step's update writes (None where not applicable)."""

    step: Optional[int] = None
    sub: Optional[int] = None
    kind: Optional[str] = None
    layer: Optional[int] = None
    state: Optional[str] = None

    def name(self, point: str) -> str:
        """The full name of hook point ``point`` at this site, e.g. ``Site(2, 0, "L", 1).name(
        "attn.hook_pattern")`` is ``step.2.sub.0.layer.1.attn.hook_pattern``: the one place names
        are built."""
        parts = [("step", self.step), ("sub", self.sub), ("layer", self.layer)]
        return ".".join([f"{part}.{index}" for part, index in parts if index is not None] + [point])

    def global_sub_step(self, sub_steps: int) -> int:
        """``sub_steps * step + sub``: the sub-step's index in the whole rollout."""
        if self.step is None or self.sub is None:
            raise ValueError(f"{self} is not a sub-step")
        return sub_steps * self.step + self.sub


class SiteHookPoint(HookPoint):
    """A HookPoint that knows its site and, for state hooks, the previous value of the state.

    During the call of a state hook (``hook_z_L``, ``hook_z_H``, ...), ``hook.previous`` holds the
    value of the state before this update, so freezing a state is ``lambda z, hook: hook.previous``.

    A forward hook that returns a value must return a tensor of the shape and dtype it received;
    anything else is a one-line AirInterpError naming the hook point and both (checked only when
    a hook returns something, so an idle rollout costs nothing more).
    """

    def __init__(self, site: Site) -> None:
        super().__init__()
        self.site = site
        self.previous: Optional[torch.Tensor] = None
        self.exposed = False

    def is_active(self) -> bool:
        """True when anything (TransformerLens, raw PyTorch hooks, an exposure request) needs the value."""
        return self.exposed or bool(self._forward_hooks) or bool(self._forward_pre_hooks) or bool(
            self._backward_hooks
        )

    def layer(self) -> int:
        """The layer of this point (TransformerLens parses ``blocks.{l}`` names; ours say it as data)."""
        if self.site.layer is None:
            raise ValueError(f"hook point {self.name} is not inside a layer")
        return self.site.layer

    def add_hook(self, hook: Callable[..., Any], dir: Any = "fwd", is_permanent: bool = False,
                 level: Optional[int] = None, prepend: bool = False, alias_names: Optional[list[str]] = None) -> Any:
        """TransformerLens ``add_hook``; a forward hook's return value is checked (see the class)."""
        if dir == "fwd" and not isinstance(hook, _CheckedHook):
            hook = _CheckedHook(hook, self)
        return super().add_hook(hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend,
                                alias_names=alias_names)

    def call_with_previous(self, value: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        self.previous = previous
        try:
            return self(value)
        finally:
            self.previous = None


class _CheckedHook:
    """A forward hook whose return value, when it has one, must be a tensor like the one it received."""

    __slots__ = ("hook", "point")

    def __init__(self, hook: Callable[..., Any], point: SiteHookPoint) -> None:
        self.hook, self.point = hook, point

    def __call__(self, value: Any, hook: Any) -> Any:
        result = self.hook(value, hook=hook)
        if result is not None and result is not value:
            _check_returned(self.point, value, result)
        return result

    def __repr__(self) -> str:  # what TransformerLens lists for the hook (a partial's arguments may be huge)
        if isinstance(self.hook, partial):
            return f"partial({self.hook.func!r},...)"
        return repr(self.hook)


def _check_returned(point: SiteHookPoint, value: Any, result: Any) -> None:
    """A hook's return value replaces ``value`` downstream: it must have its shape and dtype."""
    where = f"the hook on {point.name}"
    if not isinstance(result, torch.Tensor):
        raise AirInterpError(f"{where} returned a value of type {type(result).__name__}; a hook returns None or a "
                             f"tensor of shape {tuple(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}")
    if result.shape != value.shape:
        raise AirInterpError(f"{where} returned shape {tuple(result.shape)}, but the point carries shape "
                             f"{tuple(value.shape)}; a hook returns None or a tensor of the shape and dtype it received")
    if result.dtype != value.dtype:
        dtypes = [str(t).removeprefix("torch.") for t in (result.dtype, value.dtype)]
        raise AirInterpError(f"{where} returned dtype {dtypes[0]}, but the point carries {dtypes[1]}; a hook "
                             f"returns None or a tensor of the shape and dtype it received (cast with .to(torch.{dtypes[1]}))")


class AttnHooks(nn.Module):
    """``attn.hook_{q,k,v}`` (batch, pos, head, head_dim; before RoPE), ``hook_pattern``
    (batch, head, query, key; only computed when needed) and ``hook_z`` (batch, pos, head, head_dim)."""

    def __init__(self, site: Site) -> None:
        super().__init__()
        self.hook_q = SiteHookPoint(site)
        self.hook_k = SiteHookPoint(site)
        self.hook_v = SiteHookPoint(site)
        self.hook_pattern = SiteHookPoint(site)
        self.hook_z = SiteHookPoint(site)

    def needs_pattern(self) -> bool:
        return self.hook_pattern.is_active()


class LayerHooks(nn.Module):
    """Hook points of one block call: the token mixer (attention internals and ``hook_attn_out``,
    or ``hook_mlp_t_out`` for TRM's MLP over positions) and the residual stream."""

    def __init__(self, site: Site, mixer: str = "attention") -> None:
        super().__init__()
        if mixer == "mlp_t":
            self.hook_mlp_t_out = SiteHookPoint(site)
        else:
            self.attn = AttnHooks(site)
            self.hook_attn_out = SiteHookPoint(site)
        self.hook_resid_mid = SiteHookPoint(site)
        self.hook_mlp_out = SiteHookPoint(site)
        self.hook_resid_post = SiteHookPoint(site)


class SubStepHooks(nn.Module):
    """Hook points of one call of the stack: its input, every layer, and the state it writes
    (``hook_z_L`` at an update that writes z_L)."""

    def __init__(self, step: int, sub: int, kind: str, state: str, n_layers: int, mixer: str) -> None:
        super().__init__()
        site = Site(step, sub, kind, state=state)
        self.state = state
        self.hook_f_in = SiteHookPoint(site)
        self.layer = nn.ModuleList(LayerHooks(Site(step, sub, kind, layer, state), mixer) for layer in range(n_layers))
        setattr(self, f"hook_{state}", SiteHookPoint(site))

    @property
    def hook_state(self) -> SiteHookPoint:
        return getattr(self, f"hook_{self.state}")


class StepHooks(nn.Module):
    """Hook points of one ACT segment: its sub-steps and the halting logits ``hook_q`` (batch, 2)."""

    def __init__(self, step: int, cfg: "AIRConfig") -> None:
        super().__init__()
        self.sub = nn.ModuleList(SubStepHooks(step, sub, update.kind, update.writes, cfg.layers_of(update.kind),
                                              cfg.mixer) for sub, update in enumerate(cfg.schedule))
        self.hook_q = SiteHookPoint(Site(step))
