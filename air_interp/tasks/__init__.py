"""Task definitions: everything that differs between Sudoku and Maze lives here.

Probes, training and the data code use only the :class:`Task` interface (tokens, text form,
neighbourhoods, violation masks, validity checks, symmetries), never task-specific branches.
"""
import re

from air_interp.tasks.base import PAD, AttentionSpec, Contrast, Task
from air_interp.tasks.maze import MazeTask, maze_task
from air_interp.tasks.sudoku import SUDOKU, SudokuTask

__all__ = ["PAD", "AttentionSpec", "Contrast", "Task", "SudokuTask", "MazeTask", "TASKS", "get_task"]

MAZE_SIDES = (10, 15, 20, 30)
MAX_MAZE_SIDE = 64

TASKS: dict[str, Task] = {"sudoku": SUDOKU, **{maze_task(side).name: maze_task(side) for side in MAZE_SIDES}}


def get_task(name: str) -> Task:
    """Look a task up by name: ``sudoku``, ``maze`` (30x30) or ``maze<side>`` for any side 4..64."""
    if name in TASKS:
        return TASKS[name]
    match = re.fullmatch(r"maze(\d+)", name)
    if match and 4 <= int(match.group(1)) <= MAX_MAZE_SIDE:
        task = maze_task(int(match.group(1)))
        return TASKS.get(task.name, task)
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)} (or maze<side>, side 4..64)")
