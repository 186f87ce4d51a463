"""Pieces of the training recipe against hand computations."""
import math

import numpy as np
import pytest
import torch
from adam_atan2_pytorch import AdamAtan2
from air_interp.train.config import TrainConfig
from air_interp.train.data import GroupSampler
from air_interp.evaluate import evaluate
from air_interp.train.loss import act_loss, stablemax_cross_entropy
from air_interp.train.optim import EMA, SparseSignSGD, build_optimizers, lr_at
from conftest import tiny_model

from air_interp import hardware
from air_interp.data.dataset import Split
from air_interp.errors import AirInterpError
from air_interp.tasks import get_task


def numpy_stablemax_ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    s = np.where(x >= 0, x + 1, 1 / (1 - np.minimum(x, 0)))
    p = s / s.sum(-1, keepdims=True)
    picked = np.take_along_axis(p, labels[..., None], -1)[..., 0]
    return np.where(labels != 0, -np.log(picked), 0.0)


def test_stablemax_matches_numpy_float64():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=gen) * 4
    logits[0, 0, :3] = torch.tensor([0.0, 1.0, -1.0])  # the branch boundaries
    labels = torch.randint(0, 11, (3, 7), generator=gen)
    ours = stablemax_cross_entropy(logits.to(torch.bfloat16), labels)
    assert ours.dtype == torch.float64
    want = numpy_stablemax_ce(logits.to(torch.bfloat16).float().numpy(), labels.numpy())
    np.testing.assert_allclose(ours.numpy(), want, rtol=1e-12, atol=1e-12)
    assert (ours[labels == 0] == 0).all()


def test_stablemax_gradient_is_finite_at_one():
    logits = torch.tensor([[[1.0, -2.0, 0.0]]], requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([[1]])).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_act_loss_by_hand():
    logits = torch.zeros(2, 3, 4)
    logits[0, :, 2] = 5.0  # row 0 predicts 2 everywhere: exactly right
    logits[1, 0, 2] = 5.0
    labels = torch.tensor([[2, 2, 2], [2, 3, 0]])  # row 1: one of two supervised cells right
    outputs = {"logits": logits, "q_halt_logits": torch.tensor([1.0, -1.0]),
               "q_continue_logits": torch.tensor([0.5, 0.0]), "target_q_continue": torch.tensor([0.2, 0.9])}
    halted, steps = torch.tensor([True, True]), torch.tensor([2, 3])
    loss, metrics = act_loss(outputs, labels, halted, steps)
    lm = stablemax_cross_entropy(logits, labels).sum(-1) / torch.tensor([3.0, 2.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    q_halt = bce(torch.tensor([1.0, -1.0]), torch.tensor([1.0, 0.0]), reduction="sum")
    q_cont = bce(torch.tensor([0.5, 0.0]), torch.tensor([0.2, 0.9]), reduction="sum")
    assert loss.item() == pytest.approx((lm.sum() + 0.5 * (q_halt + q_cont)).item(), rel=1e-6)
    assert metrics["exact_accuracy"].item() == 1 and metrics["accuracy"].item() == pytest.approx(1.5)
    assert metrics["q_halt_accuracy"].item() == 2 and metrics["act_steps"].item() == 5
    _, no_target = act_loss({k: v for k, v in outputs.items() if k != "target_q_continue"}, labels, halted, steps)
    assert no_target["q_continue_loss"].item() == 0


def test_sign_sgd_updates_only_used_rows_by_hand():
    weight = torch.nn.Parameter(torch.tensor([[1.0, -2.0], [3.0, 4.0], [0.5, 0.5]]))
    weight.grad = torch.tensor([[0.3, -0.1], [2.0, 0.0], [-1.0, 1.0]])
    opt = SparseSignSGD([weight], lr=0.1, weight_decay=0.5)
    opt.step(rows=torch.tensor([0, 2, 0]))
    decay = 1 - 0.1 * 0.5
    want = torch.tensor([[1.0 * decay - 0.1, -2.0 * decay + 0.1], [3.0, 4.0], [0.5 * decay + 0.1, 0.5 * decay - 0.1]])
    torch.testing.assert_close(weight.detach(), want)


def test_adam_atan2_is_the_paper_update():
    """One step of the package's AdamATan2 (docs/model.md): decay, then lr * 1.27 * atan2(m_hat, sqrt(v_hat))."""
    p = torch.nn.Parameter(torch.tensor([0.5, -1.0]))
    p.grad = torch.tensor([0.2, -3.0])
    AdamAtan2([p], lr=0.01, betas=(0.9, 0.95), weight_decay=1.0).step()
    m_hat, v_hat = torch.tensor([0.2, -3.0]), torch.tensor([0.04, 9.0])
    want = torch.tensor([0.5, -1.0]) * (1 - 0.01) - 0.01 * 1.27 * torch.atan2(m_hat, v_hat.sqrt())
    torch.testing.assert_close(p.detach(), want)


def test_optimizers_split_puzzle_embedding():
    model = tiny_model()
    sign, adam = build_optimizers(model, TrainConfig())
    assert sign.param_groups[0]["params"][0] is model.puzzle_emb.weight
    adam_params = adam.param_groups[0]["params"]
    assert all(p is not model.puzzle_emb.weight for p in adam_params)
    assert len(adam_params) == len(list(model.parameters())) - 1
    assert adam.param_groups[0]["a"] == 1.27 and adam.param_groups[0]["betas"] == (0.9, 0.95)


def test_lr_schedule():
    cfg = TrainConfig(lr_warmup_steps=10)
    assert lr_at(5, 1.0, cfg, 100) == 0.5 and lr_at(10, 1.0, cfg, 100) == 1.0 and lr_at(99, 1.0, cfg, 100) == 1.0
    cosine = TrainConfig(lr_warmup_steps=10, lr_schedule="cosine", lr_min_ratio=0.1)
    assert lr_at(55, 1.0, cosine, 100) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(100, 1.0, cosine, 100) == pytest.approx(0.1)


def test_ema_average_and_swap():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, 0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model, step=1000)  # past the warm-up: decay 0.9
    with ema.applied(model):
        torch.testing.assert_close(model.weight, torch.full((1, 2), 1.2))
    torch.testing.assert_close(model.weight.detach(), torch.full((1, 2), 3.0))


def test_ema_warm_up_forgets_the_initial_weights_of_a_short_run():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, 0.999)
    assert ema.decay_at(1) == pytest.approx(2 / 11) and ema.decay_at(100_000) == 0.999
    with torch.no_grad():
        model.weight.fill_(1.0)
    initial_share = 1.0
    for step in range(1, 1001):
        ema.update(model, step)
        initial_share *= ema.decay_at(step)
    with ema.applied(model):
        assert model.weight.item() == pytest.approx(1 - initial_share)
    assert initial_share < 1e-6 < 0.999 ** 1000


def test_sampler_epochs_visit_each_group_once_and_is_stateless():
    groups = np.repeat(np.arange(10), 3)  # 10 puzzles, 3 augmentations each
    sampler = GroupSampler(groups, batch_size=4, seed=7)
    epoch = np.concatenate([sampler.batch_rows(k) for k in range(5)])[:10]  # 20 rows = 2 epochs
    assert sorted(groups[epoch]) == list(range(10))
    again = GroupSampler(groups, batch_size=4, seed=7)
    np.testing.assert_array_equal(again.batch_rows(3), sampler.batch_rows(3))
    assert not np.array_equal(GroupSampler(groups, 4, seed=8).batch_rows(0), sampler.batch_rows(0))


def test_train_config_errors_are_clear():
    with pytest.raises(AirInterpError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(AirInterpError, match="unknown scale"):
        TrainConfig.for_scale("huge")
    with pytest.raises(AirInterpError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(AirInterpError, match="ema"):
        TrainConfig(ema=1.0)


def test_paper_scale_is_the_paper_recipe():
    cfg = TrainConfig.for_scale("paper")
    assert (cfg.global_batch_size, cfg.lr, cfg.weight_decay, cfg.puzzle_emb_lr, cfg.puzzle_emb_weight_decay) == \
        (768, 1e-4, 1.0, 1e-4, 1.0)
    assert (cfg.epochs, cfg.eval_interval, cfg.lr_warmup_steps, cfg.lr_schedule) == (20000, 2000, 2000, "constant")
    assert cfg.total_steps(1000) == 26041 and cfg.eval_period(1000) == 2604
    assert cfg.augmentations_for(get_task("sudoku")) == 1000 and cfg.augmentations_for(get_task("maze")) == 0
    model = cfg.model_config("sudoku", "cuda")
    assert (model.d_model, model.n_layers, model.puzzle_emb_ndim, model.forward_dtype) == (512, 4, 512, "bfloat16")
    small = TrainConfig(model={"d_model": 64, "n_heads": 4}).model_config("maze15")
    assert small.puzzle_emb_ndim == 64


@pytest.mark.parametrize("flags, cpu_dtype", [({"avx2", "fma"}, "float32"), ({"avx2", "amx_bf16"}, "bfloat16"),
                                              ({"avx512f", "avx512_bf16"}, "bfloat16")])
def test_auto_training_dtype_follows_the_cpu(monkeypatch, flags, cpu_dtype):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    cfg = TrainConfig.for_scale("cpu")
    assert cfg.model_config("sudoku", "cpu").forward_dtype == cpu_dtype
    assert cfg.model_config("sudoku", "cuda").forward_dtype == "bfloat16"
    assert cfg.replace(dtype="float32").model_config("sudoku", "cpu").forward_dtype == "float32"


def test_compile_is_on_for_a_cpu_unless_set():
    assert TrainConfig().compile_on("cpu") and not TrainConfig().compile_on("cuda")
    assert not TrainConfig(compile=False).compile_on("cpu") and TrainConfig(compile=True).compile_on("cuda")


def test_no_act_continue_of_a_run_becomes_the_models_halting_rule():
    for rule in (True, False):
        assert TrainConfig(no_act_continue=rule).model_config("sudoku").no_act_continue == rule


@pytest.mark.parametrize("no_act_continue", [True, False])
def test_evaluation_halts_by_the_models_rule(no_act_continue):
    """halt_step and halted-exact accuracy against the Q logits of the hooked rollout, read by hand."""
    model = tiny_model(halt_max_steps=4, no_act_continue=no_act_continue)
    gen = torch.Generator().manual_seed(5)
    inputs = torch.randint(1, 11, (9, 81), generator=gen)
    names = [f"step.{s}.hook_q" for s in range(4)]
    with torch.inference_mode():
        model.q_head.weight.normal_(0, 1.0, generator=gen)
        model.q_head.bias.zero_()
        _, cache = model.run_with_cache(inputs, names_filter=names)
        q = torch.stack([cache[n] for n in names])
        margin = q[..., 0] if no_act_continue else q[..., 0] - q[..., 1]
        model.q_head.bias[0] = -margin.median()  # about half the (row, step) pairs say "halt"
        _, cache = model.run_with_cache(inputs, names_filter=names)
        logits_by_step = []
        hooks = [(f"step.{s}.sub.5.hook_z_H", lambda z, hook: logits_by_step.append(model.lm_head(
            z[:, model.cfg.prefix_len:]).argmax(-1)) or z) for s in range(4)]
        model.run_with_hooks(inputs, fwd_hooks=hooks)
    labels = logits_by_step[1].clamp(min=2)  # right after ACT step 2 (where that prediction has digits only)
    expected_step, expected_exact = [], []
    for row in range(9):
        says = [(cache[n][row, 0] > 0) if no_act_continue else (cache[n][row, 0] > cache[n][row, 1]) for n in names]
        step = next((s for s, halt in enumerate(says) if halt), 3)
        expected_step.append(step + 1)
        expected_exact.append(bool((logits_by_step[step][row] == labels[row]).all()))
    n = len(inputs)
    split = Split(inputs.numpy().astype(np.uint8), labels.numpy().astype(np.uint8), np.zeros(n, np.float32),
                  np.arange(n), np.arange(n), np.array(["t"] * n))
    results = evaluate(model, split, batch_size=4)
    assert 1 < len(set(expected_step))  # the rule matters on this batch
    assert results["halt_step"] == pytest.approx(np.mean(expected_step))
    assert results["halted_exact_accuracy"] == pytest.approx(np.mean(expected_exact))


def test_evaluate_matches_the_rollout():
    model = tiny_model(halt_max_steps=3)
    gen = torch.Generator().manual_seed(3)
    inputs = torch.randint(1, 11, (7, 81), generator=gen)
    with torch.inference_mode():
        logits = model({"inputs": inputs, "puzzle_identifiers": torch.zeros(7, dtype=torch.long)})
    predicted = logits.argmax(-1)
    labels = predicted.clamp(min=2)  # digits only: every cell supervised
    labels[:3, 0] = torch.where(predicted[:3, 0] == 2, 3, 2)  # 3 rows get one cell wrong
    n = len(inputs)
    split = Split(inputs.numpy().astype(np.uint8), labels.numpy().astype(np.uint8), np.zeros(n, np.float32),
                  np.arange(n), np.arange(n), np.array(["t"] * n))
    results = evaluate(model, split, batch_size=4)
    correct = predicted == labels
    assert results["count"] == n
    assert results["exact_accuracy"] == pytest.approx(correct.all(-1).float().mean().item())
    assert results["accuracy"] == pytest.approx(correct.float().mean().item(), abs=1e-6)
    assert len(results["exact_by_step"]) == 3 and 1 <= results["halt_step"] <= 3
    assert not math.isnan(results["q_halt_accuracy"])
