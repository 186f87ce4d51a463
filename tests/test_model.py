"""The model: variants, the rollout, the ACT wrapper and dtype handling."""
import numpy as np
import pytest
import torch

from air_interp import PRESETS, AIRConfig, AirInterpError, HookedAIR
from air_interp.layers import Attention, Rotary, apply_rope, rms_norm
from conftest import random_batch, tiny_config, tiny_model


@pytest.mark.parametrize("variant", PRESETS)
def test_every_preset_builds_and_runs_a_rollout(variant):
    model = tiny_model(variant)
    batch = random_batch(model)
    out = model(batch, return_type="all")
    cfg = model.cfg
    assert out.logits.shape == (3, cfg.seq_len, cfg.vocab_size)
    assert list(out.states) == list(cfg.states)
    assert all(z.shape == (3, cfg.carry_len, cfg.d_model) for z in out.states.values())
    assert torch.isfinite(out.logits).all()
    assert cfg.variant == variant


def test_forward_equals_act_wrapper_in_eval_mode(model):
    """The hooked rollout and the hook-free ACT wrapper are two independent paths to the same numbers."""
    batch = random_batch(model)
    with torch.no_grad():
        rollout = model(batch, return_type="all")
        carry = model.initial_carry(batch)
        for _ in range(model.cfg.halt_max_steps):
            carry, outputs = model.act_step(carry, batch)
    assert carry.halted.all()
    torch.testing.assert_close(outputs["logits"], rollout.logits, rtol=0, atol=0)
    torch.testing.assert_close(carry.z_L, rollout.z_L, rtol=0, atol=0)
    torch.testing.assert_close(outputs["q_halt_logits"], rollout.q_halt_logits, rtol=0, atol=0)


def test_schedule_follows_cycles():
    cfg = tiny_config(H_cycles=3, L_cycles=1)
    assert cfg.kinds == ("L", "H") * 3
    assert [str(update) for update in cfg.schedule[:2]] == ["z_L = f(z_L + (z_H + x))", "z_H = f(z_H + z_L)"]
    model = HookedAIR(cfg)
    assert model.hook_names(r"step\.0\.sub\.\d\.hook_z_H") == [f"step.0.sub.{k}.hook_z_H" for k in (1, 3, 5)]
    assert torch.isfinite(model(random_batch(model))).all()


def test_free_injection_counts_parse():
    cfg = AIRConfig.preset("L3x_H2x", d_model=32, n_heads=4)
    assert (cfg.n_L, cfg.n_H, cfg.variant) == (3, 2, "L3x_H2x")
    assert AIRConfig.preset("L_H").variant == "L_H"
    assert AIRConfig.preset("had_prod").variant == "hadamard"  # the public release's name


def test_injection_count_changes_the_computation():
    base = tiny_model("Lx_H")
    other = HookedAIR(base.cfg.replace(n_L=2)).eval()
    other.load_state_dict(base.state_dict())
    batch = random_batch(base)
    assert not torch.allclose(base(batch), other(batch))


def test_level_token_prepend_strip_attends_to_an_extra_position():
    model = tiny_model("L2x_H2x_token_prepend")
    _, cache = model.run_with_cache(random_batch(model), names_filter=r"step\.0\.sub\.0\.layer\.0\.(attn\.hook_pattern|hook_resid_post)|step\.0\.sub\.0\.hook_z_L")
    cfg = model.cfg
    assert cache["step.0.sub.0.layer.0.attn.hook_pattern"].shape[-1] == cfg.carry_len + 1
    assert cache["step.0.sub.0.layer.0.hook_resid_post"].shape[1] == cfg.carry_len + 1
    assert cache["step.0.sub.0.hook_z_L"].shape[1] == cfg.carry_len


def test_training_mode_act_step_gives_q_targets_and_gradients(model):
    model.train()
    batch = random_batch(model, size=4)
    batch["labels"] = batch["inputs"].clone()
    carry = model.initial_carry(batch)
    carry, outputs = model.act_step(carry, batch)
    assert set(outputs) == {"logits", "q_halt_logits", "q_continue_logits", "target_q_continue"}
    assert ((outputs["target_q_continue"] > 0) & (outputs["target_q_continue"] < 1)).all()
    outputs["logits"].sum().backward()
    assert model.stack[0].attn.qkv.weight.grad is not None
    assert model.embed_tokens.weight.grad is not None
    assert not carry.z_H.requires_grad
    assert torch.equal(carry.data["labels"], batch["labels"])


def test_halted_rows_are_refilled_from_the_new_batch(model):
    model.eval()
    first, second = random_batch(model, seed=1), random_batch(model, seed=2)
    carry = model.initial_carry(first)
    for _ in range(model.cfg.halt_max_steps):
        carry, _ = model.act_step(carry, first)
    assert carry.halted.all() and torch.equal(carry.data["inputs"], first["inputs"])
    carry, _ = model.act_step(carry, second)
    assert torch.equal(carry.data["inputs"], second["inputs"])
    assert (carry.steps == 1).all()


def test_bfloat16_forward_is_close_to_float32():
    model = tiny_model()
    bf16 = HookedAIR(model.cfg.replace(forward_dtype="bfloat16")).eval()
    bf16.load_state_dict(model.state_dict())
    batch = random_batch(model)
    full, half = model(batch), bf16(batch)
    assert half.dtype == torch.float32
    agreement = (full.argmax(-1) == half.argmax(-1)).float().mean()
    assert agreement > 0.8


def test_set_forward_dtype_switches_the_rollout_to_the_other_dtype():
    model = tiny_model()
    batch = random_batch(model)
    reference = HookedAIR(model.cfg.replace(forward_dtype="bfloat16")).eval()
    reference.load_state_dict(model.state_dict())
    model.set_forward_dtype("bfloat16")
    assert model.dtype == torch.bfloat16 and torch.equal(model(batch), reference(batch))
    with pytest.raises(AirInterpError, match="forward_dtype"):
        model.set_forward_dtype("float64")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rms_norm_equals_the_fp32_formula_bit_for_bit(dtype):
    x = (torch.randn(16, 82, 128, generator=torch.Generator().manual_seed(0)) * 7).to(dtype)
    x32 = x.float()
    expected = (x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + 1e-5)).to(dtype)
    assert torch.equal(rms_norm(x, 1e-5), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_per_half_equals_the_rotate_half_formula_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 82, 4, 32, generator=gen).to(dtype)
    cos, sin = torch.randn(82, 32, generator=gen), torch.randn(82, 32, generator=gen)  # halves differ, as in fixtures
    x32 = x.float()
    rotated = torch.cat((-x32[..., 16:], x32[..., :16]), dim=-1)
    expected = (x32 * cos[:, None] + rotated * sin[:, None]).to(dtype)
    assert torch.equal(apply_rope(x, (cos, sin)), expected)


def test_bf16_attention_with_gradient_matches_the_fused_kernel_and_fp32():
    """On a CPU, bf16 attention that needs a gradient runs the explicit form (the fused kernel's
    backward is slow there); its output equals the fused kernel's and its gradients are as close
    to fp32 as bf16 allows."""
    torch.manual_seed(0)
    attention = Attention(64, 4)
    rope = Rotary(16, 10000.0)(20, torch.device("cpu"))
    x = torch.randn(3, 20, 64)

    def run(dtype: torch.dtype, grad: bool):
        attention.zero_grad()
        inputs = x.to(dtype).requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            out = attention(inputs, rope)
        if grad:
            (out.float() * torch.linspace(-1, 1, 64)).sum().backward()
            return out.detach().float(), inputs.grad.float(), attention.qkv.weight.grad.clone()
        return out.float(), None, None

    explicit, fused, full = run(torch.bfloat16, True), run(torch.bfloat16, False), run(torch.float32, True)
    torch.testing.assert_close(explicit[0], fused[0], rtol=2e-2, atol=2e-2)
    for ours, exact in zip(explicit, full):
        assert (ours - exact).norm() / exact.norm() < 2e-2


@pytest.mark.parametrize("bad, message", [
    (dict(d_model=30, n_heads=4), "multiple of n_heads"),
    (dict(operator="linear", n_L=2), "(1, 0) wiring"),
    (dict(forward_dtype="float8"), "forward_dtype"),
    (dict(H_cycles=0), "H_cycles"),
])
def test_bad_configs_are_rejected_in_one_line(bad, message):
    with pytest.raises(AirInterpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AIRConfig(**bad)


def test_unknown_variant_and_task_are_clear_errors():
    with pytest.raises(AirInterpError, match="unknown variant 'Lq_H'"):
        AIRConfig.preset("Lq_H")
    with pytest.raises(AirInterpError, match="unknown task"):
        AIRConfig.preset("Lx_H", task="chess")


@pytest.mark.parametrize("batch, message", [
    (torch.zeros(2, 80, dtype=torch.long), r"shape \(batch, 81\)"),
    (torch.full((2, 81), 11), r"\[0, 11\)"),
    (torch.zeros(2, 81), "integer tokens"),
    ({"tokens": torch.zeros(2, 81, dtype=torch.long)}, "no 'inputs'"),
    ({"inputs": torch.zeros(2, 81, dtype=torch.long), "puzzle_identifiers": torch.ones(2, dtype=torch.long)},
     "puzzle_identifiers"),
])
def test_bad_batches_are_rejected(model, batch, message):
    with pytest.raises(AirInterpError, match=message):
        model(batch)


def test_maze_preset_uses_the_maze_shapes():
    cfg = AIRConfig.preset("Lx_H", task="maze", d_model=32, n_heads=4)
    assert (cfg.vocab_size, cfg.seq_len, cfg.task) == (6, 900, "maze")


@pytest.mark.parametrize("no_act_continue", [True, False])
def test_the_halting_rule_is_the_models_own(no_act_continue):
    model = tiny_model(halt_exploration_prob=0.0, halt_max_steps=4, no_act_continue=no_act_continue).train()
    batch = random_batch(model)
    with torch.no_grad():
        model.q_head.weight.zero_()
        model.q_head.bias.copy_(torch.tensor([1.0, 5.0]))  # q_halt > 0 but < q_continue
    carry, outputs = model.act_step(model.initial_carry(batch), batch)
    assert ("target_q_continue" in outputs) != no_act_continue  # TRM's rule has no extra segment
    assert carry.halted.all() == no_act_continue and carry.halted.any() == no_act_continue


def test_act_wrapper_accepts_what_forward_accepts():
    model = tiny_model(halt_max_steps=2)
    tokens = random_batch(model)["inputs"]
    forms = [tokens, tokens.numpy().astype(np.uint8), {"inputs": tokens.to(torch.uint8)},
             {"inputs": tokens.numpy().astype(np.uint8), "labels": tokens.numpy().astype(np.uint8)}]
    with torch.inference_mode():
        reference = model(tokens)
        for batch in forms:
            carry = model.initial_carry(batch)
            for _ in range(model.cfg.halt_max_steps):
                carry, outputs = model.act_step(carry, batch)
            torch.testing.assert_close(outputs["logits"].float(), reference, rtol=0, atol=0)
    with pytest.raises(AirInterpError, match="integer tokens"):
        model.initial_carry(tokens.float())
