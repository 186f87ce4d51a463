"""Sudoku and maze datasets: upstream import/export, offline generators, augmentation, storage.

The entry points most code needs are re-exported here; see each module for the details.
"""
from air_interp.data.dataset import Dataset, Split, augment, load_dataset, save_dataset
from air_interp.data.generate import generate_mazes, generate_sudoku
from air_interp.data.upstream import read_csv, read_processed, write_csv, write_processed

__all__ = [
    "Dataset", "Split", "augment", "load_dataset", "save_dataset", "generate_mazes", "generate_sudoku",
    "read_csv", "read_processed", "write_csv", "write_processed",
]
