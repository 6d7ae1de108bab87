"""ACT carry semantics and halting (spec §3.1)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from hrm_jax.models import act


def _carry(B=4, halted=(True, False, True, False)):
  c = act.empty_carry(B, (3, 2), 5, jnp.float32)
  return c.replace(
    z_H=jnp.full((B, 3, 2), 7.0),
    z_L=jnp.full((B, 3, 2), 8.0),
    steps=jnp.array([3, 2, 16, 1]),
    halted=jnp.array(halted),
    inputs=jnp.full((B, 5), 1),
    labels=jnp.full((B, 5), 1),
    puzzle_identifiers=jnp.full((B,), 9),
  )


def test_empty_carry_is_all_halted():
  c = act.empty_carry(3, (4, 2), 5, jnp.bfloat16)
  assert bool(jnp.all(c.halted))
  chex.assert_shape((c.z_H, c.z_L), (3, 4, 2))
  chex.assert_shape((c.inputs, c.labels), (3, 5))


# halt_decision's configuration arguments are static under jit, as in the train step.
STATIC = ('M_max', 'exploration_prob', 'halt_rule', 'training')


class ActVariantsTest(chex.TestCase):
  """The carry reset and the halting rules give the same answers jitted and not."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_reset_replaces_halted_rows_and_keeps_others(self):
    c = _carry()
    batch = dict(
      inputs=jnp.full((4, 5), 2), labels=jnp.full((4, 5), 3), puzzle_identifiers=jnp.arange(4)
    )
    z_H0, z_L0 = jnp.zeros((4, 3, 2)), -jnp.ones((4, 3, 2))
    r = self.variant(act.reset_halted)(c, batch, z_H0, z_L0)
    h = np.array([True, False, True, False])
    np.testing.assert_array_equal(r.steps, np.where(h, 0, [3, 2, 16, 1]))
    np.testing.assert_array_equal(r.inputs[:, 0], np.where(h, 2, 1))
    np.testing.assert_array_equal(r.labels[:, 0], np.where(h, 3, 1))
    np.testing.assert_array_equal(r.puzzle_identifiers, np.where(h, np.arange(4), 9))
    np.testing.assert_array_equal(r.z_H[:, 0, 0], np.where(h, 0.0, 7.0))
    np.testing.assert_array_equal(r.z_L[:, 0, 0], np.where(h, -1.0, 8.0))

  @chex.variants(with_jit=True, without_jit=True)
  def test_eval_halts_only_at_M_max(self):
    decide = self.variant(act.halt_decision, static_argnames=STATIC)
    steps = jnp.arange(1, 18)
    big = jnp.full((17,), 10.0)
    halted = decide(
      steps, big, -big, M_max=16, key=jax.random.key(0), exploration_prob=1.0, training=False
    )
    np.testing.assert_array_equal(halted, np.arange(1, 18) >= 16)

  @chex.variants(with_jit=True, without_jit=True)
  def test_training_halting_rules(self):
    decide = self.variant(act.halt_decision, static_argnames=STATIC)
    steps = jnp.full((6,), 3)
    q_halt = jnp.array([1.0, -1.0, 0.5, -0.5, 2.0, -2.0])
    q_cont = jnp.array([0.0, 0.0, 1.0, -1.0, 3.0, -3.0])
    kw = dict(M_max=16, key=jax.random.key(0), exploration_prob=0.0)
    np.testing.assert_array_equal(
      decide(steps, q_halt, q_cont, halt_rule='q_continue', **kw), q_halt > q_cont
    )
    np.testing.assert_array_equal(decide(steps, q_halt, q_cont, halt_rule='zero', **kw), q_halt > 0)
    # Always halt at M_max, whatever Q says; M_max = 1 halts every row.
    np.testing.assert_array_equal(
      decide(jnp.full((6,), 16), -q_halt.__abs__(), q_halt.__abs__(), **kw), True
    )
    np.testing.assert_array_equal(
      decide(
        jnp.ones(6, int), -jnp.ones(6), jnp.ones(6), M_max=1, key=kw['key'], exploration_prob=0.5
      ),
      True,
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_q_continue_target(self):
    t = self.variant(act.q_continue_target)(
      jnp.array([1.0, 1.0]), jnp.array([3.0, 3.0]), jnp.array([False, True])
    )
    chex.assert_trees_all_close(t, jax.nn.sigmoid(jnp.array([3.0, 1.0])))


def test_exploration_min_steps_bounds_and_rate():
  """With ε, a row that wants to halt is held until min_steps ~ U{2..M_max}, per row."""
  B, M = 20000, 8
  want_halt = jnp.full((B,), 5.0)
  keep = jnp.full((B,), -5.0)
  key = jax.random.key(1)
  halted_at = {}
  for s in range(1, M + 1):
    h = np.asarray(
      act.halt_decision(jnp.full((B,), s), want_halt, keep, M_max=M, key=key, exploration_prob=0.1)
    )
    halted_at[s] = h.mean()
  # Step 1: only non-exploring rows halt (min_steps = 0): ≈ 1 - ε.
  assert abs(halted_at[1] - 0.9) < 0.01
  # Exploring rows: min_steps uniform on {2..8} → at step s a fraction (s-1)/7 of them halt.
  for s in range(2, M + 1):
    assert abs(halted_at[s] - (0.9 + 0.1 * (s - 1) / (M - 1))) < 0.01, (s, halted_at[s])
  assert halted_at[M] == 1.0
