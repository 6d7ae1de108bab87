"""The jitted train step: its contract, a golden record of one step of a tiny model (jitted and
not), one trace over steps, and the memory of the 1-step gradient."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.models import model as model_lib
from hrm_jax.tools import bench
from tests import helpers


@functools.cache
def _setup():
  """(cfg, graphdef, state, carry, batch) of the tiny config at batch 4: built once."""
  cfg = helpers.tiny_config()
  cfg.train.global_batch_size = 4
  cfg = config_lib.resolve(cfg, 1.0)
  graphdef, state = ts.init_state(cfg, 11, 81, 3)
  carry = ts.init_carry(graphdef, state, 4, 81)
  rng = np.random.default_rng(0)
  batch = dict(
    inputs=jnp.asarray(rng.integers(1, 11, (4, 81)), jnp.int32),
    labels=jnp.asarray(rng.integers(2, 11, (4, 81)), jnp.int32),
    puzzle_identifiers=jnp.array([0, 2, 2, 0], jnp.int32),
  )
  return cfg, graphdef, state, carry, batch


@functools.cache
def _jitted_step():
  """`ts.jit_train_step` of `_setup` without donation: one compilation per module."""
  cfg, graphdef = _setup()[:2]
  return ts.jit_train_step(graphdef, cfg)


@pytest.fixture(scope='module')
def setup():
  """(cfg, state, carry, jitted step without donation, batch)."""
  cfg, _, state, carry, batch = _setup()
  return cfg, state, carry, _jitted_step(), batch


def test_one_step_contract_and_golden_metrics(setup):
  cfg, state, carry, step, batch = setup
  new_state, new_carry, m = step(state, carry, batch)
  assert int(new_state.step) == 1
  chex.assert_trees_all_equal_shapes(new_state.params, state.params)
  chex.assert_tree_all_finite((new_state.params, m))
  # Buffers are never trained; the puzzle table changes only in the rows of the batch.
  chex.assert_trees_all_equal(new_state.buffers, state.buffers)
  table = np.asarray(new_state.puzzle_emb)
  assert np.all(table[1] == 0) and np.any(table[0] != 0) and np.any(table[2] != 0)
  # All rows were fresh and ran one segment; none halted: M_max = 4, both Q logits start at -5
  # (q_halt > q_continue is false) and exploration can only delay halting.
  np.testing.assert_array_equal(new_carry.steps, 1)
  assert not bool(jnp.any(new_carry.halted))
  np.testing.assert_array_equal(new_carry.inputs, batch['inputs'])
  # Golden values of the first step (tiny config, seed 0). They change only when the model,
  # init, loss or optimizer change on purpose: then re-derive them from this test's output and
  # say why in the commit message.
  got = {k: float(m[k]) for k in ('lm_loss', 'q_halt_loss', 'q_continue_loss', 'lr')}
  want = GOLDEN
  for k, v in want.items():
    np.testing.assert_allclose(got[k], v, rtol=2e-4, err_msg=k)


def test_second_step_keeps_unhalted_rows(setup):
  cfg, state, carry, step, batch = setup
  state, carry, _ = step(state, carry, batch)
  other = {k: v + 1 if k != 'puzzle_identifiers' else v for k, v in batch.items()}
  _, carry2, _ = step(state, carry, other)
  np.testing.assert_array_equal(carry2.steps, 2)
  np.testing.assert_array_equal(carry2.inputs, batch['inputs'])  # new rows dropped (§3.1)


GOLDEN = {'lm_loss': 10.542057, 'q_halt_loss': 0.0268614, 'q_continue_loss': 0.1607184, 'lr': 6e-4}


class TrainStepVariantsTest(chex.TestCase):
  """The train step gives the golden first step jitted and not jitted."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_first_step_jitted_and_not(self):
    cfg, graphdef, state, carry, batch = _setup()
    step = self.variant(
      functools.partial(ts.train_step, graphdef=graphdef, cfg=ml_collections.FrozenConfigDict(cfg))
    )
    new_state, new_carry, m = step(state, carry, batch)
    for k, v in GOLDEN.items():
      np.testing.assert_allclose(float(m[k]), v, rtol=2e-4, err_msg=k)
    # ... and the same step as the training loop's jitted one, up to summation order: states
    # within helpers.state_tol of one segment (two with the Q-target segment, which only
    # q_continue_loss reads), losses within 2·delta per row (helpers.assert_eval_close).
    ref_state, ref_carry, ref_m = _jitted_step()(state, carry, batch)
    model_cfg = model_lib.ModelConfig.from_config(cfg.model)
    S = 81 + model_lib.puzzle_prefix_len(model_cfg)
    z_tol = helpers.state_tol(model_cfg, S, helpers.segment_evals(model_cfg, 2))
    chex.assert_trees_all_close(
      (new_carry.z_H, new_carry.z_L), (ref_carry.z_H, ref_carry.z_L), atol=z_tol, rtol=0
    )
    for k in ('steps', 'halted', 'inputs', 'labels', 'puzzle_identifiers'):
      np.testing.assert_array_equal(getattr(new_carry, k), getattr(ref_carry, k), err_msg=k)
    delta = helpers.logit_tol(state.params, z_tol)
    B = batch['inputs'].shape[0]
    for k in ('lm_loss', 'q_halt_loss', 'q_continue_loss'):
      np.testing.assert_allclose(m[k], ref_m[k], atol=2 * delta * B, rtol=1e-6, err_msg=k)
    assert int(new_state.step) == int(ref_state.step) == 1


def test_train_step_traces_once_over_steps():
  """Three steps, each fed the previous step's state and carry: one trace (no retracing from a
  dtype, weak type or shape that changes between steps)."""
  cfg, graphdef, state, carry, batch = _setup()
  counted = chex.assert_max_traces(ts.train_step, n=1)
  step = jax.jit(
    functools.partial(counted, graphdef=graphdef, cfg=ml_collections.FrozenConfigDict(cfg))
  )
  for t in range(3):
    shifted = dict(batch, inputs=(batch['inputs'] + t) % 10 + 1)
    state, carry, m = step(state, carry, shifted)  # a second trace raises AssertionError
  assert int(state.step) == 3
  chex.assert_tree_all_finite(m)


def _temp_mb(gradient: str, N: int, T: int) -> float:
  """Temporary memory (MiB, XLA's memory analysis) of the compiled train step of the tiny HRM
  (hidden 32, one layer per module, batch 2) with N = H_cycles, T = L_cycles. Compiled, not run."""
  cfg = config_lib.shrink(helpers.load_config('experiments/sudoku.py', 'cpu'), batch_size=2)
  cfg.model.update(gradient=gradient, H_cycles=N, L_cycles=T)
  return bench.train_step_temp_mb(config_lib.resolve(cfg, 1.0), (11, 81, 1))


def test_one_step_gradient_memory_is_flat_in_cycles():
  """HRM's 1-step gradient (spec §2.2) keeps the train step's memory constant in N·T; backprop
  through all cycles stores every cycle's activations.

  N·T = 4 vs 64. One-step: the no-grad cycles run in a loop whose buffers are reused, so nothing
  grows with N·T (measured +0.7%, 2.81 -> 2.83 MiB); the bound, 10% + 0.25 MiB, leaves room for
  XLA laying out two different programs differently, while one more cycle's stored activations
  (~0.5 MiB here) would exceed it within a few cycles. Full gradient: measured 4.9 -> 36.6 MiB
  (7.4x); > 3x asserts growth with N·T, not a constant offset.
  """
  one = _temp_mb('one_step', 2, 2), _temp_mb('one_step', 8, 8)
  full = _temp_mb('full', 2, 2), _temp_mb('full', 8, 8)
  assert one[1] <= 1.1 * one[0] + 0.25, one
  assert full[1] > 3 * full[0], full


def test_arc_scale_puzzle_table_is_updated_in_place_on_touched_rows_only():
  # ARC has ~10^6 puzzle ids (spec §6.6): the step must scatter into the donated table, not copy
  # it, and only the batch's rows may change (sign-SGD, §5.2). 10^6 ids x 32 (128 MB) is large
  # against the tiny model's ~7 MB of temporaries, which do not grow with the table.
  cfg = helpers.tiny_config()
  cfg.train.global_batch_size = 4
  cfg = config_lib.resolve(cfg, 1.0)
  num_ids = 1_000_000
  graphdef, state = ts.init_state(cfg, 11, 81, num_ids)
  rng = np.random.default_rng(1)
  state = state.replace(
    puzzle_emb=jnp.asarray(rng.standard_normal(state.puzzle_emb.shape), jnp.float32)
  )
  carry = ts.init_carry(graphdef, state, 4, 81)
  batch = dict(
    inputs=jnp.asarray(rng.integers(1, 11, (4, 81)), jnp.int32),
    labels=jnp.asarray(rng.integers(2, 11, (4, 81)), jnp.int32),
    puzzle_identifiers=jnp.array([7, 123_456, 7, 999_999], jnp.int32),
  )
  step = ts.jit_train_step(graphdef, cfg, donate_argnums=(0, 1))
  table_bytes = num_ids * cfg.model.puzzle_emb_ndim * 4
  memory = step.lower(state, carry, batch).compile().memory_analysis()
  assert memory is not None  # the CPU backend reports it; nothing of the table's size is temporary
  assert memory.temp_size_in_bytes < table_bytes // 4
  assert memory.alias_size_in_bytes >= table_bytes
  before = np.asarray(state.puzzle_emb).copy()
  new_state, _, _ = step(state, carry, batch)
  assert state.puzzle_emb.is_deleted()  # donated: the update reused its buffer
  after = np.asarray(new_state.puzzle_emb)
  touched = np.array([7, 123_456, 999_999])
  changed = np.flatnonzero((after != before).any(axis=1))
  np.testing.assert_array_equal(changed, touched)
