"""Maze-Hard evaluation beyond exact match: `valid_optimal` (spec §7.1).

A predicted path counts when it is a valid and optimal start-goal path (the paper's wording),
which a different optimal path than the label's also is.
"""

from __future__ import annotations

import numpy as np

from hrm_jax.data import maze_gen
from hrm_jax.data.format import IGNORE_LABEL_ID


class MazeEvaluator:
  """Fraction of test mazes whose predicted path is valid and optimal (`valid_optimal`).

  Rows whose labels are all ignored (the eval loader's padding) are skipped.
  """

  shown = ('valid_optimal',)

  def __init__(self):
    self._ok = self._count = 0

  def begin(self) -> None:
    self._ok = self._count = 0

  def update(self, batch: dict, preds: np.ndarray, q_halt: np.ndarray) -> None:
    """batch['inputs'], batch['labels'] int [b, L] and preds int [b, L] (tokens)."""
    del q_halt
    real = (np.asarray(batch['labels']) != IGNORE_LABEL_ID).any(axis=1)
    ok = maze_gen.valid_optimal(np.asarray(batch['inputs'])[real], np.asarray(preds)[real])
    self._ok += int(np.sum(ok))
    self._count += int(real.sum())

  def result(self) -> dict[str, float]:
    return {'valid_optimal': self._ok / max(self._count, 1), 'valid_optimal_count': self._count}

  def write(self, out_dir: str) -> None:
    del out_dir  # nothing beyond the metrics
