"""hrm_jax's side of the training-trajectory comparison (`tools.torch_parity --train_steps`) and
the Adam-atan2 transcription that stands in for the reference's CUDA kernel.

The comparison itself needs a checkout of the reference code and is run as a tool (README); here
the jax rollout, the exploration hook and the error measures are checked without it.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrm_jax import config as config_lib
from hrm_jax import optim
from hrm_jax import train_step as ts
from hrm_jax.models import act
from hrm_jax.tools import torch_parity as tp
from tests import helpers


@pytest.fixture(scope='module')
def tiny():
  cfg = config_lib.resolve(helpers.tiny_config(), 1.0)
  graphdef, state = ts.init_state(cfg, 11, 81, 6)
  batches = tp.random_batches(np.random.default_rng(0), 3, 4, 11, 81, 6)
  return cfg, graphdef, state, batches


def test_random_batches_repeat_ids_and_ignore_some_labels():
  batches = tp.random_batches(np.random.default_rng(0), 2, 64, 11, 81, 64)
  b = batches[0]
  chex.assert_shape((b['inputs'], b['labels'], b['puzzle_identifiers']), ((64, 81),) * 2 + ((64,),))
  assert len(np.unique(b['puzzle_identifiers'])) < 64  # duplicates reach the sparse optimizer
  assert 0.05 < np.mean(b['labels'] == -100) < 0.25 and b['labels'].max() < 11
  assert not np.array_equal(batches[0]['inputs'], batches[1]['inputs'])


def test_jax_rollout_is_the_train_step_with_its_carry(tiny):
  cfg, graphdef, state, batches = tiny
  records, final = tp.jax_train_rollout(cfg, graphdef, state, batches)
  step = ts.jit_train_step(graphdef, cfg)
  s, carry = state, ts.init_carry(graphdef, state, 4, 81)
  for batch, rec in zip(batches, records):
    model = ts.nnx.merge(graphdef, s.params, s.buffers)
    s, carry, m = step(s, carry, batch)
    np.testing.assert_array_equal(rec['halted'], carry.halted)
    # The step's loss as the reference's loss head sums it: lm + 0.5·(halt + continue).
    want = m['lm_loss'] + 0.5 * (m['q_halt_loss'] + m['q_continue_loss'])
    np.testing.assert_allclose(rec['loss'], want, rtol=1e-6)
    # q_halt of the step's own forward: the heads of the carried z_H, weights before the update.
    np.testing.assert_array_equal(rec['q_halt'], model.heads(carry.z_H)[1])
  chex.assert_trees_all_equal(jax.device_get(final.params), jax.device_get(s.params))


def test_reference_draws_replace_the_exploration_minimum(tiny):
  cfg, graphdef, state, batches = tiny
  cfg = config_lib.apply(
    config_lib.resolve(cfg, 1.0), {'act.halt_rule': 'zero', 'act.halt_exploration_prob': 1.0}
  )
  # A Q head that says "halt" at once: q_halt = +5 > 0 for every row.
  params = jax.tree.map(lambda x: x, state.params)
  params['q_head']['bias'] = jnp.array([5.0, -5.0])
  state = state.replace(params=params)
  drawn, _ = tp.jax_train_rollout(cfg, graphdef, state, batches[:1])
  assert not drawn[0]['halted'].any()  # ε = 1: every row must run 2..M_max segments first
  fed, _ = tp.jax_train_rollout(cfg, graphdef, state, batches[:1], [np.zeros(4, np.int32)])
  assert fed[0]['halted'].all()  # the fed minimum (0 everywhere) replaces the draw
  steps = jnp.ones(4, jnp.int32)
  q = jnp.full(4, 5.0)
  kw = dict(M_max=4, key=jax.random.key(0), exploration_prob=0.0, halt_rule='zero')
  got = act.halt_decision(steps, q, -q, min_steps_B=jnp.array([0, 1, 2, 4]), **kw)
  np.testing.assert_array_equal(got, [True, True, False, False])


def test_error_measures():
  rec = lambda loss, q, h: dict(loss=loss, q_halt=np.array(q), halted=np.array(h))  # noqa: E731
  ref = [rec(2.0, [0.0, 1.0], [False, True]), rec(4.0, [1.0, 1.0], [True, True])]
  ours = [rec(2.002, [0.0, 1.5], [False, True]), rec(4.0, [1.0, 1.0], [True, False])]
  summary, table = tp.compare_trajectories(ref, ours)
  assert summary['train_loss_max_rel_err'] == pytest.approx(1e-3)
  assert summary['steps_within_tol'] == 0  # 1e-3 > the default tol 1e-4 at step 1
  assert tp.compare_trajectories(ref, ours, tol=2e-3)[0]['steps_within_tol'] == 2
  assert summary['q_halt_max_abs_err'] == 0.5
  assert summary['halt_decision_mismatches'] == 1 and summary['first_mismatch_step'] == 2
  assert [row[5] for row in table] == [0, 1]
  want = {'a': np.array([1.0, -4.0]), 'b': np.zeros(3)}
  got = {'a': np.array([1.0, -3.0]), 'b': np.zeros(3)}
  assert tp.compare_weights(want, got) == 0.25
  with pytest.raises(tp.ParityError, match='tensor names differ'):
    tp.compare_weights(want, {'a': got['a']})


def test_adam_atan2_transcription_follows_the_kernel():
  """The PyTorch transcription of the fused kernel (tools.torch_reference.AdamATan2) against
  the kernel's formula in float64 and against hrm_jax's optax transformation."""
  torch = pytest.importorskip('torch')
  from hrm_jax.tools import torch_reference

  rng = np.random.default_rng(0)
  p0 = rng.standard_normal((5, 7)).astype(np.float32)
  grads = [rng.standard_normal((5, 7)).astype(np.float32) * s for s in (1.0, 1e-3, 0.0, 10.0)]
  grads[2][0, :3] = 0.0  # zero gradients on zero moments: atan2(0, 0) = 0, decay only
  lrs, (b1, b2), wd = [1e-3, 2e-3, 5e-4, 1e-3], (0.9, 0.95), 0.1

  p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
  opt = torch_reference.AdamATan2([p], lr=0.0, betas=(b1, b2), weight_decay=wd)
  want, m, v = p0.astype(np.float64), np.zeros_like(p0, np.float64), np.zeros_like(p0, np.float64)
  sched = lambda t: lrs[int(t) - 1]  # noqa: E731  the lr of 1-based step t
  jax_opt = optim.adam_atan2(sched, b1, b2, wd)
  jp, js = jnp.asarray(p0), jax_opt.init(jnp.asarray(p0))
  for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
    p.grad = torch.from_numpy(g)
    for group in opt.param_groups:
      group['lr'] = lr
    opt.step()
    want = want * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
    want = want - lr / (1 - b1**t) * np.arctan2(m, np.sqrt(v) / np.sqrt(1 - b2**t))
    u, js = jax_opt.update(jnp.asarray(g), js, jp)
    jp = jp + u
    # Each fp32 step rounds p three times (decay, product, difference; the step's own rounding
    # is ~lr·u, far below): at most 3·t·u·max|p| from the exact sequence.
    tol = 3 * t * 2.0**-24 * float(np.abs(want).max())
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=0, atol=tol)
    np.testing.assert_allclose(np.asarray(jp), p.detach().numpy(), rtol=0, atol=2 * tol)
