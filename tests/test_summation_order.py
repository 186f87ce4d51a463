"""The stack's input is summed in the public code's order, checked where bits do not depend on the CPU.

Matrix products and reductions round differently per CPU kernel, so a full rollout matches a
stored one bit for bit only on the machine kind that stored it (test_checkpoints.py). Elementwise
additions round the same on every CPU. So this test rebuilds every update's ``hook_f_in`` by hand
from the states and ``x`` the hooks saw, in the published order (../shared/SPEC.md 1.2: one x
joins the *other* state in an L-update, the state *itself* in an H-update, two join both), and
asks for the same bits, on any machine. The same check with the order a careless reading of the
formulas gives, ``(z_self + z_other) + n x``, must fail: that is shown here, not by editing the model.
"""
from typing import Callable

import pytest
import torch

from air_interp import PRESETS, HookedAIR
from conftest import random_batch, tiny_model

pytestmark = pytest.mark.numerics

Order = Callable[[HookedAIR, str, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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
    n_x = cfg.n_L if kind == "L" else cfg.n_H
    hidden = z_self + x if n_x == 2 or (n_x == 1 and kind == "H") else z_self
    if cfg.level_token == "addition":
        hidden = hidden + getattr(model, f"level_token_{kind}")
    injection = z_other + x if n_x == 2 or (n_x == 1 and kind == "L") else z_other
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
    for _ in range(cfg.n_L if kind == "L" else cfg.n_H):
        total = total + x
    if cfg.level_token == "addition":
        total = total + getattr(model, f"level_token_{kind}")
    return total


def check_every_update(model: HookedAIR, order: Order) -> int:
    """Assert that every update's ``hook_f_in`` equals ``order`` bit for bit; returns the count checked."""
    with torch.no_grad():
        _, cache = model.run_with_cache(random_batch(model), names_filter=r"hook_embed|hook_z_[LH]_init|.*hook_f_in|"
                                                                          r"step\.\d+\.sub\.\d+\.hook_z_[LH]")
        x = cache["hook_embed"]
        if model.cfg.level_positions:  # the persistent level token's position gets no input
            x = torch.nn.functional.pad(x, (0, 0, 1, 0))
        state = {"H": cache["hook_z_H_init"], "L": cache["hook_z_L_init"]}
        checked = 0
        for step in range(model.cfg.halt_max_steps):
            for sub, kind in enumerate(model.cfg.kinds):
                other = "H" if kind == "L" else "L"
                expected = order(model, kind, state[kind], state[other], x)
                assert torch.equal(cache[f"step.{step}.sub.{sub}.hook_f_in"], expected), (step, sub, kind)
                state[kind] = cache[f"step.{step}.sub.{sub}.hook_z_{kind}"]
                checked += 1
    return checked


@pytest.mark.parametrize("variant", PRESETS)
def test_every_update_sums_its_inputs_in_the_published_order(variant):
    model = tiny_model(variant, halt_max_steps=3)
    assert check_every_update(model, published_order) == 3 * model.cfg.sub_steps


@pytest.mark.parametrize("variant", [v for v in PRESETS if v != "L_H"])
def test_another_summation_order_fails_the_same_check(variant):
    model = tiny_model(variant, halt_max_steps=3)
    with pytest.raises(AssertionError):
        check_every_update(model, naive_order)
