"""Task definitions: everything that differs between Sudoku and Maze lives here.

Probes, training and the data code use only the :class:`Task` interface (tokens, text form,
neighbourhoods, violation masks, validity checks, symmetries), never task-specific branches.
"""
import math
import re
from typing import Optional

from air_interp.errors import AirInterpError
from air_interp.tasks.base import PAD, AttentionSpec, Contrast, Task
from air_interp.tasks.maze import MazeTask, maze_task
from air_interp.tasks.sudoku import SUDOKU, SudokuTask

__all__ = ["PAD", "AttentionSpec", "Contrast", "Task", "SudokuTask", "MazeTask", "TASKS", "get_task", "task_for_tokens"]

MAZE_SIDES = (10, 15, 20, 30)
MAX_MAZE_SIDE = 64

TASKS: dict[str, Task] = {"sudoku": SUDOKU, **{maze_task(side).name: maze_task(side) for side in MAZE_SIDES}}


def get_task(name: object) -> Task:
    """Look a task up by name: ``sudoku``, ``maze`` (30x30) or ``maze<side>`` for any side 4..64
    (any other value, a name read from a file included, is a one-line AirInterpError)."""
    if not isinstance(name, str):
        raise AirInterpError(f"a task is named by a string (sudoku, maze, maze<side>), got {name!r}")
    if name in TASKS:
        return TASKS[name]
    match = re.fullmatch(r"maze(\d+)", name)
    if match and 4 <= int(match.group(1)) <= MAX_MAZE_SIDE:
        task = maze_task(int(match.group(1)))
        return TASKS.get(task.name, task)
    raise AirInterpError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)} (or maze<side>, side 4..64)")


def task_for_tokens(vocab_size: int, seq_len: Optional[int] = None) -> Optional[Task]:
    """The task whose tokens have this vocabulary (and sequence length), or None; without a length,
    the one the public code trains on (Sudoku, the 30x30 maze). The one place a task is told from
    shapes (public checkpoints and processed data carry no task name)."""
    side = math.isqrt(seq_len) if seq_len else 0
    maze = maze_task(side) if seq_len and side * side == seq_len and 4 <= side <= MAX_MAZE_SIDE else TASKS["maze"]
    return next((task for task in (SUDOKU, maze)
                 if task.vocab_size == vocab_size and seq_len in (None, task.seq_len)), None)
