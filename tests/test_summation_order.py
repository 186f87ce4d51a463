"""The stack's input is summed in the public code's order, checked where bits do not depend on the CPU.

Matrix products and reductions round differently per CPU kernel, so a full rollout matches a
stored one bit for bit only on the machine kind that stored it (test_checkpoints.py). Elementwise
additions round the same on every CPU. So this test rebuilds every update's ``hook_f_in`` by hand
from the states and ``x`` the hooks saw, in the published order (../shared/SPEC.md 1.2: one x
joins the *other* state in an L-update, the state *itself* in an H-update, two join both), and
asks for the same bits, on any machine. The same check with the order a careless reading of the
formulas gives, ``(z_self + z_other) + n x``, must fail: that is shown here, not by editing the model.
A three-state model (no public code) sums as its schedule documents: the other states, in order,
take the place of z_other, and its M-update places x as an L-update does.
"""
from typing import Callable

import pytest
import torch

from air_interp import PRESETS, HookedAIR
from conftest import random_batch, tiny_model

pytestmark = pytest.mark.numerics

Order = Callable[[HookedAIR, str, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# The states an update reads beside its own, summed left to right (docs/model.md).
OTHERS = {False: {"L": ["z_H"], "H": ["z_L"]}, True: {"L": ["z_M", "z_H"], "M": ["z_L", "z_H"], "H": ["z_M", "z_L"]}}


def injections(model: HookedAIR, kind: str) -> int:
    return {"L": model.cfg.n_L, "M": model.cfg.n_M, "H": model.cfg.n_H}[kind]


def injected(model: HookedAIR, x: torch.Tensor) -> torch.Tensor:
    """The L-update's term in x for an operator form: W x, or tanh(W x)."""
    gx = model.g_input(x)
    return torch.tanh(gx) if model.cfg.operator == "nonlinear" else gx


def published_order(model: HookedAIR, kind: str, z_self: torch.Tensor, z_other: torch.Tensor,
                    x: torch.Tensor) -> torch.Tensor:
    cfg = model.cfg
    if kind == "L" and cfg.operator == "minus":
        return z_self + (z_other - x)
    if kind == "L" and cfg.operator == "hadamard":
        return z_self + (z_other + z_self) * x
    if kind == "L" and cfg.operator in ("linear", "nonlinear"):
        return z_self + (z_other + injected(model, x))
    n_x = injections(model, kind)
    hidden = z_self + x if n_x == 2 or (n_x == 1 and kind == "H") else z_self
    if cfg.level_token == "addition":
        hidden = hidden + getattr(model, f"level_token_{kind}")
    injection = z_other + x if n_x == 2 or (n_x == 1 and kind != "H") else z_other
    return hidden + injection


def naive_order(model: HookedAIR, kind: str, z_self: torch.Tensor, z_other: torch.Tensor,
                x: torch.Tensor) -> torch.Tensor:
    """The SPEC table read left to right: the same terms, summed in another order."""
    cfg = model.cfg
    if kind == "L" and cfg.operator == "minus":
        return (z_self + z_other) - x
    if kind == "L" and cfg.operator == "hadamard":
        return z_self + (z_other * x + z_self * x)
    if kind == "L" and cfg.operator in ("linear", "nonlinear"):
        return (z_self + z_other) + injected(model, x)
    total = z_self + z_other
    for _ in range(injections(model, kind)):
        total = total + x
    if cfg.level_token == "addition":
        total = total + getattr(model, f"level_token_{kind}")
    return total


def L_states(model: HookedAIR) -> list[str]:
    """TRM's hier6 names its L-states z_L1..z_L6; the others have z_L."""
    return [f"z_L{i}" for i in range(1, model.cfg.L_states + 1)] if model.cfg.L_states > 1 else ["z_L"]


def written(model: HookedAIR, sub: int, kind: str) -> str:
    """The state sub-step ``sub`` writes, as the public loops index it: hier6's i-th L-update of a
    cycle writes z_L<i>; a one-state model writes z_L at both kinds."""
    if kind != "L":
        return "z_L" if model.cfg.single_state else f"z_{kind}"
    names = L_states(model)
    return names[(sub % (model.cfg.L_cycles + 1)) % len(names)]


def total(states: dict, names: list[str]) -> torch.Tensor:
    result = states[names[0]]
    for name in names[1:]:
        result = result + states[name]
    return result


def check_every_update(model: HookedAIR, order: Order) -> int:
    """Assert that every update's ``hook_f_in`` equals ``order`` bit for bit; returns the count checked.
    Two-state models go through ``order``; TRM's one- and seven-state models through their public
    loops (SPEC 5.1), whatever ``order`` is: only summation orders differ between the two orders."""
    cfg = model.cfg
    with torch.no_grad():
        _, cache = model.run_with_cache(random_batch(model), names_filter=r"hook_embed|hook_z_\w+_init|.*hook_f_in|"
                                                                          r"step\.\d+\.sub\.\d+\.hook_z_\w+")
        x = cache["hook_embed"]
        if cfg.level_positions:  # the persistent level token's position gets no input
            x = torch.nn.functional.pad(x, (0, 0, 1, 0))
        states = {name: cache[f"hook_{name}_init"] for name in cfg.states}
        checked = 0
        for step in range(cfg.halt_max_steps):
            for sub, kind in enumerate(cfg.kinds):
                if cfg.single_state:
                    expected = states["z_L"] + x if kind == "L" else states["z_L"]
                elif cfg.L_states > 1:
                    lows = total(states, L_states(model))
                    expected = lows + (states["z_H"] + x) if kind == "L" else states["z_H"] + lows
                else:
                    others = total(states, OTHERS[cfg.M_cycles > 0][kind])
                    expected = order(model, kind, states[f"z_{kind}"], others, x)
                assert torch.equal(cache[f"step.{step}.sub.{sub}.hook_f_in"], expected), (step, sub, kind)
                state = written(model, sub, kind)
                states[state] = cache[f"step.{step}.sub.{sub}.hook_{state}"]
                checked += 1
    return checked


@pytest.mark.parametrize("variant", PRESETS)
def test_every_update_sums_its_inputs_in_the_published_order(variant):
    model = tiny_model(variant, halt_max_steps=3)
    assert check_every_update(model, published_order) == 3 * model.cfg.sub_steps


# Two-state models whose updates have a sum that another order changes (L_H has none; TRM's one- and
# seven-state models are checked by their own loops above).
@pytest.mark.parametrize("variant", [v for v in PRESETS if v not in ("L_H", "trm_singlez", "trm_hier6")])
def test_another_summation_order_fails_the_same_check(variant):
    model = tiny_model(variant, halt_max_steps=3)
    with pytest.raises(AssertionError):
        check_every_update(model, naive_order)
