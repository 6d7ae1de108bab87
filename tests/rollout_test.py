"""The stepwise rollout: the same states as `model.segment`, the shapes it promises, a restore."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.analysis import measures, rollout
from hrm_jax.data import format as data_format
from tests import helpers

B, M, VOCAB, SEQ = 2, 2, 11, 81


def _fresh(preset='cpu', **model):
  """A fresh tiny model as `rollout.Loaded` (no checkpoint): hidden 32, N = T = 2."""
  cfg = helpers.tiny_config(preset)
  cfg.model.update(model)
  cfg = config_lib.resolve(cfg, 1.0)
  meta = data_format.Metadata(
    pad_id=0,
    ignore_label_id=0,
    blank_identifier_id=0,
    vocab_size=VOCAB,
    seq_len=SEQ,
    num_puzzle_identifiers=3,
    total_groups=1,
    mean_puzzle_examples=1.0,
    sets=['all'],
  )
  graphdef, state = ts.init_state(cfg, VOCAB, SEQ, 3)
  # Non-zero puzzle rows, so that the prefix slot is exercised too.
  state = state.replace(puzzle_emb=jax.random.normal(jax.random.key(1), state.puzzle_emb.shape))
  return rollout.Loaded(cfg, graphdef, state, meta, 0, '')


def _batch():
  rng = np.random.default_rng(0)
  return dict(
    inputs=rng.integers(1, VOCAB, (B, SEQ)).astype(np.int32),
    labels=rng.integers(2, VOCAB, (B, SEQ)).astype(np.int32),
    puzzle_identifiers=np.array([1, 2], np.int32),
  )


def _segments(graphdef, params, buffers, x, M):
  """z_H, z_L [M, B, S, D] after each of M `model.segment` calls, as eval_step scans them."""

  def run(params, buffers, x):
    model = nnx.merge(graphdef, params, buffers)
    _, zs = jax.lax.scan(
      lambda s, _: (model.segment(*s, x),) * 2, model.initial_state(x.shape[0]), None, length=M
    )
    return zs

  return jax.jit(run)(params, buffers, x)


ARCHS = {
  'hrm': dict(preset='cpu'),
  'trm': dict(preset='trm_att_cpu'),
  'trm_single_z': dict(preset='trm_cpu', arch='trm_single_z'),
  'transformer': dict(preset='cpu', arch='transformer', H_layers=1),
}


@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_stepwise_states_equal_segment(arch):
  loaded = _fresh(**ARCHS[arch])
  batch = _batch()
  traj = rollout.rollout(loaded, batch, M, keep='steps')
  K = 1 if arch == 'transformer' else 6  # N·(T + 1) with N = T = 2
  S, D = SEQ + 1, 32  # one puzzle-prefix slot at hidden 32
  chex.assert_shape([traj.z_H, traj.z_L], (M, K, B, S, D))
  chex.assert_shape([traj.res_H, traj.res_L], (M, K, B))
  chex.assert_shape(traj.preds, (M, B, SEQ))
  chex.assert_shape([traj.q_halt, traj.q_continue], (M, B))
  assert traj.step_kind.tolist() == ([1] if K == 1 else [0, 0, 1, 0, 0, 1])

  model = loaded.model()
  s = loaded.state
  x = model.embed(jnp.asarray(batch['inputs']), s.puzzle_emb[batch['puzzle_identifiers']])
  z_H, z_L = _segments(loaded.graphdef, s.params, s.buffers, x, M)
  # One schedule (`model.segment`) in two programs: equal up to summation order.
  tol = helpers.state_tol(model.cfg, S, helpers.segment_evals(model.cfg, M))
  assert max(np.abs(traj.z_H).max(), np.abs(traj.z_L).max()) <= np.sqrt(D) * (1 + 1e-6)
  chex.assert_trees_all_close((traj.z_H[:, -1], traj.z_L[:, -1]), (z_H, z_L), atol=tol, rtol=0)
  logits, q_halt, q_continue = model.heads(z_H[-1])
  delta = helpers.logit_tol(s.params, tol)
  # The argmax may differ only where the two best logits are within 2·delta of each other.
  top2 = np.sort(np.asarray(logits), -1)[..., -2:]
  clear = (top2[..., 1] - top2[..., 0]) > 2 * delta
  np.testing.assert_array_equal(traj.preds[-1][clear], np.argmax(logits, -1)[clear])
  np.testing.assert_allclose(traj.q_halt[-1], q_halt, atol=delta, rtol=0)
  np.testing.assert_allclose(traj.q_continue[-1], q_continue, atol=delta, rtol=0)


def test_residuals_are_step_differences_and_baseline_freezes_z_H():
  loaded = _fresh('cpu')
  batch = _batch()
  traj = rollout.rollout(loaded, batch, M, keep='steps')
  z_H = traj.z_H.reshape(M * 6, B, -1)
  z_L = traj.z_L.reshape(M * 6, B, -1)
  np.testing.assert_allclose(
    traj.res_L.reshape(M * 6, B)[1:], np.linalg.norm(np.diff(z_L, axis=0), axis=-1), rtol=1e-4
  )
  np.testing.assert_allclose(
    traj.res_H.reshape(M * 6, B)[1:], np.linalg.norm(np.diff(z_H, axis=0), axis=-1), atol=1e-4
  )
  low = traj.step_kind == rollout.LOW
  assert (traj.res_H[:, low] == 0).all() and (traj.res_L[:, ~low] == 0).all()
  assert (traj.res_L[:, low] > 0).all() and (traj.res_H[:, ~low] > 0).all()

  base = rollout.rollout(loaded, batch, M, keep='none', baseline=True)
  assert base.z_H is None and (base.step_kind == rollout.LOW).all()
  assert (base.res_H == 0).all() and (base.res_L > 0).all()
  # Its first T steps are the model's first T steps (same f_L, same injection z_H⁰ + x), in
  # another program (the 'full' schedule): equal up to summation order, helpers.state_tol per
  # entry after T = 2 evaluations, so at most sqrt(S·D) times that in a residual's norm.
  m = loaded.model()
  tol = np.sqrt(m.total_len * m.cfg.hidden_size) * helpers.state_tol(m.cfg, m.total_len, 2)
  np.testing.assert_allclose(base.res_L[0, :2], traj.res_L[0, :2], atol=2 * tol, rtol=0)


def test_load_restores_the_eval_weights(tiny_run):
  cfg, workdir, _ = tiny_run
  loaded = rollout.load(workdir, cfg)
  assert loaded.step == cfg.train.steps
  fresh = rollout.random_init(loaded)
  assert fresh.step == 0
  chex.assert_trees_all_equal_shapes(loaded.state.params, fresh.state.params)
  assert not np.allclose(
    jax.tree.leaves(loaded.state.params)[0], jax.tree.leaves(fresh.state.params)[0]
  )
  batches = list(rollout.eval_batches(loaded, num_examples=20, batch_size=16))
  assert [len(b['inputs']) for b in batches] == [16, 16]
  assert [measures.valid_rows(b).sum() for b in batches] == [16, 4]
  assert (batches[1]['inputs'][4:] == 0).all()
  batch = next(rollout.eval_batches(loaded, num_examples=4))
  chex.assert_shape(batch['inputs'], (4, 81))
  traj = rollout.rollout(loaded, batch, keep='segments')
  chex.assert_shape(traj.z_H, (cfg.act.halt_max_steps, 4, 82, 32))
  chex.assert_tree_all_finite((traj.z_H, traj.z_L, traj.q_halt))
