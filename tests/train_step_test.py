"""The jitted train step: its contract, and a golden record of one step of a tiny model."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from tests import helpers


@pytest.fixture(scope='module')
def setup():
  """(cfg, state, carry, jitted step without donation, batch): one compilation per module."""
  cfg = helpers.tiny_config()
  cfg.train.global_batch_size = 4
  cfg = config_lib.resolve(cfg, 1.0)
  graphdef, state = ts.init_state(cfg, 11, 81, 3)
  carry = ts.init_carry(graphdef, state, 4, 81)
  step = ts.jit_train_step(graphdef, cfg)
  rng = np.random.default_rng(0)
  batch = dict(
    inputs=jnp.asarray(rng.integers(1, 11, (4, 81)), jnp.int32),
    labels=jnp.asarray(rng.integers(2, 11, (4, 81)), jnp.int32),
    puzzle_identifiers=jnp.array([0, 2, 2, 0], jnp.int32),
  )
  return cfg, state, carry, step, batch


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
  if memory is not None:  # the CPU backend reports it; nothing of the table's size is temporary
    assert memory.temp_size_in_bytes < table_bytes // 4
    assert memory.alias_size_in_bytes >= table_bytes
  before = np.asarray(state.puzzle_emb).copy()
  new_state, _, _ = step(state, carry, batch)
  assert state.puzzle_emb.is_deleted()  # donated: the update reused its buffer
  after = np.asarray(new_state.puzzle_emb)
  touched = np.array([7, 123_456, 999_999])
  changed = np.flatnonzero((after != before).any(axis=1))
  np.testing.assert_array_equal(changed, touched)
