"""The HRM network: parameter counts, init, embeddings, heads, and its 1-step gradient."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.models import hrm, layers
from tests import helpers


def test_paper_sudoku_config_has_27_275_266_parameters():
  cfg = helpers.load_config('experiments/sudoku.py')
  model = nnx.eval_shape(lambda: hrm.HRM(cfg.model, 11, 81, rngs=nnx.Rngs(0)))
  _, params, buffers = nnx.split(model, nnx.Param, layers.Buffer)
  assert ts.count_params(nnx.to_pure_dict(params)) == 27_275_266
  # H_init / L_init are buffers, not trainable parameters (spec §1.1).
  assert set(nnx.to_pure_dict(buffers)) == {'H_init', 'L_init'}
  assert cfg.model.compute_dtype == 'bfloat16'


def _tiny_cfg(**model):
  cfg = config_lib.base_config()
  cfg.model.update(
    hidden_size=16,
    num_heads=2,
    H_layers=1,
    L_layers=1,
    puzzle_emb_ndim=16,
    compute_dtype='float32',
    **model,
  )
  return cfg


def test_init_of_heads_and_buffers():
  m = hrm.HRM(_tiny_cfg().model, 11, 9, rngs=nnx.Rngs(0))
  chex.assert_trees_all_equal(m.q_head.kernel[...], jnp.zeros((16, 2)))
  chex.assert_trees_all_equal(m.q_head.bias[...], jnp.full((2,), -5.0))
  assert m.lm_head.bias is None
  assert isinstance(m.H_init, layers.Buffer) and m.H_init[...].shape == (16,)
  assert float(jnp.max(jnp.abs(m.H_init[...]))) <= 2 / 0.8796 + 1e-6


def test_embed_prefix_scale_and_head_shapes():
  m = hrm.HRM(_tiny_cfg().model, 11, 9, rngs=nnx.Rngs(0))
  inputs = jnp.arange(18).reshape(2, 9) % 11
  rows = jax.random.normal(jax.random.key(1), (2, 16))
  x = m.embed(inputs, rows)
  chex.assert_shape(x, (2, 10, 16))
  chex.assert_trees_all_close(x[:, 0], 4.0 * rows, rtol=1e-6)  # sqrt(16) · puzzle row
  chex.assert_trees_all_close(x[:, 1:], 4.0 * m.embed_tokens.embedding[...][inputs], rtol=1e-6)
  logits, q_halt, q_cont = m.heads(jnp.ones((2, 10, 16)))
  chex.assert_shape(logits, (2, 9, 11))
  chex.assert_shape((q_halt, q_cont), (2,))
  chex.assert_trees_all_close(q_halt, jnp.full((2,), -5.0))


def test_prefix_length_rule():
  assert (
    hrm.puzzle_prefix_len(
      ml_collections.ConfigDict(dict(puzzle_emb_ndim=512, hidden_size=512, puzzle_emb_len=0))
    )
    == 1
  )
  assert (
    hrm.puzzle_prefix_len(
      ml_collections.ConfigDict(dict(puzzle_emb_ndim=512, hidden_size=512, puzzle_emb_len=16))
    )
    == 16
  )
  assert (
    hrm.puzzle_prefix_len(
      ml_collections.ConfigDict(dict(puzzle_emb_ndim=0, hidden_size=512, puzzle_emb_len=0))
    )
    == 0
  )


def test_model_gradient_is_one_step():
  """The model's gradient = that of its final f_L + f_H with their input states constant."""
  cfg = _tiny_cfg(H_cycles=2, L_cycles=2)
  m = hrm.HRM(cfg.model, 11, 9, rngs=nnx.Rngs(0))
  graphdef, params, buffers = ts.split_model(m)
  inputs = jnp.asarray(np.random.default_rng(0).integers(0, 11, (2, 9)), jnp.int32)
  rows = jax.random.normal(jax.random.key(3), (2, 16))
  z_H, z_L = m.initial_state(2)

  def loss(params, segment):
    model = nnx.merge(graphdef, params, buffers)
    x = model.embed(inputs, rows)
    z = segment(model, x)[0]
    return jnp.sum(model.heads(z)[0] ** 2)

  def manual(model, x):
    zh, zl = z_H, z_L
    for _ in range(2):  # evaluations 1-4 of the §2.2 table: L, L, H, L
      zl = model.f_L(zl, zh + x)
    zh = model.f_H(zh, zl)
    zl = model.f_L(zl, zh + x)
    zh, zl = jax.lax.stop_gradient((zh, zl))
    zl = model.f_L(zl, zh + x)  # evaluation 5, with gradient
    return model.f_H(zh, zl), zl  # evaluation 6

  g = jax.grad(loss)(params, lambda model, x: model.segment(z_H, z_L, x))
  want = jax.grad(loss)(params, manual)
  # Scan vs unrolled code round differently in fp32; a wrong schedule differs by O(1).
  chex.assert_trees_all_close(g, want, rtol=1e-3, atol=2e-5)
  # ... and differs from backprop through all cycles.
  cfg.model.gradient = 'full'
  m_full = nnx.merge(*nnx.split(hrm.HRM(cfg.model, 11, 9, rngs=nnx.Rngs(0))))
  graphdef = nnx.split(m_full, nnx.Param, layers.Buffer)[0]
  full = jax.grad(loss)(params, lambda model, x: model.segment(z_H, z_L, x))
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))), full, g)
  assert max(jax.tree.leaves(diff['L_level'])) > 0.05, diff['L_level']
