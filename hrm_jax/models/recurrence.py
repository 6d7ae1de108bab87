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

from typing import Callable, Optional

import jax

Cell = Callable[[jax.Array, Optional[jax.Array]], jax.Array]  # (state, injection or None)
State = tuple[jax.Array, jax.Array]  # (z_H, z_L), each [B, S, D]

GRADIENT_MODES = ('one_step', 'last_cycle', 'full')


def scan_steps(step: Callable[[State], State], state: State, length: int) -> State:
  """Applies `step` `length` times (a static int, may be 0) under `jax.lax.scan`."""
  if length <= 0:
    return state
  state, _ = jax.lax.scan(lambda s, _: (step(s), None), state, None, length=length)
  return state


def no_grad_steps(step: Callable[[State], State], state: State, length: int) -> State:
  """`scan_steps` whose result carries no gradient to anything used inside it."""
  return jax.lax.stop_gradient(scan_steps(step, state, length))


def schedule(
  low: Callable[[State], State],
  high: Callable[[State], State],
  state: State,
  N: int,
  T: int,
  gradient: str,
) -> State:
  """N cycles of (T × `low`, then `high`) on `state`; `gradient` picks what is differentiated.

  See the module docstring for the gradient modes. N, T are static ints ≥ 1.
  """
  if N < 1 or T < 1:
    raise ValueError(f'H_cycles and L_cycles must be >= 1, got N={N}, T={T}')
  if gradient not in GRADIENT_MODES:
    raise ValueError(f'gradient must be one of {GRADIENT_MODES}, got {gradient!r}')

  def cycle(s: State) -> State:
    return high(scan_steps(low, s, T))

  if gradient == 'full':
    return scan_steps(cycle, state, N)
  s = no_grad_steps(cycle, state, N - 1)
  if gradient == 'last_cycle':
    return cycle(jax.lax.stop_gradient(s))
  s = no_grad_steps(low, s, T - 1)
  # Only now do evaluations record gradient: the states entering them are constants.
  return high(low(jax.lax.stop_gradient(s)))


def hrm_segment(
  f_L: Cell,
  f_H: Cell,
  z_H: jax.Array,
  z_L: jax.Array,
  x: jax.Array,
  N: int,
  T: int,
  gradient: str = 'one_step',
) -> State:
  """One HRM/TRM segment: N cycles, each T low-level steps then one high-level step.

  For h in 0..N-1: T times z_L ← f_L(z_L, z_H + x); then z_H ← f_H(z_H, z_L) (spec §2.2).
  TRM is the same with y = z_H, z = z_L, T = n and f_L = f_H = its single network (§4.2).

  Args:
    f_L, f_H: the low/high-level cells, `(state [B,S,D], injection [B,S,D]) -> [B,S,D]`.
    z_H, z_L: incoming states [B, S, D] (already detached by the caller).
    x: input embedding [B, S, D]; it receives gradient only through low steps that do.
    N, T: static cycle counts, both ≥ 1.
    gradient: 'one_step' (HRM), 'last_cycle' (TRM) or 'full' (see the module docstring).
  Returns:
    (z_H, z_L) after the segment, each [B, S, D].
  """

  def low(s: State) -> State:
    z_H, z_L = s
    return z_H, f_L(z_L, z_H + x)

  def high(s: State) -> State:
    z_H, z_L = s
    return f_H(z_H, z_L), z_L

  return schedule(low, high, (z_H, z_L), N, T, gradient)


def single_z_segment(
  f: Cell, z: jax.Array, x: jax.Array, N: int, T: int, gradient: str = 'last_cycle'
) -> State:
  """TRM "single z" ablation (§4.7, TRM Table 2): one carried state, no separate answer y.

  For each of N cycles: T times z ← f(z, x); then z ← f(z, no injection). Returns (z, z), so
  the caller reads its output from the first element like any other segment.
  """

  def low(s: State) -> State:
    return s[0], f(s[1], x)

  def high(s: State) -> State:
    z = f(s[1], None)
    return z, z

  return schedule(low, high, (z, z), N, T, gradient)
