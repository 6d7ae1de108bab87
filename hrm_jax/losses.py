"""Stablemax / softmax cross-entropy, the ACT loss and metric sums (spec §3.2-3.3).

Every function returns *sums over the batch*: the train step divides the loss by the global
batch size (§5.4) and the host divides metric sums by their counts, so results are the same
for any number of devices.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax

IGNORE_LABEL = -100
LOSS_TYPES = ('stablemax', 'softmax')


def stablemax_log_probs(logits: jax.Array) -> jax.Array:
  """log of stablemax (Prieto et al. 2025) over the last axis, fp32, [..., V] -> [..., V].

  s(x) = 1/(1-x) for x < 0, x+1 otherwise; log p_k = log s(x_k) - log Σ_j s(x_j).
  The reference computes this in float64; JAX runs without x64 by default, and in log form
  (log1p) fp32 agrees with the float64 formula to 1e-5 relative (tested), so we stay
  in fp32 rather than silently requesting a dtype that would be downcast.
  """
  x = logits.astype(jnp.float32)
  log_s = jnp.where(x < 0, -jnp.log1p(-jnp.minimum(x, 0.0)), jnp.log1p(jnp.maximum(x, 0.0)))
  return log_s - jnp.log(jnp.sum(jnp.exp(log_s), axis=-1, keepdims=True))


def token_losses(logits_BxLxV: jax.Array, labels_BxL: jax.Array, loss_type: str) -> jax.Array:
  """Per-token cross-entropy [B, L] (0 where the label is IGNORE_LABEL)."""
  if loss_type == 'stablemax':
    log_p = stablemax_log_probs(logits_BxLxV)
  elif loss_type == 'softmax':
    log_p = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
  else:
    raise ValueError(f'loss.type must be one of {LOSS_TYPES}, got {loss_type!r}')
  mask = labels_BxL != IGNORE_LABEL
  safe = jnp.where(mask, labels_BxL, 0)
  nll = -jnp.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
  return jnp.where(mask, nll, 0.0)


def act_loss(
  logits_BxLxV: jax.Array,
  labels_BxL: jax.Array,
  q_halt_B: jax.Array,
  q_continue_B: jax.Array,
  q_continue_target_B: Optional[jax.Array],
  loss_type: str = 'stablemax',
  q_weight: float = 0.5,
):
  """ACT loss head (§3.2), summed over the batch.

  total = Σ_b mean_t CE_{b,t} + q_weight·(Σ_b BCE(q_halt_b, seq_correct_b)
          [+ Σ_b BCE(q_continue_b, target_b)]), computed on every row at every segment.

  Returns (total, stats) where stats holds per-row arrays for the metrics: `is_correct` [B],
  `token_acc` [B], `n_valid` [B], and the loss components (scalars).
  """
  mask = labels_BxL != IGNORE_LABEL
  n_valid = jnp.sum(mask, axis=-1)
  divisor = jnp.maximum(n_valid, 1).astype(jnp.float32)
  lm_loss = jnp.sum(jnp.sum(token_losses(logits_BxLxV, labels_BxL, loss_type), -1) / divisor)

  correct = mask & (jnp.argmax(logits_BxLxV, axis=-1) == labels_BxL)
  n_correct = jnp.sum(correct, axis=-1)
  is_correct = n_correct == n_valid
  q_halt_loss = jnp.sum(
    optax.sigmoid_binary_cross_entropy(q_halt_B, is_correct.astype(jnp.float32))
  )
  q_continue_loss = jnp.zeros((), jnp.float32)
  if q_continue_target_B is not None:
    q_continue_loss = jnp.sum(optax.sigmoid_binary_cross_entropy(q_continue_B, q_continue_target_B))
  total = lm_loss + q_weight * (q_halt_loss + q_continue_loss)
  stats = dict(
    is_correct=is_correct,
    token_acc=n_correct / divisor,
    n_valid=n_valid,
    correct=correct,
    lm_loss=lm_loss,
    q_halt_loss=q_halt_loss,
    q_continue_loss=q_continue_loss,
  )
  return total, stats


def metric_sums(
  stats: dict,
  halted_B: jax.Array,
  steps_B: jax.Array,
  q_halt_B: jax.Array,
  inputs_BxL: jax.Array,
  labels_BxL: jax.Array,
) -> dict[str, jax.Array]:
  """Metric sums of §3.3 over rows halted at this call with at least one valid label.

  count, accuracy (Σ per-row token accuracy), exact_accuracy, q_halt_accuracy, steps, the three
  losses (batch sums over all rows), and blank_correct / blank_count: cells whose input differs
  from the label (Sudoku blanks, maze path cells), pooled over counted rows, for the honest
  `blank_accuracy` = blank_correct / blank_count.
  """
  valid = halted_B & (stats['n_valid'] > 0)
  f = lambda a: jnp.sum(jnp.where(valid, a, 0).astype(jnp.float32))  # noqa: E731
  blank = (inputs_BxL != labels_BxL) & (labels_BxL != IGNORE_LABEL) & valid[:, None]
  return dict(
    count=f(jnp.ones_like(valid)),
    accuracy=f(stats['token_acc']),
    exact_accuracy=f(stats['is_correct']),
    q_halt_accuracy=f((q_halt_B >= 0) == stats['is_correct']),
    steps=f(steps_B),
    blank_correct=jnp.sum(blank & stats['correct']).astype(jnp.float32),
    blank_count=jnp.sum(blank).astype(jnp.float32),
    lm_loss=stats['lm_loss'],
    q_halt_loss=stats['q_halt_loss'],
    q_continue_loss=stats['q_continue_loss'],
  )


def normalize_metrics(sums: dict, loss_divisor: Optional[float] = None) -> dict[str, float]:
  """Host-side normalisation (§3.3) of metric sums to means.

  Losses are divided by `loss_divisor` (training: the global batch size, as the reference
  logs them) or by count when None (evaluation); every other metric by count; blank_accuracy
  = blank_correct / blank_count. `count` itself is kept raw (number of sequences counted).
  """
  sums = {k: float(v) for k, v in sums.items()}
  count = max(sums.get('count', 0.0), 1.0)
  loss_divisor = loss_divisor or count
  out = {}
  for k, v in sums.items():
    if k in ('blank_correct', 'blank_count', 'count'):
      continue
    out[k] = v / loss_divisor if k.endswith('loss') else v / count
  if 'blank_count' in sums:
    out['blank_accuracy'] = sums['blank_correct'] / max(sums['blank_count'], 1.0)
  out['count'] = sums.get('count', 0.0)
  return out
