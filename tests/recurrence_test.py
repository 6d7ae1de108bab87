"""The segment schedule and its 1-step gradient (spec §2.2), on toy cells."""

import chex
import jax
import jax.numpy as jnp
import pytest

from hrm_jax.models import recurrence

D = 6


def _params(seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  return dict(
    W_L=jax.random.normal(k[0], (D, D)) / 2,
    W_H=jax.random.normal(k[1], (D, D)) / 2,
    x=jax.random.normal(k[2], (2, 3, D)),
    c=jax.random.normal(k[3], (2, 3, D)),
  )


def _cells(p):
  f_L = lambda z, inj: jnp.tanh(z @ p['W_L'] + inj)  # noqa: E731
  f_H = lambda z, inj: jnp.tanh(z @ p['W_H'] + inj)  # noqa: E731
  return f_L, f_H


def _z0():
  return jnp.full((2, 3, D), 0.3), jnp.full((2, 3, D), -0.2)


def _unrolled(p, N, T, z_H, z_L):
  """The reference evaluation order, as a plain Python loop (§2.2 table)."""
  f_L, f_H = _cells(p)
  for _ in range(N):
    for _ in range(T):
      z_L = f_L(z_L, z_H + p['x'])
    z_H = f_H(z_H, z_L)
  return z_H, z_L


def _loss_of(segment_fn):
  return lambda p: jnp.sum(segment_fn(p)[0] * p['c'])


@pytest.mark.parametrize('N,T', [(1, 1), (2, 2), (3, 2), (2, 4)])
def test_forward_matches_evaluation_order(N, T):
  p = _params()
  f_L, f_H = _cells(p)
  for mode in recurrence.GRADIENT_MODES:
    got = recurrence.hrm_segment(f_L, f_H, *_z0(), p['x'], N, T, mode)
    chex.assert_trees_all_close(got, _unrolled(p, N, T, *_z0()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('N,T', [(2, 2), (3, 3)])
def test_one_step_gradient_is_last_f_L_and_f_H_with_constant_inputs(N, T):
  p = _params(1)

  def one_step(p):
    f_L, f_H = _cells(p)
    return recurrence.hrm_segment(f_L, f_H, *_z0(), p['x'], N, T, 'one_step')

  # The states entering the last f_L: all evaluations but the last f_L and f_H, as constants.
  z_H_in, z_L_in = _unrolled(p, N - 1, T, *_z0())
  z_L_in = _unrolled(p, 1, T - 1, z_H_in, z_L_in)[1] if T > 1 else z_L_in
  z_H_in, z_L_in = jax.lax.stop_gradient((z_H_in, z_L_in))

  def last_two(p):
    f_L, f_H = _cells(p)
    z_L = f_L(z_L_in, z_H_in + p['x'])
    return f_H(z_H_in, z_L), z_L

  g = jax.grad(_loss_of(one_step))(p)
  want = jax.grad(_loss_of(last_two))(p)
  chex.assert_trees_all_close(g, want, rtol=1e-5, atol=1e-7)
  chex.assert_tree_all_finite(g)

  full = jax.grad(
    _loss_of(lambda p: recurrence.hrm_segment(*_cells(p), *_z0(), p['x'], N, T, 'full'))
  )(p)
  unrolled = jax.grad(_loss_of(lambda p: _unrolled(p, N, T, *_z0())))(p)
  chex.assert_trees_all_close(full, unrolled, rtol=1e-4, atol=1e-6)
  for k in ('W_L', 'W_H', 'x'):
    assert float(jnp.max(jnp.abs(full[k] - g[k]))) > 1e-4, k


def test_incoming_state_gets_no_gradient_in_one_step_mode():
  p = _params(2)
  f_L, f_H = _cells(p)

  def loss(z_H):
    return jnp.sum(recurrence.hrm_segment(f_L, f_H, z_H, _z0()[1], p['x'], 2, 2)[0])

  chex.assert_trees_all_equal(jax.grad(loss)(_z0()[0]), jnp.zeros((2, 3, D)))


def test_rejects_bad_cycles_and_mode():
  p = _params()
  with pytest.raises(ValueError, match='H_cycles'):
    recurrence.hrm_segment(*_cells(p), *_z0(), p['x'], 0, 2)
  with pytest.raises(ValueError, match='gradient'):
    recurrence.hrm_segment(*_cells(p), *_z0(), p['x'], 2, 2, 'some')


@pytest.mark.parametrize('N,T', [(2, 2), (3, 6)])
def test_last_cycle_gradient_is_the_whole_last_cycle(N, T):
  """TRM (§4.2): the first N-1 cycles are constants; the last T+1 evaluations carry gradient."""
  p = _params(3)
  z_H_in, z_L_in = jax.lax.stop_gradient(_unrolled(p, N - 1, T, *_z0()))

  def last_cycle(p):
    return _unrolled(p, 1, T, z_H_in, z_L_in)

  def trm(p):
    return recurrence.hrm_segment(*_cells(p), *_z0(), p['x'], N, T, 'last_cycle')

  g = jax.grad(_loss_of(trm))(p)
  # Scan and Python loops round differently through 7 tanh cells; a wrong schedule is O(1) off.
  chex.assert_trees_all_close(g, jax.grad(_loss_of(last_cycle))(p), rtol=1e-4, atol=1e-6)
  # T + 1 evaluations is more than the 1-step gradient's 2 and fewer than all N·(T + 1).
  for other in ('one_step', 'full'):
    o = jax.grad(
      _loss_of(lambda p: recurrence.hrm_segment(*_cells(p), *_z0(), p['x'], N, T, other))
    )(p)
    assert float(jnp.max(jnp.abs(o['W_L'] - g['W_L']))) > 1e-4, other


def test_single_z_schedule_and_gradient():
  """TRM single-z (§4.7): T times z ← f(z + x), then z ← f(z); the last cycle differentiated."""
  p = _params(4)
  f = lambda p: lambda z, inj: jnp.tanh(z @ p['W_L'] + (0.0 if inj is None else inj))  # noqa: E731

  def unrolled(p, N, T, z):
    for _ in range(N):
      for _ in range(T):
        z = f(p)(z, p['x'])
      z = f(p)(z, None)
    return z

  z0 = _z0()[1]
  got = recurrence.single_z_segment(f(p), z0, p['x'], 3, 2, 'full')
  chex.assert_trees_all_close(got, (unrolled(p, 3, 2, z0),) * 2, rtol=1e-5, atol=1e-6)
  z_in = jax.lax.stop_gradient(unrolled(p, 2, 2, z0))
  g = jax.grad(lambda p: jnp.sum(recurrence.single_z_segment(f(p), z0, p['x'], 3, 2)[0] * p['c']))
  want = jax.grad(lambda p: jnp.sum(unrolled(p, 1, 2, z_in) * p['c']))
  chex.assert_trees_all_close(g(p), want(p), rtol=1e-5, atol=1e-7)
