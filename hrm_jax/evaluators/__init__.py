"""Task-specific evaluation beyond the per-token metrics every task gets (spec §7).

Every evaluation reports exact and token accuracy from the model's final segment. Some tasks
score predictions in ways that need the decoded grids on the host; their task module
(`hrm_jax/tasks/`) names an evaluator from here:

  maze.MazeEvaluator — `valid_optimal` (§7.1);
  arc.ArcEvaluator   — pass@K with augmentation voting under both credit rules and a Kaggle
                       `submission.json` (§7.2).

An evaluator sees every evaluated row once per evaluation round: `begin()`, then `update(batch,
preds, q_halt)` per batch with host numpy arrays of the *global* batch, then `result()`.
`write(out_dir)` saves its files (if any) for the round.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Evaluator(Protocol):
  """What `evaluate.run_eval` calls; see the module docstring."""

  shown: tuple[str, ...]  # result keys printed on the `eval` line (all go to metrics.jsonl)

  def begin(self) -> None: ...

  def update(self, batch: dict, preds: np.ndarray, q_halt: np.ndarray) -> None: ...

  def result(self) -> dict[str, float]: ...

  def write(self, out_dir: str) -> None: ...
