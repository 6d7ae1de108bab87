"""Framework-free recurrence schedules for one ACT segment (spec §2.2, §4.2, §12.4).

These functions know nothing of Flax: they take the cells as callables
`f_L(z_L, injection) -> z_L` and `f_H(z_H, injection) -> z_H` and only schedule them.

HRM and TRM share one schedule: N cycles, each T low-level updates then one high-level
update (HRM: N = H_cycles, T = L_cycles; TRM: T = H_cycles "full recursions" of n = L_cycles
z-updates and one y-update, with f_L = f_H). They differ in which evaluations carry gradient:

  'one_step'   — only the last low and the last high evaluation (HRM, Eq. 2-3; TRM ablation);
  'last_cycle' — the whole last cycle, T + 1 evaluations (TRM, §4.2);
  'full'       — all N·(T + 1) evaluations (backprop through time; ablation).

The no-gradient part runs under `jax.lax.scan` and its output goes through
`jax.lax.stop_gradient`, so nothing inside it is kept for the backward pass: training memory
does not grow with the number of no-gradient cycles.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

Cell = Callable[[jax.Array, Optional[jax.Array]], jax.Array]  # (state, injection or None)
State = tuple[jax.Array, jax.Array]  # (z_H, z_L), each [B, S, D]
Step = Callable[[State], State]
# record(state before, state after) -> a pytree of arrays, computed after every step.
Record = Callable[[State, State], Any]

GRADIENT_MODES = ('one_step', 'last_cycle', 'full')


def _stack(*parts):
  """Concatenates per-step record pytrees along their leading (step) axis; Nones are skipped."""
  parts = [p for p in parts if p is not None]
  if not parts:
    return None
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def _recorded(step: Step, record: Optional[Record]) -> Callable[[State], tuple[State, Any]]:
  """`step` returning (new state, record of this step with a leading axis of 1, or None)."""

  def run(s: State) -> tuple[State, Any]:
    new = step(s)
    if record is None:
      return new, None
    return new, jax.tree.map(lambda r: r[None], record(s, new))

  return run


def scan_steps(
  step: Callable[[State], tuple[State, Any]], state: State, length: int
) -> tuple[State, Any]:
  """Applies a recorded `step` `length` times (a static int, may be 0) under `jax.lax.scan`.

  Returns (state, records with a leading axis of `length` steps, or None).
  """
  if length <= 0:
    return state, None
  state, ys = jax.lax.scan(lambda s, _: step(s), state, None, length=length)
  if ys is None:
    return state, None
  return state, jax.tree.map(lambda y: y.reshape((-1, *y.shape[2:])), ys)


def no_grad_steps(
  step: Callable[[State], tuple[State, Any]], state: State, length: int
) -> tuple[State, Any]:
  """`scan_steps` whose result carries no gradient to anything used inside it."""
  return jax.lax.stop_gradient(scan_steps(step, state, length))


def schedule(
  low: Step,
  high: Step,
  state: State,
  N: int,
  T: int,
  gradient: str,
  record: Optional[Record] = None,
):
  """N cycles of (T × `low`, then `high`) on `state`; `gradient` picks what is differentiated.

  See the module docstring for the gradient modes. N, T are static ints ≥ 1.
  Returns the final state or, with `record`, (final state, records): `record(before, after)`
  of every one of the K = N·(T + 1) steps in order, stacked on a leading axis of K. Recording
  adds scan outputs only: the steps and their order are the same as without it, so analysis
  reads the states of the computation that is trained and evaluated.
  """
  if N < 1 or T < 1:
    raise ValueError(f'H_cycles and L_cycles must be >= 1, got N={N}, T={T}')
  if gradient not in GRADIENT_MODES:
    raise ValueError(f'gradient must be one of {GRADIENT_MODES}, got {gradient!r}')
  low_r, high_r = _recorded(low, record), _recorded(high, record)

  def cycle(s: State) -> tuple[State, Any]:
    s, lows = scan_steps(low_r, s, T)
    s, highs = high_r(s)
    return s, _stack(lows, highs)

  if gradient == 'full':
    s, records = scan_steps(cycle, state, N)
  else:
    s, early = no_grad_steps(cycle, state, N - 1)
    if gradient == 'last_cycle':
      s, last = cycle(jax.lax.stop_gradient(s))
      records = _stack(early, last)
    else:
      s, lows = no_grad_steps(low_r, s, T - 1)
      # Only now do evaluations record gradient: the states entering them are constants.
      s, low_last = low_r(jax.lax.stop_gradient(s))
      s, high_last = high_r(s)
      records = _stack(early, lows, low_last, high_last)
  return s if record is None else (s, records)


def hrm_cells(f_L: Cell, f_H: Cell, x: jax.Array) -> tuple[Step, Step]:
  """(low, high) state updates of HRM/TRM: z_L ← f_L(z_L, z_H + x); z_H ← f_H(z_H, z_L)."""

  def low(s: State) -> State:
    z_H, z_L = s
    return z_H, f_L(z_L, z_H + x)

  def high(s: State) -> State:
    z_H, z_L = s
    return f_H(z_H, z_L), z_L

  return low, high


def single_z_cells(f: Cell, x: jax.Array) -> tuple[Step, Step]:
  """(low, high) of the single-z ablation on (z, z): z ← f(z, x); z ← f(z, no injection)."""

  def low(s: State) -> State:
    return s[0], f(s[1], x)

  def high(s: State) -> State:
    z = f(s[1], None)
    return z, z

  return low, high


def multi_z_cells(f: Cell, x: jax.Array, k: int) -> tuple[Step, Step]:
  """(low, high) of TRM's "multi-scale z" ablation (`trm_hier6.py`, TRM Table 2) on (y, z).

  z holds k latent features side by side, z = [z_1 | ... | z_k] on its last axis ([B, S, k·D]).
  low: z_1 ← f(Σ_j z_j, y + x), then z_1 moves to the end, so that k successive low steps
  update z_1, ..., z_k in turn and leave them in their order (the reference updates z_i at the
  i-th step of a cycle). high: y ← f(y, Σ_j z_j).
  """

  def split(z: jax.Array) -> jax.Array:
    return z.reshape(*z.shape[:-1], k, z.shape[-1] // k)

  def low(s: State) -> State:
    y, z = s
    zs = split(z)
    new = f(jnp.sum(zs, axis=-2), y + x)
    return y, jnp.concatenate([zs[..., 1:, :], new[..., None, :]], axis=-2).reshape(z.shape)

  def high(s: State) -> State:
    y, z = s
    return f(y, jnp.sum(split(z), axis=-2)), z

  return low, high


def hrm_segment(
  f_L: Cell,
  f_H: Cell,
  z_H: jax.Array,
  z_L: jax.Array,
  x: jax.Array,
  N: int,
  T: int,
  gradient: str = 'one_step',
  record: Optional[Record] = None,
):
  """One HRM/TRM segment: N cycles, each T low-level steps then one high-level step.

  For h in 0..N-1: T times z_L ← f_L(z_L, z_H + x); then z_H ← f_H(z_H, z_L) (spec §2.2).
  TRM is the same with y = z_H, z = z_L, T = n and f_L = f_H = its single network (§4.2).

  Args:
    f_L, f_H: the low/high-level cells, `(state [B,S,D], injection [B,S,D]) -> [B,S,D]`.
    z_H, z_L: incoming states [B, S, D] (already detached by the caller).
    x: input embedding [B, S, D]; it receives gradient only through low steps that do.
    N, T: static cycle counts, both ≥ 1.
    gradient: 'one_step' (HRM), 'last_cycle' (TRM) or 'full' (see the module docstring).
    record: optional per-step record (see `schedule`).
  Returns:
    (z_H, z_L) after the segment, each [B, S, D]; with `record`, ((z_H, z_L), records [K, ...]).
  """
  return schedule(*hrm_cells(f_L, f_H, x), (z_H, z_L), N, T, gradient, record)


def single_z_segment(
  f: Cell,
  z: jax.Array,
  x: jax.Array,
  N: int,
  T: int,
  gradient: str = 'last_cycle',
  record: Optional[Record] = None,
):
  """TRM "single z" ablation (§4.7, TRM Table 2): one carried state, no separate answer y.

  For each of N cycles: T times z ← f(z, x); then z ← f(z, no injection). Returns (z, z), so
  the caller reads its output from the first element like any other segment (with `record`,
  as `hrm_segment`).
  """
  return schedule(*single_z_cells(f, x), (z, z), N, T, gradient, record)
