"""Every Sudoku preset builds and runs one train step; EMA follows its update rule.

The presets are shrunk to test size (config.shrink keeps arch, gradient schedule, mixer,
cycles, halting and EMA); `--runslow` also runs each at its real size with a batch of 2.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.tools import bench
from tests import helpers

PRESETS = helpers.preset_names('experiments/sudoku.py')
FAST_COMPILE = dict(xla_backend_optimization_level=0, xla_llvm_disable_expensive_passes=True)


def _one_step(cfg):
  """Runs one jitted train step of `cfg` on a random batch; returns (state0, state1, metrics)."""
  config_lib.validate(cfg)
  cfg = config_lib.resolve(cfg, 1.0)
  B = cfg.train.global_batch_size
  graphdef, state0 = ts.init_state(cfg, 11, 81, 5)
  carry = ts.init_carry(graphdef, state0, B, 81)
  batch = bench.random_batch(np.random.default_rng(0), B, 11, 81, 5)
  # Compiling is most of this test's time; it checks what the step computes, not its speed, so
  # XLA's backend optimizations are off (this module: 113 s against 140 s, docs/testing.md).
  step = ts.jit_train_step(graphdef, cfg).lower(state0, carry, batch).compile(FAST_COMPILE)
  state1, carry, metrics = step(state0, carry, batch)
  return state0, state1, jax.device_get(metrics)


def _check_step(cfg, state0, state1, metrics):
  assert int(state1.step) == 1
  assert np.isfinite(metrics['lm_loss']) and metrics['lm_loss'] > 0
  if cfg.act.q_continue_loss:
    assert metrics['q_continue_loss'] > 0
  else:
    assert metrics['q_continue_loss'] == 0
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state0.params, state1.params)
  assert all(jax.tree.leaves(moved))  # every trainable tensor got an update
  if cfg.ema.enabled:
    # EMA over the trainable weights only (§4.5): shadow = rate·init + (1 − rate)·new.
    r = cfg.ema.rate
    want = jax.tree.map(lambda e, p: r * e + (1 - r) * p, state0.params, state1.params)
    chex.assert_trees_all_close(state1.ema_params, want, rtol=1e-6, atol=1e-7)
    assert ts.eval_params(state1) is state1.ema_params
  else:
    assert state1.ema_params is None and ts.eval_params(state1) is state1.params


@pytest.mark.parametrize('preset', PRESETS)
def test_preset_runs_one_train_step(preset):
  cfg = config_lib.shrink(helpers.load_config('experiments/sudoku.py', preset))
  _check_step(cfg, *_one_step(cfg))


@pytest.mark.slow
@pytest.mark.parametrize('preset', PRESETS)
def test_preset_runs_one_train_step_at_full_size(preset):
  cfg = helpers.load_config('experiments/sudoku.py', preset)
  cfg.train.update(global_batch_size=2, steps=1)
  cfg.opt.lr_warmup_steps = 1
  _check_step(cfg, *_one_step(cfg))


def test_direct_baseline_gets_no_q_continue_loss():
  # TRM's transformers_baseline.py halts on q_halt > q_continue but never computes the continue
  # target: that column of the Q head gets zero gradient, so Adam-atan2 (atan2(0, 0) = 0) moves
  # it by the decoupled weight decay alone.
  cfg = config_lib.shrink(helpers.load_config('experiments/sudoku.py', 'direct'))
  assert cfg.act.halt_rule == 'q_continue' and not cfg.act.q_continue_loss
  assert config_lib.TRM_ABLATIONS['direct']['act.q_continue_loss'] is False
  state0, state1, metrics = _one_step(cfg)
  assert metrics['q_continue_loss'] == 0
  lr = float(ts.schedules(config_lib.resolve(cfg, 1.0))[0](1))
  decay = 1 - lr * cfg.opt.weight_decay
  q0, q1 = state0.params['q_head'], state1.params['q_head']
  np.testing.assert_array_equal(np.asarray(q1['kernel'][...][:, 1]), 0.0)
  np.testing.assert_allclose(float(q1['bias'][...][1]), -5.0 * decay, rtol=1e-6)
  assert np.any(np.asarray(q1['kernel'][...][:, 0]) != np.asarray(q0['kernel'][...][:, 0]))
