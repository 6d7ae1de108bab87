"""Reasoning analyses of a trained model (HRM paper §4 figures; inference-time scaling).

- Forward residuals ‖z^i − z^{i−1}‖ of z_H and z_L over a whole episode, beside a plain
  recurrent baseline (`rollout.rollout(..., baseline=True)`).
- Participation ratio PR = (Σλ)² / Σλ² of the covariance of the states — the effective number
  of dimensions they use. What is collected (pinned down here, the paper does not say): for each
  test puzzle and each of the M segments of its evaluation rollout, the state after the segment,
  flattened over all S = prefix + seq_len positions and D channels into one vector of S·D
  numbers. PR(z_H) and PR(z_L) are those of the n = puzzles × M vectors, so PR ≤ n − 1. The
  paper (HRM §4, Sudoku, hidden 512): trained PR(z_H) ≈ 89.95, PR(z_L) ≈ 30.22, and no such
  hierarchy at random init.
- Inference-time scaling: exact accuracy after M segments for several M_max from one rollout to
  the largest (evaluation runs exactly M_max segments and scores the last, so segment M's
  predictions are the M_max = M evaluation), and the Q-halting variant that stops a puzzle at
  the first segment whose Q head says halt (the config's rule), at most M_max.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from hrm_jax.analysis import rollout as rollout_lib
from hrm_jax.data.format import IGNORE_LABEL_ID

SCALING_M = (1, 2, 4, 8, 16, 32, 64)


def participation_ratio(X: np.ndarray) -> float:
  """PR = (Σλ)² / Σλ² = tr(C)² / tr(C²) of the covariance C of the rows of X [n, d].

  Computed without an eigendecomposition, through the n×n or d×d Gram matrix of the centred
  samples, whichever is smaller (both have the same non-zero eigenvalues). Isotropic noise in k
  dimensions gives ≈ k; rank-1 data gives 1. Returns nan for fewer than 2 samples or no variance.
  """
  X = np.asarray(X, np.float64).reshape(len(X), -1)
  if len(X) < 2:
    return float('nan')
  Xc = X - X.mean(axis=0)
  gram = Xc @ Xc.T if Xc.shape[0] <= Xc.shape[1] else Xc.T @ Xc
  tr_c2 = float(np.sum(gram * gram))
  if tr_c2 <= 0.0:
    return float('nan')
  return float(np.trace(gram)) ** 2 / tr_c2  # the 1/(n−1) of C cancels


def valid_rows(batch: dict) -> np.ndarray:
  """bool [B]: the rows with at least one scored label (not eval padding)."""
  return (np.asarray(batch['labels']) != IGNORE_LABEL_ID).any(axis=-1)


def collect_states(
  loaded: rollout_lib.Loaded, batches: Iterable[dict], M: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
  """(z_H, z_L) float32 [P, M, S·D]: each test puzzle's state after each of M segments
  (default eval.halt_max_steps), flattened over positions and channels; padded rows dropped."""
  hs, ls = [], []
  for batch in batches:
    traj = rollout_lib.rollout(loaded, batch, M, keep='segments')
    ok = valid_rows(batch)
    for out, z in ((hs, traj.z_H), (ls, traj.z_L)):
      z = np.swapaxes(z, 0, 1)[ok]  # [B, M, S, D]
      out.append(z.reshape(z.shape[0], z.shape[1], -1).astype(np.float32))
  return np.concatenate(hs), np.concatenate(ls)


def pr_of_states(z_PxMxF: np.ndarray, num_puzzles: Optional[int] = None) -> float:
  """PR of the first `num_puzzles` (default all) puzzles' states, [P, M, F] -> P·M samples."""
  z = z_PxMxF[:num_puzzles]
  return participation_ratio(z.reshape(-1, z.shape[-1]))


def pr_curve(z_PxMxF: np.ndarray, sizes: Sequence[int]) -> list[float]:
  """PR against the number of puzzles included (the paper's PR-vs-tasks curve), one per size."""
  return [pr_of_states(z_PxMxF, n) for n in sizes]


def participation_ratios(
  loaded: rollout_lib.Loaded,
  batches: Iterable[dict],
  M: Optional[int] = None,
  curve_sizes: Sequence[int] = (),
) -> dict:
  """{'pr_h', 'pr_l', 'num_samples', 'curve_sizes', 'curve_h', 'curve_l'} for `loaded` on the
  puzzles of `batches` (see the module docstring for what is collected)."""
  z_H, z_L = collect_states(loaded, batches, M)
  # The curve ends at all the puzzles there are, where it meets pr_h / pr_l.
  sizes = [n for n in curve_sizes if n < len(z_H)] + ([len(z_H)] if curve_sizes else [])
  return dict(
    pr_h=pr_of_states(z_H),
    pr_l=pr_of_states(z_L),
    num_samples=int(z_H.shape[0] * z_H.shape[1]),
    curve_sizes=sizes,
    curve_h=pr_curve(z_H, sizes),
    curve_l=pr_curve(z_L, sizes),
  )


def residual_series(traj: rollout_lib.Trajectory, valid: Optional[np.ndarray] = None) -> dict:
  """Batch-mean forward residuals along the episode, indexed by global step i = m·K + k + 1.

  Returns {'H': (steps [n_H], residual [n_H]), 'L': (steps [n_L], residual [n_L])}: a module's
  residual at the steps that update it (‖z^i − z^{i−1}‖ between its consecutive updates is the
  same thing, since other steps leave it unchanged). `valid` [B] masks padded rows.
  """
  M, K, B = traj.res_H.shape
  valid = np.ones(B, bool) if valid is None else np.asarray(valid)
  steps = np.arange(M * K) + 1
  kinds = np.tile(traj.step_kind, M)
  out = {}
  for name, res, kind in (('H', traj.res_H, rollout_lib.HIGH), ('L', traj.res_L, rollout_lib.LOW)):
    mean = res[:, :, valid].mean(axis=-1).reshape(-1)
    out[name] = (steps[kinds == kind], mean[kinds == kind])
  return out


def forward_residuals(loaded: rollout_lib.Loaded, batch: dict, M: Optional[int] = None) -> dict:
  """Residual series of the model and of its recurrent baseline on one batch, M segments.

  Returns {'model': residual_series, 'baseline': residual_series (None for arch transformer,
  which has no f_L), 'K': steps per segment, 'M': segments}.
  """
  M = M or loaded.cfg.eval.halt_max_steps
  ok = valid_rows(batch)
  traj = rollout_lib.rollout(loaded, batch, M, keep='none')
  out = dict(model=residual_series(traj, ok), baseline=None, K=len(traj.step_kind), M=M)
  if loaded.cfg.model.arch != 'transformer':
    base = rollout_lib.rollout(loaded, batch, M, keep='none', baseline=True)
    out['baseline'] = residual_series(base, ok)
  return out


def residual_summary(res: dict) -> dict[str, float]:
  """Mean residual over the last segment's steps: residual_h_last, residual_l_last and
  residual_baseline_l_last (the figure's endpoints, for logs and tests)."""
  K, M = res['K'], res['M']
  last = lambda steps, r: float(r[steps > (M - 1) * K].mean()) if len(r) else float('nan')  # noqa: E731
  out = {
    'residual_h_last': last(*res['model']['H']),
    'residual_l_last': last(*res['model']['L']),
  }
  if res['baseline'] is not None:
    out['residual_baseline_l_last'] = last(*res['baseline']['L'])
  return out


def segment_scores(preds_MxBxL: np.ndarray, batch: dict) -> dict[str, np.ndarray]:
  """Per-segment, per-row scores as `losses.metric_sums` counts them: `exact` bool [M, B],
  `token_acc` [M, B], `blank_correct` and `blank_count` [M, B] (cells whose input differs from
  the label), `valid` bool [B]."""
  labels = np.asarray(batch['labels'])
  mask = labels != IGNORE_LABEL_ID
  blank = mask & (np.asarray(batch['inputs']) != labels)
  correct = (preds_MxBxL == labels) & mask
  n_valid = mask.sum(-1)
  n_correct = correct.sum(-1)
  return dict(
    exact=n_correct == n_valid,
    token_acc=n_correct / np.maximum(n_valid, 1),
    blank_correct=(correct & blank).sum(-1),
    blank_count=np.broadcast_to(blank.sum(-1), n_correct.shape),
    valid=n_valid > 0,
  )


def q_says_halt(q_halt: np.ndarray, q_continue: np.ndarray, halt_rule: str) -> np.ndarray:
  """bool, same shape: the training halting rule (act.halt_rule) — q_halt > q_continue or > 0."""
  if halt_rule == 'q_continue':
    return q_halt > q_continue
  if halt_rule == 'zero':
    return q_halt > 0
  raise ValueError(f"halt_rule must be 'q_continue' or 'zero', got {halt_rule!r}")


def scaling(
  loaded: rollout_lib.Loaded, batches: Iterable[dict], Ms: Sequence[int] = SCALING_M
) -> dict[int, dict[str, float]]:
  """Inference-time scaling table {M: metrics} from one rollout to max(Ms) per batch.

  Per M: `exact_accuracy`, `accuracy` (mean token accuracy), `blank_accuracy`, `steps` (= M:
  evaluation always runs M_max segments) — what `--mode=eval --config.eval.halt_max_steps=M`
  reports — and the Q-halting variant `qhalt_exact_accuracy`, `qhalt_steps`: each puzzle is
  scored at the first segment whose Q head says halt (act.halt_rule), at most M.
  """
  Ms = sorted(set(int(m) for m in Ms))
  rule = loaded.cfg.act.halt_rule
  sums = {m: dict.fromkeys(('exact', 'acc', 'bc', 'bn', 'n', 'qexact', 'qsteps'), 0.0) for m in Ms}
  for batch in batches:
    traj = rollout_lib.rollout(loaded, batch, Ms[-1], keep='none')
    sc = segment_scores(traj.preds, batch)
    ok = sc['valid']
    halt = q_says_halt(traj.q_halt, traj.q_continue, rule)  # [Mmax, B]
    # 0-based index of the first segment that says halt; Mmax where none does.
    first = np.where(halt.any(0), halt.argmax(0), Ms[-1])
    rows = np.arange(len(ok))
    for m in Ms:
      s = sums[m]
      s['n'] += ok.sum()
      s['exact'] += sc['exact'][m - 1][ok].sum()
      s['acc'] += sc['token_acc'][m - 1][ok].sum()
      s['bc'] += sc['blank_correct'][m - 1][ok].sum()
      s['bn'] += sc['blank_count'][m - 1][ok].sum()
      stop = np.minimum(first, m - 1)
      s['qexact'] += sc['exact'][stop, rows][ok].sum()
      s['qsteps'] += (stop + 1)[ok].sum()
  table = {}
  for m, s in sums.items():
    n = max(s['n'], 1.0)
    table[m] = dict(
      exact_accuracy=s['exact'] / n,
      accuracy=s['acc'] / n,
      blank_accuracy=s['bc'] / max(s['bn'], 1.0),
      steps=float(m),
      qhalt_exact_accuracy=s['qexact'] / n,
      qhalt_steps=s['qsteps'] / n,
      count=s['n'],
    )
  return table
