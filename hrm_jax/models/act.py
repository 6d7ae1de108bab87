"""The ACT carry and the halting rule of deep supervision (spec §3.1, §3.4).

A training sequence keeps its batch slot for consecutive optimizer steps until it halts; each
step is one segment with its own loss and update. The carry therefore is training state (it is
checkpointed with the parameters).
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp

# Batch key of a per-row exploration minimum that replaces the drawn one (`halt_decision`).
MIN_STEPS_KEY = 'min_halt_steps'


@flax.struct.dataclass
class Carry:
  """ACT carry for a batch of B rows.

  z_H, z_L: [B, S, D] detached recurrent states (compute dtype; z_L [B, S, n·D] for
    trm_multi_z).
  steps: int32 [B] segments run on the current data. halted: bool [B].
  inputs, labels: int32 [B, L]; puzzle_identifiers: int32 [B] — the row's current data.
  """

  z_H: jax.Array
  z_L: jax.Array
  steps: jax.Array
  halted: jax.Array
  inputs: jax.Array
  labels: jax.Array
  puzzle_identifiers: jax.Array


def empty_carry(
  batch_size: int, state_shape: tuple[int, int], seq_len: int, dtype, z_L_width: int = 0
) -> Carry:
  """A carry whose rows are all halted, so the first call loads a whole fresh batch (§3.1).

  state_shape = (P+L, D); z_L is (P+L, z_L_width) when that is given (trm_multi_z's n·D). States
  and data are placeholders; they are replaced before use.
  """
  # Distinct arrays for every field: the train step donates the carry buffer by buffer.
  S, D = state_shape
  tokens = lambda: jnp.zeros((batch_size, seq_len), jnp.int32)  # noqa: E731
  return Carry(
    z_H=jnp.zeros((batch_size, S, D), dtype),
    z_L=jnp.zeros((batch_size, S, z_L_width or D), dtype),
    steps=jnp.zeros((batch_size,), jnp.int32),
    halted=jnp.ones((batch_size,), bool),
    inputs=tokens(),
    labels=tokens(),
    puzzle_identifiers=jnp.zeros((batch_size,), jnp.int32),
  )


def reset_halted(carry: Carry, batch: dict, z_H0: jax.Array, z_L0: jax.Array) -> Carry:
  """Replaces halted rows with the incoming batch's rows and fresh states (§3.1 step 1).

  Halted rows get z_H ← z_H0, z_L ← z_L0 (H_init/L_init broadcast, [B, S, D]), steps ← 0 and
  the new data. Non-halted rows keep their state and data; the incoming row at their index is
  dropped, as in the reference (spec §11a #12: nominal epochs overstate distinct samples).
  """
  h = carry.halted
  rows = lambda new, old: jnp.where(h.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)  # noqa: E731
  return Carry(
    z_H=rows(z_H0, carry.z_H),
    z_L=rows(z_L0, carry.z_L),
    steps=jnp.where(h, 0, carry.steps),
    halted=h,
    inputs=rows(batch['inputs'], carry.inputs),
    labels=rows(batch['labels'], carry.labels),
    puzzle_identifiers=rows(batch['puzzle_identifiers'], carry.puzzle_identifiers),
  )


def halt_decision(
  steps_B: jax.Array,
  q_halt_B: jax.Array,
  q_continue_B: jax.Array,
  *,
  M_max: int,
  key: jax.Array,
  exploration_prob: float,
  halt_rule: str = 'q_continue',
  training: bool = True,
  min_steps_B: Optional[jax.Array] = None,
) -> jax.Array:
  """Which rows halt after this segment (§3.1 steps 3-5, TRM §4.3).

  steps_B already counts this segment. Always halt at M_max. In training (and M_max > 1) also
  halt when Q says so — q_halt > q_continue ('q_continue', HRM) or q_halt > 0 ('zero', TRM) —
  but not before a per-row exploration minimum: with probability ε, min_steps ~ U{2..M_max},
  else 0 (one coin per row, not per batch). Evaluation halts only at M_max. `min_steps_B`
  replaces the drawn minimum (the reference's own draws, `tools.torch_parity`).
  """
  halted = steps_B >= M_max
  if not training or M_max <= 1:
    return halted
  if halt_rule == 'q_continue':
    q_says_halt = q_halt_B > q_continue_B
  elif halt_rule == 'zero':
    q_says_halt = q_halt_B > 0
  else:
    raise ValueError(f"act.halt_rule must be 'q_continue' or 'zero', got {halt_rule!r}")
  if min_steps_B is None:
    k_explore, k_steps = jax.random.split(key)
    explore = jax.random.uniform(k_explore, steps_B.shape) < exploration_prob
    min_steps_B = jnp.where(explore, jax.random.randint(k_steps, steps_B.shape, 2, M_max + 1), 0)
  return (halted | q_says_halt) & (steps_B >= min_steps_B)


def q_continue_target(
  next_q_halt_B: jax.Array, next_q_continue_B: jax.Array, is_last_B: jax.Array
) -> jax.Array:
  """Q-learning target for q_continue from the next segment's logits (§3.1 step 4).

  sigmoid(q̂'_halt) for rows at M_max, else sigmoid(max(q̂'_halt, q̂'_continue)). [B] fp32.
  """
  return jax.nn.sigmoid(
    jnp.where(is_last_B, next_q_halt_B, jnp.maximum(next_q_halt_B, next_q_continue_B))
  )
