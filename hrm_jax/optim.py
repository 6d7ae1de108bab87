"""Optimizers of HRM/TRM: the learning-rate schedule, Adam-atan2 and sparse sign-SGD.

Spec §5 (hrm-trm-spec.md). Two optimizers run every step, each with its own base lr and the same
schedule shape (§5.3), in this order (§5.4):

* ``sparse_sign_sgd`` on the puzzle-embedding table, a non-trainable buffer updated row-sparsely
  from the gradients of the rows gathered for the global batch (§1.11, §5.2);
* ``adam_atan2`` on every trainable parameter, uniformly, no groups or exclusions (§5.1).

Both papers say "AdamW" in places; both codebases use Adam-atan2 (§5.1 [DIFF]). Using AdamW, or a
dense optimizer for the puzzle embeddings, is one of the recurring defects of earlier ports.

Logging the learning rate: the optimizer stores no lr. After an update the state's ``count`` equals
the step t just taken, so ``current_lr(schedule, opt_state)`` = ``schedule(count)`` is the lr that
step used; the embedding optimizer's lr is the caller's own ``emb_schedule(count)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jax.Array], jax.Array]


def lr_schedule(
  base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float = 1.0
) -> Schedule:
  """Returns s -> lr(s), linear warm-up then cosine decay to ``min_ratio·base_lr`` (§5.3).

  ``s`` is the 1-based optimizer step (the reference increments its counter before computing
  the lr), a Python int or a traced int scalar; the result is a float32 scalar.

    s <  W: base · s / W
    s >= W: base · (r + max(0, (1 − r) · ½ · (1 + cos(π · progress)))),
            progress = (s − W) / (S_total − W)

  ``min_ratio`` r = 1 (the default of every recipe but HRM's full Sudoku, which uses 0.1) gives
  warm-up followed by a constant lr.
  """
  # As in the reference, the denominators are at least 1: W = 0 never takes the warm-up branch
  # and S_total <= W gives progress = s − W, which the clip below turns into 1 (lr = r·base).
  warmup = float(max(1, warmup_steps))
  decay_len = float(max(1, total_steps - warmup_steps))

  def schedule(s: jax.Array) -> jax.Array:
    s = jnp.asarray(s, jnp.float32)
    warm = base_lr * s / warmup
    # Clip at 1 so steps past S_total (never trained, §5.3) hold r instead of rising again.
    progress = jnp.clip((s - warmup_steps) / decay_len, 0.0, 1.0)
    cosine = jnp.maximum(0.0, (1.0 - min_ratio) * 0.5 * (1.0 + jnp.cos(math.pi * progress)))
    decayed = base_lr * (min_ratio + cosine)
    return jnp.where(s < warmup_steps, warm, decayed).astype(jnp.float32)

  return schedule


class AdamAtan2State(NamedTuple):
  """State of ``adam_atan2``: steps taken so far and the fp32 moments (trees like params)."""

  count: jax.Array  # int32 scalar; 0 before the first update
  mu: optax.Updates  # first moment m
  nu: optax.Updates  # second moment v


def adam_atan2(
  learning_rate: float | Schedule,
  b1: float = 0.9,
  b2: float = 0.95,
  weight_decay: float = 0.1,
) -> optax.GradientTransformation:
  """Adam-atan2 with decoupled weight decay, as the fused CUDA kernel computes it (§5.1).

  Per parameter tensor, with step t = count + 1 and η_t = learning_rate(t) (or the constant):

    1. p ← p · (1 − η_t·λ)                                  decay first, on the old weights
    2. m ← β1·m + (1 − β1)·g
    3. v ← β2·v + (1 − β2)·g²
    4. p ← p − (η_t / (1 − β1^t)) · atan2(m, sqrt(v) / sqrt(1 − β2^t))

  ``update(grads, state, params)`` needs ``params`` and returns
  u = −η_t·λ·p − (η_t / (1 − β1^t))·atan2(...) in each parameter's dtype, so that
  ``optax.apply_updates(params, u)`` is the new p above. The math is fp32 whatever the
  parameter dtype; m and v are fp32.

  There is no ε: atan2 is bounded and atan2(0, 0) = 0, so a zero gradient on zero moments moves
  p by the decay alone. The first-moment bias correction multiplies the step outside the atan2
  (the maintainers reverted moving it inside), so at t = 1 the step can reach η/(1 − β1)·π/2.
  The third-party ``adam-atan2-pytorch`` package scales with a = 1.27 by default and is
  therefore not a numerical match for the reference; this follows the fused kernel (a = b = 1).
  """

  def lr_at(t: jax.Array) -> jax.Array:
    if callable(learning_rate):
      return jnp.asarray(learning_rate(t), jnp.float32)
    return jnp.asarray(learning_rate, jnp.float32)

  def init_fn(params: optax.Params) -> AdamAtan2State:
    def zeros(p: jax.Array) -> jax.Array:
      return jnp.zeros(jnp.shape(p), jnp.float32)

    return AdamAtan2State(
      count=jnp.zeros([], jnp.int32),
      mu=jax.tree.map(zeros, params),
      nu=jax.tree.map(zeros, params),
    )

  def update_fn(
    grads: optax.Updates, state: AdamAtan2State, params: optax.Params | None = None
  ) -> tuple[optax.Updates, AdamAtan2State]:
    if params is None:
      raise ValueError(
        'adam_atan2 applies decoupled weight decay and needs params: '
        'call update(grads, state, params).'
      )
    count = optax.safe_int32_increment(state.count)  # t: the reference counts from 1
    t = count.astype(jnp.float32)
    lr = lr_at(count)
    step_size = lr / (1.0 - b1**t)
    v_scale = jnp.sqrt(1.0 - b2**t)

    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g.astype(jnp.float32), state.mu, grads)
    nu = jax.tree.map(
      lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g.astype(jnp.float32)), state.nu, grads
    )

    def leaf_update(p: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
      p32 = p.astype(jnp.float32)
      u = -lr * weight_decay * p32 - step_size * jnp.arctan2(m, jnp.sqrt(v) / v_scale)
      return u.astype(p.dtype)

    updates = jax.tree.map(leaf_update, params, mu, nu)
    return updates, AdamAtan2State(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def current_lr(learning_rate: float | Schedule, opt_state: optax.OptState) -> jax.Array:
  """The lr used by the last ``adam_atan2`` step: ``learning_rate(count)``, a float32 scalar.

  ``opt_state`` is an ``AdamAtan2State`` or any tree holding exactly one (e.g. an
  ``optax.chain`` state). Before the first update (count 0) this is ``learning_rate(0)``.
  """

  def is_state(x: object) -> bool:
    return isinstance(x, AdamAtan2State)

  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(x)]
  if len(found) != 1:
    raise ValueError(f'expected one AdamAtan2State in opt_state, found {len(found)}')
  if callable(learning_rate):
    return jnp.asarray(learning_rate(found[0].count), jnp.float32)
  return jnp.asarray(learning_rate, jnp.float32)


def gather_rows(table: jax.Array, ids: jax.Array) -> jax.Array:
  """Rows ``table[ids]``: table [V, D], ids int [B] -> [B, D] (§1.11).

  The forward pass differentiates with respect to these gathered rows (one gradient row per
  batch element), not the table, so the gradient never has size V.
  """
  return jnp.take(table, ids, axis=0)


def sparse_sign_sgd(
  table: jax.Array,
  ids: jax.Array,
  grads: jax.Array,
  lr: jax.Array,
  weight_decay: float,
) -> jax.Array:
  """Row-sparse sign-SGD with decoupled weight decay on the puzzle-embedding table (§5.2).

  table [V, D]; ids int [B] and grads [B, D] of the *global* batch (under a mesh, pass them
  sharded or gathered; the sum below is over all B); lr a scalar. Returns the new table [V, D].

  For each id present in ``ids``, with G = sum of the gradient rows carrying that id:
    w_id ← w_id · (1 − lr·λ) − lr · sign(G).
  Rows absent from the batch are returned bit-identical (no decay). Duplicates are summed
  before the sign, so opposite-sign rows of different size cancel partly, not by vote.
  ``ids`` must lie in [0, V).

  Shapes are static (jit-friendly): the at most B unique ids are padded to B with the
  out-of-range id V, whose rows are gathered as zeros and dropped by the scatter. Memory beyond
  the table is O(B·D) (summed gradients and gathered rows) plus O(B) for the sort in
  ``jnp.unique``; nothing of size V is built, so when the caller jits with the table donated
  (``donate_argnums``) XLA scatters into the table's buffer in place. The math is fp32; the
  result has the table's dtype.
  """
  num_rows = table.shape[0]
  batch = ids.shape[0]
  uniq, inverse = jnp.unique(ids, size=batch, fill_value=num_rows, return_inverse=True)
  summed = jax.ops.segment_sum(grads.astype(jnp.float32), inverse.reshape(-1), num_segments=batch)
  rows = table.at[uniq].get(mode='fill', fill_value=0).astype(jnp.float32)
  lr = jnp.asarray(lr, jnp.float32)
  new_rows = rows * (1.0 - lr * weight_decay) - lr * jnp.sign(summed)
  return table.at[uniq].set(new_rows.astype(table.dtype), mode='drop')
