"""model.trace: every state and site stacked by update, equal to run_with_cache's tensors."""
import pytest
import torch

from air_interp import AirInterpError
from air_interp.trace import trace_batches, trace_memory_bytes
from conftest import random_batch, tiny_model


@pytest.fixture(scope="module")
def traced():
    model = tiny_model("Lx_H", halt_max_steps=3)
    batch = random_batch(model, size=5)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch)
    return model, batch, cache


def test_states_and_sites_are_run_with_caches_tensors_stacked_by_update(traced):
    model, batch, cache = traced
    trace = model.trace(batch, sites=["layer.1.hook_resid_post"], batch_size=2)  # three chunks: 2 + 2 + 1
    for state, kind in (("z_L", "L"), ("z_H", "H")):
        index = trace.updates(state)
        assert list(index["kind"]) == [kind] * len(index) == [kind] * (3 * model.cfg.kinds.count(kind))
        expected = torch.stack([cache[f"step.{s}.sub.{k}.hook_{state}"] for s, k in zip(index["step"], index["sub"])])
        assert torch.equal(trace.states(state), expected)
        assert torch.equal(trace.decode(state), model.unembed(expected.flatten(0, 1)).argmax(-1)
                           .view(len(index), 5, -1).to(torch.uint8))
    residual = trace.site("layer.1.hook_resid_post", step=2, sub=4)
    assert torch.equal(residual[0], cache["step.2.sub.4.layer.1.hook_resid_post"])
    assert trace.states("z_H", step=1).shape == (2, 5, model.cfg.carry_len, model.cfg.d_model)


def test_keep_decode_keeps_one_byte_a_cell_and_says_so(traced):
    model, batch, _ = traced
    full, small = model.trace(batch), model.trace(batch, keep="decode")
    assert torch.equal(full.decode("z_L"), small.decode("z_L")) and small.decode("z_L").dtype == torch.uint8
    assert sum(t.numel() * t.element_size() for t in small.values.values()) == trace_memory_bytes(model, 5)
    with pytest.raises(AirInterpError, match="keep='states'"):
        small.states("z_L")


def test_a_freeze_hook_runs_inside_the_trace(traced):
    model, batch, _ = traced
    frozen = model.trace(batch, states=["z_H"], fwd_hooks=[(lambda name: name.endswith("hook_z_H"),
                                                             lambda z, hook: hook.previous)])
    states = frozen.states("z_H")
    assert torch.equal(states[0], states[-1])


@pytest.mark.parametrize("call, message", [
    (dict(states=["z_M"]), "unknown state 'z_M'"),
    (dict(sites=["layer.9.hook_resid_post"]), "no hook point matches the site"),
    (dict(keep="all"), "keep must be one of"),
])
def test_bad_requests_are_one_line(traced, call, message):
    model, batch, _ = traced
    with pytest.raises(AirInterpError, match=message):
        model.trace(batch, **call)


def test_asking_for_what_was_not_traced_is_one_line(traced):
    model, batch, _ = traced
    trace = model.trace(batch, states=["z_L"])
    with pytest.raises(AirInterpError, match="'z_H' was not traced"):
        trace.states("z_H")
    with pytest.raises(AirInterpError, match="no update at step=7"):
        trace.states("z_L", step=7)


def test_chunks_one_by_one_are_the_whole_trace_cut_by_rows(traced):
    model, batch, _ = traced
    site = "layer.0.hook_resid_post"
    whole = model.trace(batch, sites=[site])
    chunks = list(trace_batches(model, batch, sites=[site], batch_size=2))
    assert [rows for rows, _ in chunks] == [slice(0, 2), slice(2, 4), slice(4, 5)]
    for rows, part in chunks:
        assert torch.equal(part.states("z_L"), whole.states("z_L")[:, rows])
        assert torch.equal(part.site(site), whole.site(site)[:, rows])
        assert torch.equal(part.decode("z_H"), whole.decode("z_H")[:, rows])


def test_at_keeps_only_the_accepted_sub_steps_and_reduce_shrinks_each_value(traced):
    model, batch, cache = traced
    site = "layer.1.hook_resid_post"
    last_step = model.cfg.halt_max_steps - 1
    kept = model.trace(batch, states=["z_H"], sites=[site], at=lambda name, where: where.step == last_step)
    assert set(kept.updates("z_H")["step"]) == set(kept.updates(site)["step"]) == {last_step}
    assert torch.equal(kept.states("z_H")[-1], cache[f"step.{last_step}.sub.5.hook_z_H"])
    [(_, mean_over_d)] = trace_batches(model, batch, states=[], sites=[site], reduce=lambda name, value: value.mean(-1),
                                       at=lambda name, where: where.step == 0)
    expected = torch.stack([cache[f"step.0.sub.{sub}.{site}"].mean(-1) for sub in mean_over_d.updates(site)["sub"]])
    assert torch.equal(mean_over_d.site(site), expected)


def test_no_puzzles_is_one_line(traced):
    model, batch, _ = traced
    with pytest.raises(AirInterpError, match="no puzzles to trace"):
        model.trace({name: values[:0] for name, values in batch.items()})
