"""Three roles? (probes.roles): its quantities against the probes they come from, its table, and
the committed reading against the committed runs."""
import numpy as np
import pandas as pd
import pytest

from air_interp.checkpoints import load_model
from air_interp.data import load_dataset
from air_interp.defaults import REPO
from air_interp.probes.decode import decode
from air_interp.probes.emergence import run_dataset
from air_interp.probes.freeze import freeze_matrix, run_freeze
from air_interp.probes.roles import kind_pairs, read_roles, roles_table, undecided_values
from conftest import sudoku_test_puzzles, tiny_model

ROLES_RUNS = REPO / "figures" / "roles_runs.csv"
THREE_STATES = REPO / "checkpoints" / "sweeps" / "three_states" / "published"


@pytest.fixture(scope="module")
def reading():
    model = tiny_model("L2x_Mx_H", halt_max_steps=3)
    inputs, labels = sudoku_test_puzzles(4)
    return model, inputs, labels, read_roles(model, inputs, labels, progress=False)


def test_every_pair_of_update_kinds_is_compared_and_the_contrasts_add_up(reading):
    model, _, _, result = reading
    assert kind_pairs(model) == [("L", "M"), ("L", "H"), ("M", "H")]
    values = result.values.set_index("quantity")["value"]
    for layer in range(model.cfg.n_layers):
        pair = {p: values[f"d_nbr {p}, layer {layer}"] for p in ("L-M", "M-H", "L-H")}
        assert pair["L-M"] + pair["M-H"] == pytest.approx(pair["L-H"], abs=1e-9)


def test_freeze_ratios_and_accuracies_are_the_freeze_probes(reading):
    model, inputs, labels, result = reading
    matrix = freeze_matrix(run_freeze([model], inputs, labels, progress=False)[1])
    values = result.values.set_index("quantity")["value"]
    assert len(matrix) == 6  # three states, each frozen, the two others observed
    for row in matrix.itertuples():
        assert values[f"{row.observed} changes, {row.freeze} frozen / normal"] == row.ratio
        assert values[f"cell_accuracy, {row.freeze} frozen"] == row.cell_accuracy
    assert values["exact, normal"] == matrix["exact_normal"].iloc[0]


def test_undecided_cells_are_counted_from_the_decoded_grids(reading):
    model, inputs, labels, result = reading
    values = result.values.set_index("quantity")["value"]
    grids = decode(model, inputs, labels, progress=False).grids
    for s, state in enumerate(result.decoded.states):
        first_two = grids[:, : 2 * model.cfg.sub_steps, s]  # ACT steps 0 and 1, every sub-step
        most = (first_two == 1).sum(-1).max(1).mean()  # Sudoku's undecided token is BLANK (1)
        assert values[f"{state} undecided cells, ACT steps 0-1"] == pytest.approx(most)
        assert 0 <= values[f"{state} most undecided at ACT step"] < model.cfg.halt_max_steps


def test_roles_table_is_mean_and_std_over_seeds_with_n():
    rows = pd.DataFrame({"run": ["a0", "a0", "a1", "a1", "b0", "b0"], "variant": ["a", "a", "a", "a", "b", "b"],
                         "exact_accuracy": [0.5, 0.5, 0.7, 0.7, 0.1, 0.1],
                         "quantity": ["q", "r", "q", "r", "q", "r"], "value": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0]})
    table = roles_table(rows, ["b", "a"]).set_index("quantity")
    assert list(table.columns) == ["b", "a"]
    assert table.loc["exact % (test split, card)", "a"] == f"60.0 ± {100 * np.std([0.5, 0.7], ddof=1):.1f} (n=2)"
    assert table.loc["q", "a"] == f"2.000 ± {np.std([1.0, 3.0], ddof=1):.3f} (n=2)"
    assert table.loc["r", "a"] == "2.000 ± 0.000 (n=1)"  # a seed without the value is not counted
    assert table.loc["r", "b"] == "6.000 ± 0.000 (n=1)"


@pytest.mark.skipif(not ROLES_RUNS.is_file(), reason="figures/roles_runs.csv is not made yet")
def test_the_committed_reading_comes_from_the_committed_run():
    committed = pd.read_csv(ROLES_RUNS)
    run = committed["run"].iloc[0]
    model = load_model(THREE_STATES / f"{run}.safetensors", dtype="float32")
    test = load_dataset(run_dataset(THREE_STATES / "logs" / run)).split("test")
    inputs, labels = test.inputs[:64], test.labels[:64]
    ours = dict(undecided_values(model, decode(model, inputs, labels, progress=False)))
    mine = committed[committed["run"] == run].set_index("quantity")["value"]
    for state in ("z_L", "z_M", "z_H"):
        quantity = f"{state} undecided cells, ACT steps 0-1"
        # a mean over 64 puzzles of whole cells: one cell decoded differently under another machine's kernels moves it by 1/64
        assert ours[quantity] == pytest.approx(mine[quantity], abs=1.5 / 64)
