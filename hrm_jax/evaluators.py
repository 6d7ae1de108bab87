"""Task-specific evaluation beyond the per-token metrics every task gets (spec §7).

The training loop's evaluation reports exact and token accuracy for every task from the model's
final segment. Some tasks score predictions in ways that need the decoded grids on the host:

  maze — `valid_optimal`: the predicted path is a valid and optimal start-goal path (the paper's
         wording), which a different optimal path than the label's also is (§7.1).
  arc  — pass@K with augmentation voting, under both per-puzzle credit rules, and a Kaggle
         `submission.json` (§7.2); see `arc_eval.ArcEvaluator`.

An evaluator sees every evaluated row once per evaluation round: `begin()`, then `update(batch,
preds, q_halt)` per batch with host numpy arrays of the *global* batch, then `result()`.
`write(out_dir)` saves its files (if any) for the round.
"""

from __future__ import annotations

import os
from typing import Optional, Protocol

import numpy as np

from hrm_jax import arc_eval
from hrm_jax.data import maze_gen
from hrm_jax.data.format import IGNORE_LABEL_ID


class Evaluator(Protocol):
  """What `train.run_eval` calls; see the module docstring."""

  shown: tuple[str, ...]  # result keys printed on the `eval` line (all go to metrics.jsonl)

  def begin(self) -> None: ...

  def update(self, batch: dict, preds: np.ndarray, q_halt: np.ndarray) -> None: ...

  def result(self) -> dict[str, float]: ...

  def write(self, out_dir: str) -> None: ...


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


class ArcEvaluator:
  """pass@K by augmentation voting and `submission.json` (§7.2), over `arc_eval.ArcEvaluator`.

  Votes are cleared at every `begin()` (one checkpoint's votes) unless `aggregate`, which pools
  them across the evaluations of a run as the TRM reference always does.
  """

  shown = ('arc/pass@1_all', 'arc/pass@2_all', 'arc/pass@1_frac', 'arc/pass@2_frac')

  def __init__(self, data_dir: str, aggregate: bool = False):
    self._impl = arc_eval.ArcEvaluator(data_dir, aggregate=aggregate)

  def begin(self) -> None:
    self._impl.begin()

  def update(self, batch: dict, preds: np.ndarray, q_halt: np.ndarray) -> None:
    """batch['inputs'] int [b, L], batch['puzzle_identifiers'] int [b], preds int [b, L],
    q_halt float [b] (logits)."""
    self._impl.update(
      np.asarray(batch['inputs']),
      np.asarray(preds),
      np.asarray(q_halt),
      np.asarray(batch['puzzle_identifiers']),
    )

  def result(self) -> dict[str, float]:
    return self._impl.result()

  def write(self, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    self._impl.write_submission(os.path.join(out_dir, 'submission.json'))


def make(cfg, data_dir: str) -> Optional[Evaluator]:
  """The evaluator of `cfg.data.name` for the dataset in `data_dir`, or None (Sudoku)."""
  name = cfg.data.name
  if name == 'maze':
    return MazeEvaluator()
  if name == 'arc':
    return ArcEvaluator(data_dir, aggregate=cfg.eval.aggregate_votes)
  return None
