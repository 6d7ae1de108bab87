"""Framework-free recurrence schedules for one ACT segment (spec §2.2, §12.4).

These functions know nothing of Flax: they take the cells as callables
`f_L(z_L, injection) -> z_L` and `f_H(z_H, injection) -> z_H` and only schedule them.
The no-gradient part runs under `jax.lax.scan` and its output carry goes through
`jax.lax.stop_gradient`, so nothing inside it is kept for the backward pass: training memory
is O(1) in the number of cycles (the paper's 1-step gradient approximation, Eq. 2-3).
"""

from __future__ import annotations

from typing import Callable

import jax

Cell = Callable[[jax.Array, jax.Array], jax.Array]
State = tuple[jax.Array, jax.Array]  # (z_H, z_L), each [B, S, D]

GRADIENT_MODES = ('one_step', 'full')


def scan_steps(step: Callable[[State], State], state: State, length: int) -> State:
  """Applies `step` `length` times (a static int, may be 0) under `jax.lax.scan`."""
  if length <= 0:
    return state
  state, _ = jax.lax.scan(lambda s, _: (step(s), None), state, None, length=length)
  return state


def no_grad_steps(step: Callable[[State], State], state: State, length: int) -> State:
  """`scan_steps` whose result carries no gradient to anything used inside it."""
  return jax.lax.stop_gradient(scan_steps(step, state, length))


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
  """One HRM segment: N high-level cycles, each T low-level steps then one high-level step.

  For h in 0..N-1: T times z_L ← f_L(z_L, z_H + x); then z_H ← f_H(z_H, z_L) (spec §2.2).

  Args:
    f_L, f_H: the low/high-level cells, `(state [B,S,D], injection [B,S,D]) -> [B,S,D]`.
    z_H, z_L: incoming states [B, S, D] (already detached by the caller).
    x: input embedding [B, S, D]; receives gradient only through the last f_L.
    N, T: static cycle counts (H_cycles, L_cycles), both ≥ 1.
    gradient: 'one_step' — only the final f_L and final f_H evaluations carry gradient
      (the paper's approximation, O(1) memory in N·T); 'full' — backprop through all
      N·(T+1) evaluations (the ablation; memory grows with N·T).
  Returns:
    (z_H, z_L) after the segment, each [B, S, D].
  """
  if N < 1 or T < 1:
    raise ValueError(f'H_cycles and L_cycles must be >= 1, got N={N}, T={T}')
  if gradient not in GRADIENT_MODES:
    raise ValueError(f'gradient must be one of {GRADIENT_MODES}, got {gradient!r}')

  def low(s: State) -> State:
    z_H, z_L = s
    return z_H, f_L(z_L, z_H + x)

  def high(s: State) -> State:
    z_H, z_L = s
    return f_H(z_H, z_L), z_L

  def cycle(s: State) -> State:
    return high(scan_steps(low, s, T))

  if gradient == 'full':
    return scan_steps(cycle, (z_H, z_L), N)

  s = no_grad_steps(cycle, (z_H, z_L), N - 1)
  s = no_grad_steps(low, s, T - 1)
  # Only now do evaluations record gradient: the states entering them are constants.
  return high(low(jax.lax.stop_gradient(s)))
