"""The order in which training examples are seen.

As in the public code, an epoch visits every puzzle group once, in a random order, and takes one
random member of each group (a random augmentation of the puzzle). Batches are consecutive
slices of the concatenated epochs, so the batch of step k depends only on (seed, k): resuming
needs nothing but the step, and rank r of a data-parallel run takes slice r of the global batch.
"""
from __future__ import annotations

import numpy as np



class GroupSampler:
    """Row indices of the global batch of each step."""

    def __init__(self, groups: np.ndarray, batch_size: int, seed: int) -> None:
        order = np.argsort(groups, kind="stable")
        _, self._starts, self._counts = np.unique(groups[order], return_index=True, return_counts=True)
        self._members = order
        self.batch_size = batch_size
        self.seed = seed
        self._cache: dict[int, np.ndarray] = {}

    @property
    def n_groups(self) -> int:
        return len(self._starts)

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """The rows of one epoch, in order (one per group)."""
        if epoch not in self._cache:
            rng = np.random.default_rng([self.seed, epoch])
            groups = rng.permutation(self.n_groups)
            member = rng.integers(0, self._counts[groups])
            self._cache = {epoch: self._members[self._starts[groups] + member]}  # keep one epoch
        return self._cache[epoch]

    def batch_rows(self, step: int) -> np.ndarray:
        """The global batch of (0-based) ``step``; it may straddle an epoch boundary."""
        position, parts, needed = step * self.batch_size, [], self.batch_size
        while needed:
            epoch, offset = divmod(position, self.n_groups)
            part = self.epoch_rows(epoch)[offset:offset + needed]
            parts.append(part)
            position += len(part)
            needed -= len(part)
        return np.concatenate(parts)
