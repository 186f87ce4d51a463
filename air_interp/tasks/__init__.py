"""Task definitions: everything that differs between Sudoku and Maze lives here."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """The shape of a task's token grids, as the model sees them."""

    name: str
    vocab_size: int
    seq_len: int
    undecided_token: int


TASKS = {
    "sudoku": Task("sudoku", vocab_size=11, seq_len=81, undecided_token=1),
    "maze": Task("maze", vocab_size=6, seq_len=900, undecided_token=0),
}


def get_task(name: str) -> Task:
    """Look a task up by name; a clear error lists the known names."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
