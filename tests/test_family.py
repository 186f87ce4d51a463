"""The recursive family as data: TRM's one-, two- and seven-state models, its MLP mixer and the
three-state models run through the same probes as AIR, each checked against a second computation
on the model's hooks."""
import numpy as np
import pandas as pd
import pytest
import torch

from air_interp import AirInterpError, AIRConfig, load_model
from air_interp.cli import main
from air_interp.probes.attention import AttentionOptions, attention_contrasts
from air_interp.probes.decode import decode, render_rollout
from air_interp.probes.freeze import freeze, freeze_matrix, freeze_table, run_freeze
from air_interp.probes.linear import collect
from air_interp.probes.patching import patch
from conftest import random_batch, tiny_model

FAMILY = ("trm", "trm_mlp_t", "trm_singlez", "trm_hier6", "L2x_Mx_H")
THREE_STATES = ("L2x_Mx_H", "Lx_Mx_Hx", "Lx_Mx_Hx_token_prepend")


def sudoku_batch(model, size=4):
    """Random digits as givens (and as labels: the probes only need their shapes and tokens)."""
    inputs = random_batch(model, size)["inputs"].clamp(min=1).numpy()
    return inputs, inputs.copy()


def test_schedules_describe_the_public_updates():
    formulas = {name: [str(update) for update in AIRConfig.preset(name).schedule[-(AIRConfig.preset(name).L_cycles + 1):]]
                for name in FAMILY[:4]}
    assert formulas["trm"][0] == "z_L = f(z_L + (z_H + x))" and formulas["trm"][-1] == "z_H = f(z_H + z_L)"
    assert formulas["trm_singlez"][0] == "z_L = f(z_L + x)" and formulas["trm_singlez"][-1] == "z_L = f(z_L)"
    assert formulas["trm_hier6"][2] == "z_L3 = f((z_L1 + z_L2 + z_L3 + z_L4 + z_L5 + z_L6) + (z_H + x))"
    assert formulas["trm_hier6"][-1] == "z_H = f(z_H + (z_L1 + z_L2 + z_L3 + z_L4 + z_L5 + z_L6))"
    assert AIRConfig.preset("trm").first_with_gradient == 14 and AIRConfig.preset("Lx_H").first_with_gradient == 4


@pytest.mark.parametrize("variant", FAMILY)
def test_decode_reads_every_state_as_the_hooks_see_it(variant):
    model = tiny_model(variant)
    inputs, labels = sudoku_batch(model)
    result = decode(model, inputs, labels, progress=False)
    states = model.cfg.states if variant != "trm_singlez" else ("z_L",)
    assert result.states == states and result.grids.shape[2] == len(states)
    assert set(result.table["state"]) == set(states)
    _, cache = model.run_with_cache({"inputs": torch.as_tensor(inputs)})
    width = model.cfg.sub_steps
    for s, state in enumerate(states):
        sub = max(k for k, update in enumerate(model.cfg.schedule) if update.writes == state)
        lens = model.unembed(cache[f"step.1.sub.{sub}.hook_{state}"]).argmax(-1).numpy()
        assert np.array_equal(result.grids[:, width + sub, s], lens), state
    assert all(state in render_rollout(result, 0, [0]) for state in states)


def test_freeze_holds_any_subset_and_observes_the_rest():
    model = tiny_model("trm_hier6")
    inputs, labels = sudoku_batch(model)
    updates, puzzles = freeze(model, inputs, labels, state="z_H+z_L3", progress=False)
    assert set(updates["observed"]) == {"z_L1", "z_L2", "z_L4", "z_L5", "z_L6"}
    assert set(updates["freeze"]) == set(puzzles["freeze"]) == {"z_H+z_L3"}
    hold = [(name, lambda z, hook: hook.previous) for name in model.hook_names(r".*hook_z_(H|L3)")]
    with model.hooks(fwd_hooks=hold):
        out = model({"inputs": torch.as_tensor(inputs)}, return_type="all")
    reset = model.unembed(model.initial_state(len(inputs))["z_H"]).argmax(-1)
    assert torch.equal(model.unembed(out.z_H).argmax(-1), reset)  # z_H never moved
    assert np.array_equal(puzzles["exact"], (reset.numpy() == labels).all(-1))  # read from the output state
    with pytest.raises(AirInterpError, match="unknown state to freeze 'z_L7'; this model \\(trm_hier6\\) has z_H, z_L1"):
        freeze(model, inputs, labels, state="z_L7", progress=False)
    with pytest.raises(AirInterpError, match="leaves no state to observe"):
        freeze(tiny_model("trm_singlez"), inputs, labels, state="z_L", progress=False)


def test_attention_between_any_two_kinds_and_one_line_without_attention():
    model = tiny_model("trm")
    inputs, labels = sudoku_batch(model)
    options = AttentionOptions(steps=(1,))
    forward = attention_contrasts(model, inputs, labels, options, progress=False)
    backward = attention_contrasts(model, inputs, labels, AttentionOptions(steps=(1,), kinds=("H", "L")), progress=False)
    assert set(forward["pair"]) == {"L-H"} and set(backward["pair"]) == {"H-L"}
    assert np.array_equal(forward["d_nbr"].to_numpy(), -backward["d_nbr"].to_numpy())
    with pytest.raises(AirInterpError, match=r"^trm_mlp_t mixes positions with an MLP \(mixer='mlp_t'\): it has no "
                                             "attention pattern to measure$"):
        attention_contrasts(tiny_model("trm_mlp_t"), inputs, labels, options, progress=False)
    with pytest.raises(AirInterpError, match="two different update kinds"):
        attention_contrasts(model, inputs, labels, AttentionOptions(steps=(1,), kinds=("L", "L")), progress=False)


def test_linear_probes_and_patching_per_state_of_seven():
    model = tiny_model("trm_hier6")
    inputs, labels = sudoku_batch(model)
    labels[:, ::2] = (labels[:, ::2] % 9) + 1  # some open cells whose answer differs from the given
    inputs[:, ::2] = 1
    data = collect(model, inputs, labels, states=["z_L2", "z_H"], progress=False)
    assert {(site.state, site.step) for site in data.sites} == {(s, t) for s in ("z_L2", "z_H") for t in (0, 1)}
    _, cache = model.run_with_cache({"inputs": torch.as_tensor(inputs)})
    site = next(site for site in data.sites if (site.state, site.step) == ("z_L2", 1))
    assert site.name == "step.1.sub.15.hook_z_L2"  # the last update of z_L2 in ACT step 1: the last cycle's second
    z = cache[site.name][:, model.cfg.prefix_len:]
    assert np.array_equal(site.features, z[torch.as_tensor(inputs == 1)].numpy())
    table = patch(model, inputs, labels, states=["z_L4"], progress=False)
    assert set(table["state"]) == {"none", "z_L4"}


def test_three_state_presets_are_schedules_of_three_frequencies():
    formulas = [str(update) for update in AIRConfig.preset("L2x_Mx_H").schedule]
    assert formulas == ["z_L = f((z_L + x) + (z_M + z_H + x))"] * 2 + ["z_M = f(z_M + (z_L + z_H + x))"] + \
        ["z_L = f((z_L + x) + (z_M + z_H + x))"] * 2 + ["z_M = f(z_M + (z_L + z_H + x))", "z_H = f(z_H + (z_M + z_L))"]
    for name in THREE_STATES:
        cfg = AIRConfig.preset(name)
        assert cfg.variant == name and AIRConfig.from_json(cfg.to_json()) == cfg
        assert [cfg.kinds.count(kind) for kind in "LMH"] == [4, 2, 1] and cfg.first_with_gradient == 4
        assert cfg.states == ("z_H", "z_M", "z_L") and cfg.output_state == "z_H"
    model = tiny_model("Lx_Mx_Hx_token_prepend")
    assert {name for name, _ in model.named_parameters() if name.startswith("level_token")} == {
        "level_token_L", "level_token_M", "level_token_H"}
    with pytest.raises(AirInterpError, match="three-state model"):
        AIRConfig.preset("hrm", M_cycles=2)


def test_freeze_matrix_is_the_freeze_tables_ratios():
    model = tiny_model("L2x_Mx_H")
    inputs, labels = sudoku_batch(model)
    _, puzzles = run_freeze([model], inputs, labels, progress=False)
    matrix = freeze_matrix(puzzles)
    assert len(matrix) == 6 and set(matrix["freeze"]) == {"z_H", "z_M", "z_L"}
    table = freeze_table(puzzles).set_index("freeze")
    for row in matrix.itertuples():
        column = f"{row.observed}_content_changes_mean"
        assert row.observed != row.freeze
        assert row.ratio == pytest.approx(table.loc[row.freeze, column] / table.loc["none", column])
        assert row.exact == table.loc[row.freeze, "exact_mean"]
    with pytest.raises(AirInterpError, match="normal rollout"):
        freeze_matrix(puzzles[puzzles["freeze"] != "none"])


def test_attention_contrasts_between_three_kinds_add_up():
    """Each contrast is one kind's metric minus another's: L-M plus M-H is L-H."""
    model = tiny_model("Lx_Mx_Hx")
    inputs, labels = sudoku_batch(model)
    tables = {pair: attention_contrasts(model, inputs, labels, AttentionOptions(steps=(1,), kinds=pair),
                                        progress=False) for pair in (("L", "M"), ("M", "H"), ("L", "H"))}
    for metric in ("d_nbr", "d_ent"):
        chained = tables[("L", "M")][metric].to_numpy() + tables[("M", "H")][metric].to_numpy()
        np.testing.assert_allclose(chained, tables[("L", "H")][metric].to_numpy(), atol=1e-5)


def test_every_probe_runs_on_a_three_state_checkpoint_from_the_command_line(tmp_path, capsys):
    checkpoint = tmp_path / "three.safetensors"
    tiny_model("L2x_Mx_H").save(checkpoint)
    assert load_model(checkpoint).cfg.variant == "L2x_Mx_H"
    common = [str(checkpoint), "--puzzles", "3", "--quiet", "--threads", "1"]
    for i, (command, *extra) in enumerate((["decode"], ["freeze", "--state", "each"], ["freeze", "--state", "zM,zL"],
                                           ["attention", "--kinds", "M,H", "--layer", "1", "--bootstrap", "100"],
                                           ["linear-probe", "--state", "zM"], ["patch", "--state", "zM"])):
        out = tmp_path / str(i)
        assert main([command, *common, "--out", str(out), *extra]) == 0, (command, capsys.readouterr().err)
    matrix = pd.read_csv(tmp_path / "1" / "freeze_matrix.csv")
    assert set(zip(matrix["freeze"], matrix["observed"])) == {(a, b) for a in ("z_H", "z_M", "z_L")
                                                              for b in ("z_H", "z_M", "z_L") if a != b}
    assert set(pd.read_csv(tmp_path / "3" / "attention_rows.csv")["pair"]) == {"M-H"}
    assert set(pd.read_csv(tmp_path / "0" / "decode_table.csv")["state"]) == {"z_H", "z_M", "z_L"}
