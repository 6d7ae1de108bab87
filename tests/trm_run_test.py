"""A tiny TRM trains end to end through the shared loop; evaluation uses its EMA weights."""

import os

import jax
import numpy as np
import pytest

from hrm_jax import checkpoint, evaluate, sharding, tasks, train
from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.data import format as data_format
from tests import helpers


@pytest.fixture(scope='module')
def trm_run(tmp_path_factory):
  """(cfg, workdir, final eval metrics) of the tiny TRM, trained once for this module."""
  workdir = str(tmp_path_factory.mktemp('trm_run'))
  cfg = helpers.tiny_trm_config()
  return cfg, workdir, train.train_and_evaluate(cfg, workdir)


def test_trm_loss_falls_and_halts_by_q_halt_only(trm_run):
  cfg, workdir, _ = trm_run
  logs = helpers.records(workdir, 'train')
  assert logs[-1]['lm_loss'] < 0.9 * logs[0]['lm_loss'], logs
  assert all(r['q_continue_loss'] == 0 for r in logs)  # TRM trains the halt BCE only
  meta = helpers.records(workdir, 'meta')[0]
  # One shared 2-layer network at hidden 32: 2 blocks + embeddings and heads (vocab 11).
  assert meta['num_params'] == 2 * (32 * 96 + 32 * 32 + 32 * 512 + 256 * 32) + 2 * 11 * 32 + 66


def test_eval_and_checkpoint_use_the_ema_weights(trm_run):
  cfg, workdir, metrics = trm_run
  rcfg = config_lib.resolve(cfg, 1.0)
  mngr = checkpoint.manager(workdir, read_only=True)
  with open(os.path.join(workdir, 'train_metadata.json')) as f:
    meta = data_format.Metadata.from_json(f.read())
  graphdef, state = ts.init_state(rcfg, meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers)
  carry = ts.init_carry(graphdef, state, cfg.train.global_batch_size, meta.seq_len)
  _, restored, _ = checkpoint.restore(mngr, {'state': state, 'carry': carry})
  state = restored['state']
  assert state.ema_params is not None
  # After 40 steps at rate 0.9 the average differs from the raw weights.
  assert not np.allclose(
    jax.tree.leaves(state.ema_params)[0], jax.tree.leaves(state.params)[0], atol=1e-6
  )
  mesh = sharding.Mesh()
  eval_fn = evaluate.make_eval_fn(rcfg, graphdef, mesh)
  data_dir = tasks.prepare_data(cfg, workdir)
  test_split = data_format.load_split(data_dir, 'test')

  def eval_with(params):  # the given weights, with nothing else to pick from
    return evaluate.run_eval(
      rcfg, eval_fn, state.replace(params=params, ema_params=None), test_split, mesh
    )

  with_ema = eval_with(state.ema_params)
  np.testing.assert_allclose(with_ema['lm_loss'], metrics['lm_loss'], rtol=1e-5)
  assert eval_with(state.params)['lm_loss'] != pytest.approx(metrics['lm_loss'], rel=1e-5)
  # run_eval on the whole state picks the average by itself.
  picked = evaluate.run_eval(rcfg, eval_fn, state, test_split, mesh)
  np.testing.assert_allclose(picked['lm_loss'], metrics['lm_loss'], rtol=1e-5)
  again = evaluate.evaluate_checkpoint(cfg, workdir)  # --mode=eval reads the same weights
  np.testing.assert_allclose(again['lm_loss'], metrics['lm_loss'], rtol=1e-5)
