"""Stablemax cross-entropy, the ACT loss and metric sums (spec §3.2-3.3)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrm_jax import losses


def _stablemax_np(x):
  x = np.asarray(x, np.float64)
  s = np.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
  return np.log(s / s.sum(-1, keepdims=True))


class StablemaxTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_float64_formula(self):
    x = 8.0 * jax.random.normal(jax.random.key(0), (4, 7, 11))
    got = self.variant(losses.stablemax_log_probs)(x)
    chex.assert_trees_all_close(np.asarray(got, np.float64), _stablemax_np(x), rtol=1e-5, atol=1e-6)


def test_token_losses_ignore_and_softmax():
  logits = jax.random.normal(jax.random.key(1), (2, 3, 5))
  labels = jnp.array([[1, -100, 4], [0, 2, -100]])
  for kind, logp in (
    ('stablemax', _stablemax_np(logits)),
    ('softmax', np.asarray(jax.nn.log_softmax(logits))),
  ):
    got = losses.token_losses(logits, labels, kind)
    want = np.where(
      np.asarray(labels) == -100,
      0.0,
      -np.take_along_axis(logp, np.maximum(np.asarray(labels), 0)[..., None], -1)[..., 0],
    )
    chex.assert_trees_all_close(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='loss.type'):
    losses.token_losses(logits, labels, 'hinge')


def test_act_loss_is_sum_of_per_sequence_means():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)
  labels = jnp.array([[1, 2, 3, -100], [-100] * 4, [0, 0, 5, 5]])
  # Row 0 correct everywhere it counts; row 2 not.
  logits = logits.at[0, jnp.arange(3), jnp.array([1, 2, 3])].set(50.0)
  q_halt, q_cont, target = (
    jnp.array([0.3, -1.0, 2.0]),
    jnp.array([0.1, 0.2, 0.3]),
    jnp.array([0.5, 0.9, 0.1]),
  )
  total, stats = losses.act_loss(logits, labels, q_halt, q_cont, target)
  tok = np.asarray(losses.token_losses(logits, labels, 'stablemax'))
  lm = tok[0].sum() / 3 + 0.0 + tok[2].sum() / 4
  correct = np.array([1.0, 1.0, 0.0])  # a row with no valid label counts as correct (§3.2)
  bce = lambda x, y: np.sum(np.logaddexp(0, x) - x * y)  # noqa: E731
  want = lm + 0.5 * (bce(np.asarray(q_halt), correct) + bce(np.asarray(q_cont), np.asarray(target)))
  np.testing.assert_allclose(float(total), want, rtol=1e-5)
  np.testing.assert_array_equal(stats['is_correct'], correct.astype(bool))
  total_no_cont, _ = losses.act_loss(logits, labels, q_halt, q_cont, None)
  np.testing.assert_allclose(
    float(total_no_cont), lm + 0.5 * bce(np.asarray(q_halt), correct), rtol=1e-5
  )


def test_metric_sums_count_only_halted_valid_rows():
  labels = jnp.array([[2, 3], [2, 3], [-100, -100], [4, 4]])
  inputs = jnp.array([[1, 3], [1, 1], [0, 0], [4, 4]])
  logits = jax.nn.one_hot(jnp.array([[2, 3], [2, 5], [0, 0], [4, 1]]), 6) * 10
  _, stats = losses.act_loss(logits, labels, jnp.zeros(4), jnp.zeros(4), None)
  halted = jnp.array([True, True, True, False])
  m = losses.metric_sums(
    stats, halted, jnp.array([2, 3, 4, 5]), jnp.array([1.0, -1.0, 1.0, 1.0]), inputs, labels
  )
  assert float(m['count']) == 2  # row 2 has no labels, row 3 not halted
  assert float(m['exact_accuracy']) == 1
  assert float(m['accuracy']) == 1.5
  assert float(m['steps']) == 5
  assert float(m['q_halt_accuracy']) == 2  # row 0: q≥0 & correct; row 1: q<0 & wrong
  # Blank cells (input ≠ label) of counted rows: row 0 col 0; row 1 cols 0, 1.
  assert float(m['blank_count']) == 3 and float(m['blank_correct']) == 2
  n = losses.normalize_metrics(m, loss_divisor=4)
  assert n['exact_accuracy'] == 0.5 and n['accuracy'] == 0.75
  assert n['blank_accuracy'] == pytest.approx(2 / 3)
  assert n['lm_loss'] == pytest.approx(float(m['lm_loss']) / 4)
