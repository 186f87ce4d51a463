"""Hook points: naming, caching, interventions, explicit vs fused attention, backward hooks, nnsight."""
from collections import Counter

import pytest
import torch
from nnsight import NNsight

from air_interp import AirInterpError
from conftest import random_batch, tiny_model

ATTN = ("q", "k", "v", "pattern", "z")
RESID = ("attn_out", "resid_mid", "mlp_out", "resid_post")


def expected_cache_shapes(model, batch_size):
    """The hook names of a rollout in execution order with their shapes, written from the naming scheme."""
    cfg = model.cfg
    B, S, d, H, hd = batch_size, cfg.carry_len, cfg.d_model, cfg.n_heads, cfg.head_dim
    names = {"hook_embed": (B, S, d), "hook_z_H_init": (B, S, d), "hook_z_L_init": (B, S, d)}
    for s in range(cfg.halt_max_steps):
        for k, kind in enumerate("LLHLLH"):
            names[f"step.{s}.sub.{k}.hook_f_in"] = (B, S, d)
            for layer in range(cfg.n_layers):
                prefix = f"step.{s}.sub.{k}.layer.{layer}"
                for a in ATTN:
                    names[f"{prefix}.attn.hook_{a}"] = (B, H, S, S) if a == "pattern" else (B, S, H, hd)
                for r in RESID:
                    names[f"{prefix}.hook_{r}"] = (B, S, d)
            names[f"step.{s}.sub.{k}.hook_z_{kind}"] = (B, S, d)
        names[f"step.{s}.hook_q"] = (B, 2)
    return names


def test_cache_has_exactly_the_expected_names_and_shapes(model):
    batch = random_batch(model, size=2)
    _, cache = model.run_with_cache(batch)
    expected = expected_cache_shapes(model, 2)
    assert list(cache) == list(expected)
    assert {name: tuple(t.shape) for name, t in cache.items()} == expected


def test_every_hook_point_fires_exactly_once(model):
    calls = Counter()

    def count(tensor, hook):
        calls[hook.name] += 1

    model.run_with_hooks(random_batch(model), fwd_hooks=[(lambda name: True, count)])
    assert set(calls) == set(model.hook_dict)
    assert set(calls.values()) == {1}


@pytest.mark.parametrize("variant", ["Lx_H", "hrm", "gx_nonlinear", "L_Hx"])
def test_plain_forward_equals_hooked_forward_with_full_cache(variant):
    """Caching everything (patterns included) only reads: the rollout is bit-identical."""
    model = tiny_model(variant)
    batch = random_batch(model)
    plain = model(batch)
    hooked, cache = model.run_with_cache(batch)
    assert torch.equal(plain, hooked)
    assert any(name.endswith("hook_pattern") for name in cache)


@pytest.mark.parametrize("variant", ["L2x_H2x", "L2x_H2x_token_prepend", "L2x_H2x_token_prepend_persist"])
def test_hooked_update_equals_plain_update_for_amplifying_variants(variant):
    """The (2, 2) variants amplify fp32 rounding over a rollout (their fp32 and fp64 rollouts differ
    by 2e-5..1e-4 here, and by O(1) on the public persistent-token fixture), so the two attention
    paths are compared on one update."""
    model = tiny_model(variant)
    batch = random_batch(model)
    name = "step.0.sub.0.hook_z_L"
    _, plain = model.run_with_cache(batch, names_filter=name)
    _, hooked = model.run_with_cache(batch)
    assert (plain[name] - hooked[name]).abs().max() <= 1e-5


def test_explicit_attention_agrees_with_fused_attention(model):
    """A hook that hands back another tensor switches that site to ``pattern @ v``: same values."""
    batch = random_batch(model)
    name = "step.1.sub.3.hook_z_L"
    _, fused = model.run_with_cache(batch, names_filter=name)
    copy_patterns = [(lambda n: n.endswith("hook_pattern"), lambda pattern, hook: pattern.clone())]
    with model.hooks(fwd_hooks=copy_patterns):
        _, explicit = model.run_with_cache(batch, names_filter=name)
    assert not torch.equal(fused[name], explicit[name])  # the explicit path really ran
    assert (fused[name] - explicit[name]).abs().max() <= 1e-5


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_in_place_pattern_edits_take_effect(model, context):
    batch = random_batch(model)
    name = "step.0.sub.0.layer.0.attn.hook_pattern"

    def uniform(pattern, hook):
        pattern[:] = 1.0 / pattern.shape[-1]

    with context():
        plain = model(batch)
        edited = model.run_with_hooks(batch, fwd_hooks=[(name, uniform)])
        returned = model.run_with_hooks(batch, fwd_hooks=[(name, lambda p, hook: torch.full_like(p, 1.0 / p.shape[-1]))])
    assert not torch.equal(plain, edited)
    assert torch.allclose(edited, returned, atol=1e-6)


def test_patterns_are_row_stochastic_and_only_computed_when_needed(model):
    batch = random_batch(model)
    _, cache = model.run_with_cache(batch, names_filter=r".*sub\.2\.layer\.1\.attn\.hook_pattern")
    pattern = cache["step.0.sub.2.layer.1.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    point = model.hook_dict["step.0.sub.2.layer.1.attn.hook_pattern"]
    assert not point.is_active()


def test_regex_names_filter_and_clear_error_when_nothing_matches(model):
    _, cache = model.run_with_cache(random_batch(model), names_filter=r"step\.\d+\.sub\.\d\.hook_z_[LH]")
    assert len(cache) == model.cfg.halt_max_steps * 6
    with pytest.raises(AirInterpError, match="matches no hook point"):
        model.run_with_cache(random_batch(model), names_filter=r"step\.\d+\.hook_nothing")


def test_hook_points_know_their_site(model):
    point = model.hook_dict["step.1.sub.4.layer.0.attn.hook_pattern"]
    assert (point.site.step, point.site.sub, point.site.kind, point.site.layer) == (1, 4, "L", 0)
    state = model.hook_dict["step.0.sub.5.hook_z_H"]
    assert (state.site.kind, state.site.layer) == ("H", None)


def test_freeze_hook_keeps_the_state_at_its_reset_value(model):
    """``lambda z, hook: hook.previous`` holds z_H where it was at reset, through the whole rollout."""
    batch = random_batch(model)
    _, normal = model.run_with_cache(batch, names_filter=r".*hook_z_H(_init)?")
    freeze = [(name, lambda z, hook: hook.previous) for name in model.hook_names(r".*hook_z_H")]
    with model.hooks(fwd_hooks=freeze):
        _, frozen = model.run_with_cache(batch, names_filter=r".*hook_z_H(_init)?")
    init = frozen["hook_z_H_init"]
    for name in model.hook_names(r".*hook_z_H"):
        assert torch.equal(frozen[name], init)
    assert not torch.equal(normal["step.1.sub.5.hook_z_H"], init)


def test_state_hook_sees_the_previous_value(model):
    seen = {}

    def record(z, hook):
        seen["previous"] = hook.previous.clone()

    _, cache = model.run_with_cache(random_batch(model), names_filter=["step.1.sub.0.hook_z_L", "step.0.sub.4.hook_z_L"])
    model.run_with_hooks(random_batch(model), fwd_hooks=[("step.1.sub.0.hook_z_L", record)])
    assert torch.equal(seen["previous"], cache["step.0.sub.4.hook_z_L"])
    assert model.hook_dict["step.1.sub.0.hook_z_L"].previous is None


def test_backward_hooks_fire_on_the_gradient_sub_steps(model):
    batch = random_batch(model)
    _, cache = model.run_with_cache(batch, names_filter=r"step\.1\.sub\.[45]\.hook_z_[LH]", incl_bwd=False)
    grads = {}

    def save_grad(grad, hook):
        grads[hook.name] = grad

    model.add_hook("step.1.sub.5.hook_z_H", save_grad, dir="bwd")
    try:
        model(batch).sum().backward()
    finally:
        model.reset_hooks()
    grad = grads["step.1.sub.5.hook_z_H"]
    assert grad.shape == cache["step.1.sub.5.hook_z_H"].shape
    assert grad.abs().sum() > 0


def test_full_grad_reaches_the_first_sub_step(model):
    batch = random_batch(model)
    grads = {}
    model.add_hook("step.0.sub.0.hook_z_L", lambda g, hook: grads.setdefault("g", g), dir="bwd")
    try:
        model(batch, full_grad=True).sum().backward()
    finally:
        model.reset_hooks()
    assert grads["g"].abs().sum() > 0


def test_nnsight_read_and_freeze_match_the_transformerlens_hooks(model):
    batch = random_batch(model)
    pattern_name = "step.1.sub.0.layer.1.attn.hook_pattern"
    state_name = "step.1.sub.2.hook_z_H"
    model.expose_patterns(r"step\.1\.sub\.0\..*")
    traced = NNsight(model)
    with torch.no_grad():
        with traced.trace(batch):
            pattern = traced.step[1].sub[0].layer[1].attn.hook_pattern.output.save()
            state = traced.step[1].sub[2].hook_z_H.output.save()
        _, cache = model.run_with_cache(batch, names_filter=[pattern_name, state_name])
        with traced.trace(batch):
            traced.step[1].sub[2].hook_z_H.output = traced.step[0].sub[5].hook_z_H.output
            frozen_nnsight = traced.output.save()
        frozen_hooks = model.run_with_hooks(batch, fwd_hooks=[(state_name, lambda z, hook: hook.previous)])
    model.expose_patterns(exposed=False)
    torch.testing.assert_close(pattern, cache[pattern_name], rtol=0, atol=1e-6)
    torch.testing.assert_close(state, cache[state_name], rtol=0, atol=0)
    torch.testing.assert_close(frozen_nnsight, frozen_hooks, rtol=0, atol=0)
    assert not torch.allclose(frozen_hooks, model(batch))


def test_site_names_are_the_hook_names_and_layer_is_the_layer(model):
    """Every hook point's name is built from its site, and TransformerLens's ``layer()`` (which
    parses ``blocks.{l}`` names) returns the layer, not the ACT step."""
    for name, point in model.hook_dict.items():
        point_name = name.split(".")[-1] if point.site.layer is None else name.split(f"layer.{point.site.layer}.")[1]
        assert point.site.name(point_name) == name
    pattern = model.hook_dict["step.0.sub.2.layer.1.attn.hook_pattern"]
    assert (pattern.layer(), pattern.site.step, pattern.site.sub, pattern.site.kind) == (1, 0, 2, "H")
    with pytest.raises(ValueError, match="not inside a layer"):
        model.hook_dict["step.1.sub.0.hook_z_L"].layer()
