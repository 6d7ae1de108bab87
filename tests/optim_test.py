"""Tests of hrm_jax.optim against hand-computed steps of spec §5.1–5.3."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from hrm_jax import optim

BASE, W, S_TOTAL = 1e-4, 100, 1000


class LrScheduleTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
    (1, BASE / W),  # the first optimizer step is s = 1, not 0
    (W // 2, BASE / 2),
    (W - 1, BASE * (W - 1) / W),
    (W, BASE),  # progress 0: cosine term is 1
  )
  def test_warmup(self, s, expected):
    schedule = self.variant(optim.lr_schedule(BASE, W, S_TOTAL, min_ratio=0.1))
    np.testing.assert_allclose(schedule(jnp.int32(s)), expected, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_constant_after_warmup_with_ratio_one(self):
    schedule = self.variant(optim.lr_schedule(BASE, W, S_TOTAL))  # min_ratio defaults to 1
    for s in (W, W + 1, S_TOTAL // 2, S_TOTAL, 5 * S_TOTAL):
      np.testing.assert_allclose(schedule(jnp.int32(s)), BASE, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_cosine_to_min_ratio(self):
    r = 0.1
    schedule = self.variant(optim.lr_schedule(BASE, W, S_TOTAL, min_ratio=r))
    mid = (W + S_TOTAL) // 2
    np.testing.assert_allclose(schedule(jnp.int32(mid)), BASE * (r + (1 - r) / 2), rtol=1e-5)
    np.testing.assert_allclose(schedule(jnp.int32(S_TOTAL)), BASE * r, rtol=1e-5)
    s = 300
    expected = BASE * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * (s - W) / (S_TOTAL - W))))
    np.testing.assert_allclose(schedule(jnp.int32(s)), expected, rtol=1e-5)

  def test_vectorised_and_degenerate_lengths_are_finite(self):
    steps = jnp.arange(1, 2 * S_TOTAL, dtype=jnp.int32)
    lrs = jax.jit(jax.vmap(optim.lr_schedule(BASE, W, S_TOTAL, min_ratio=0.0)))(steps)
    chex.assert_shape(lrs, steps.shape)
    assert lrs.dtype == jnp.float32
    assert float(lrs.max()) <= BASE * (1 + 1e-6) and float(lrs.min()) >= 0.0
    for warmup, total in ((W, W), (W, W // 2), (0, 0)):
      lr = optim.lr_schedule(BASE, warmup, total, min_ratio=0.1)(jnp.int32(W + 7))
      chex.assert_tree_all_finite(lr)
      np.testing.assert_allclose(lr, 0.1 * BASE, rtol=1e-6)


def _reference_adam_atan2(params, grads_seq, lrs, b1, b2, wd):
  """Float64 numpy transcription of the §5.1 kernel, returning params after each step."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  out = []
  for t, (g, lr) in enumerate(zip(grads_seq, lrs), start=1):
    for k, old in list(p.items()):
      gk = np.asarray(g[k], np.float64)
      decayed = old * (1 - lr * wd)
      m[k] = b1 * m[k] + (1 - b1) * gk
      v[k] = b2 * v[k] + (1 - b2) * gk**2
      p[k] = decayed - lr / (1 - b1**t) * np.arctan2(m[k], np.sqrt(v[k] / (1 - b2**t)))
    out.append({k: x.copy() for k, x in p.items()})
  return out


def _tree(rng, scale=1.0):
  return {
    'w': jnp.asarray(scale * rng.standard_normal((3, 4)), jnp.float32),
    'b': jnp.asarray(scale * rng.standard_normal((5,)), jnp.float32),
  }


class AdamAtan2Test(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_two_steps_match_hand_computation(self):
    rng = np.random.default_rng(0)
    params = _tree(rng)
    grads_seq = [_tree(rng), _tree(rng, scale=0.3)]
    schedule = optim.lr_schedule(1e-2, 4, 10)  # warm-up: lr 2.5e-3 at t=1, 5e-3 at t=2
    tx = optim.adam_atan2(schedule, b1=0.9, b2=0.95, weight_decay=0.1)
    expected = _reference_adam_atan2(params, grads_seq, [2.5e-3, 5e-3], 0.9, 0.95, 0.1)

    @self.variant
    def step(p, s, g):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    state = tx.init(params)
    assert state.count.dtype == jnp.int32 and int(state.count) == 0
    p = params
    for g, want in zip(grads_seq, expected):
      p, state = step(p, state, g)
      chex.assert_trees_all_close(p, want, atol=1e-6, rtol=1e-6)
    assert int(state.count) == 2
    np.testing.assert_allclose(optim.current_lr(schedule, state), 5e-3, rtol=1e-6)
    chex.assert_trees_all_equal_shapes(state.mu, params)
    chex.assert_tree_all_finite(state)

  def test_bias_correction_outside_atan2_at_first_step(self):
    lr, b1 = 1e-3, 0.9
    tx = optim.adam_atan2(lr, b1=b1, weight_decay=0.0)
    params = {'x': jnp.zeros((4,))}
    grads = {'x': jnp.array([1.0, -1.0, 3.0, -0.5])}
    # Fresh state: m = 0.1 g and sqrt(v / bc2) = |g|, so |u| = lr/0.1 · atan(0.1) ≈ 0.997 lr.
    # (Correcting m inside the atan2 would give lr · π/4 instead.)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(
      u['x'], -np.sign(grads['x']) * lr / (1 - b1) * math.atan(0.1), rtol=1e-6
    )
    # With a large m and v = 0 the atan2 saturates: the step reaches lr/(1−β1)·π/2.
    state = optim.AdamAtan2State(jnp.int32(0), {'x': jnp.full((4,), 1e3)}, {'x': jnp.zeros(4)})
    u, _ = tx.update({'x': jnp.zeros(4)}, state, params)
    np.testing.assert_allclose(u['x'], -lr / (1 - b1) * math.pi / 2, rtol=1e-6)

  def test_decay_only_on_zero_gradient_and_no_epsilon(self):
    lr, wd = 1e-2, 0.1
    tx = optim.adam_atan2(lr, weight_decay=wd)
    params = _tree(np.random.default_rng(1))
    zeros = jax.tree.map(jnp.zeros_like, params)
    # atan2(0, 0) = 0: only the decoupled decay of the old weights moves p.
    u, state = tx.update(zeros, tx.init(params), params)
    chex.assert_trees_all_close(
      optax.apply_updates(params, u), jax.tree.map(lambda p: p * (1 - lr * wd), params), rtol=1e-6
    )
    chex.assert_trees_all_equal(state.mu, zeros)
    # No ε: the step is invariant to the gradient's scale, down to 1e-15 (g² still normal).
    tx = optim.adam_atan2(lr, weight_decay=0.0)
    grads = _tree(np.random.default_rng(2))
    u_unit, _ = tx.update(grads, tx.init(params), params)
    u_tiny, _ = tx.update(jax.tree.map(lambda g: g * 1e-15, grads), tx.init(params), params)
    chex.assert_trees_all_close(u_tiny, u_unit, rtol=1e-5)

  def test_jit_with_schedule_traces_once(self):
    schedule = optim.lr_schedule(1e-3, 2, 6, min_ratio=0.1)
    tx = optax.chain(optim.adam_atan2(schedule))
    rng = np.random.default_rng(3)
    params = _tree(rng)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s, g):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    state = tx.init(params)
    for t in range(1, 7):
      params, state = step(params, state, _tree(rng))
      np.testing.assert_allclose(optim.current_lr(schedule, state), schedule(t), rtol=1e-6)
    chex.assert_tree_all_finite(params)

  def test_requires_params_and_keeps_low_precision_dtype(self):
    tx = optim.adam_atan2(1e-3)
    params = {'x': jnp.ones((3,), jnp.bfloat16)}
    state = tx.init(params)
    with pytest.raises(ValueError, match='needs params'):
      tx.update(params, state)
    u, state = tx.update(params, state, params)
    assert u['x'].dtype == jnp.bfloat16
    assert state.mu['x'].dtype == jnp.float32 and state.nu['x'].dtype == jnp.float32


def _reference_sign_sgd(table, ids, grads, lr, wd):
  table = np.array(table, np.float32)
  summed = {}
  for i, g in zip(np.asarray(ids), np.asarray(grads, np.float64)):
    summed[int(i)] = summed.get(int(i), 0.0) + g
  for i, g in summed.items():
    table[i] = table[i] * np.float32(1 - lr * wd) - np.float32(lr) * np.sign(g)
  return table


class SparseSignSgdTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_duplicates_sum_before_sign_and_untouched_rows_identical(self):
    lr, wd = 0.01, 0.1
    table = jnp.asarray(np.random.default_rng(4).standard_normal((10, 4)), jnp.float32)
    ids = jnp.array([3, 7, 3, 1], jnp.int32)
    grads = jnp.array(
      [
        [2.0, -1.0, 0.5, 0.0],  # id 3: opposite signs, different sizes ...
        [0.2, 0.0, -0.3, 1.0],  # id 7
        [-1.0, 3.0, -0.5, 0.0],  # ... summing to [1, 2, 0, 0]: sign [1, 1, 0, 0]
        [0.0, 0.0, 0.0, 0.0],  # id 1: zero gradient, decay still applies
      ]
    )
    new = self.variant(optim.sparse_sign_sgd)(table, ids, grads, jnp.float32(lr), wd)
    decay = 1 - lr * wd
    np.testing.assert_allclose(new[3], table[3] * decay - lr * np.array([1, 1, 0, 0]), rtol=1e-6)
    np.testing.assert_allclose(new[1], table[1] * decay, rtol=1e-6)
    np.testing.assert_allclose(new, _reference_sign_sgd(table, ids, grads, lr, wd), rtol=1e-6)
    untouched = np.setdiff1d(np.arange(10), np.asarray(ids))
    np.testing.assert_array_equal(np.asarray(new)[untouched], np.asarray(table)[untouched])

  def test_gather_rows(self):
    table = jnp.arange(12.0).reshape(6, 2)
    chex.assert_trees_all_equal(
      optim.gather_rows(table, jnp.array([5, 0, 5])), table[jnp.array([5, 0, 5])]
    )

  def test_large_table_in_place_under_jit(self):
    num_rows, dim, batch = 100_000, 16, 256
    rng = np.random.default_rng(5)
    table = jnp.asarray(rng.standard_normal((num_rows, dim)), jnp.float32)
    expected_source = np.asarray(table).copy()
    ids = jnp.asarray(rng.integers(0, 50, batch), jnp.int32)  # many duplicates
    grads = jnp.asarray(rng.standard_normal((batch, dim)), jnp.float32)
    update = jax.jit(optim.sparse_sign_sgd, donate_argnums=0, static_argnums=4)
    compiled = update.lower(table, ids, grads, jnp.float32(1e-2), 0.1).compile()
    # Nothing of size V besides the (donated) table: temporaries stay O(B·D).
    memory = compiled.memory_analysis()
    assert memory is not None  # the CPU backend reports it
    assert memory.temp_size_in_bytes < num_rows * dim * 4 // 10
    assert memory.alias_size_in_bytes >= num_rows * dim * 4  # output aliases the table
    new = update(table, ids, grads, jnp.float32(1e-2), 0.1)
    assert table.is_deleted()  # the buffer was donated
    np.testing.assert_allclose(
      new, _reference_sign_sgd(expected_source, ids, grads, 1e-2, 0.1), rtol=1e-6
    )
