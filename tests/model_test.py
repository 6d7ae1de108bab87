"""The network: parameter counts, init, embeddings, heads, and the gradient of each arch."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.models import layers
from hrm_jax.models import model as model_lib
from tests import helpers


def test_paper_sudoku_config_has_27_275_266_parameters():
  cfg = helpers.load_config('experiments/sudoku.py')
  model = nnx.eval_shape(lambda: model_lib.ReasoningModel(cfg.model, 11, 81, rngs=nnx.Rngs(0)))
  _, params, buffers = nnx.split(model, nnx.Param, layers.Buffer)
  assert ts.count_params(nnx.to_pure_dict(params)) == 27_275_266
  # H_init / L_init are buffers, not trainable parameters (spec §1.1).
  assert set(nnx.to_pure_dict(buffers)) == {'H_init', 'L_init'}
  assert cfg.model.compute_dtype == 'bfloat16'


def _tiny_cfg(**model):
  """The base config at hidden 16 with one layer per network (`config.shrink`), then `model`."""
  cfg = config_lib.shrink(config_lib.base_config(), hidden_size=16)
  cfg.model.update(dict(dict(H_layers=1, L_layers=1), **model))
  return cfg


def test_init_of_heads_and_buffers():
  m = model_lib.ReasoningModel(_tiny_cfg().model, 11, 9, rngs=nnx.Rngs(0))
  chex.assert_trees_all_equal(m.q_head.kernel[...], jnp.zeros((16, 2)))
  chex.assert_trees_all_equal(m.q_head.bias[...], jnp.full((2,), -5.0))
  assert m.lm_head.bias is None
  assert isinstance(m.H_init, layers.Buffer) and m.H_init[...].shape == (16,)
  assert float(jnp.max(jnp.abs(m.H_init[...]))) <= 2 / 0.8796 + 1e-6


def test_embed_prefix_scale_and_head_shapes():
  m = model_lib.ReasoningModel(_tiny_cfg().model, 11, 9, rngs=nnx.Rngs(0))
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
    model_lib.puzzle_prefix_len(
      ml_collections.ConfigDict(dict(puzzle_emb_ndim=512, hidden_size=512, puzzle_emb_len=0))
    )
    == 1
  )
  assert (
    model_lib.puzzle_prefix_len(
      ml_collections.ConfigDict(dict(puzzle_emb_ndim=512, hidden_size=512, puzzle_emb_len=16))
    )
    == 16
  )
  assert (
    model_lib.puzzle_prefix_len(
      ml_collections.ConfigDict(dict(puzzle_emb_ndim=0, hidden_size=512, puzzle_emb_len=0))
    )
    == 0
  )


def test_model_gradient_is_one_step():
  """The model's gradient = that of its final f_L + f_H with their input states constant."""
  cfg = _tiny_cfg(H_cycles=2, L_cycles=2)
  m = model_lib.ReasoningModel(cfg.model, 11, 9, rngs=nnx.Rngs(0))
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
  m_full = nnx.merge(*nnx.split(model_lib.ReasoningModel(cfg.model, 11, 9, rngs=nnx.Rngs(0))))
  graphdef = nnx.split(m_full, nnx.Param, layers.Buffer)[0]
  full = jax.grad(loss)(params, lambda model, x: model.segment(z_H, z_L, x))
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))), full, g)
  assert max(jax.tree.leaves(diff['L_level'])) > 0.05, diff['L_level']


class ModelVariantsTest(chex.TestCase):
  """A segment and the heads compute the same thing jitted and not."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_segment_is_the_hrm_schedule(self):
    m = model_lib.ReasoningModel(_tiny_cfg(H_cycles=2, L_cycles=3).model, 11, 9, rngs=nnx.Rngs(0))
    graphdef, params, buffers = ts.split_model(m)
    inputs = jnp.asarray(np.random.default_rng(0).integers(0, 11, (2, 9)), jnp.int32)
    rows = jax.random.normal(jax.random.key(3), (2, 16))

    def forward(params, inputs, rows):
      model = nnx.merge(graphdef, params, buffers)
      x = model.embed(inputs, rows)
      z_H, z_L = model.segment(*model.initial_state(2), x)
      return model.heads(z_H), z_L

    got = self.variant(forward)(params, inputs, rows)
    # The §2.2 schedule unrolled op by op: N = 2 cycles of T = 3 f_L updates, then f_H.
    x = m.embed(inputs, rows)
    z_H, z_L = m.initial_state(2)
    for _ in range(2):
      for _ in range(3):
        z_L = m.f_L(z_L, z_H + x)
      z_H = m.f_H(z_H, z_L)
    # The same ops jitted (fused) and not: equal up to summation order (helpers.state_tol).
    tol = helpers.state_tol(m.cfg, 9 + m.prefix_len, helpers.segment_evals(m.cfg, 1))
    chex.assert_trees_all_close(got[1], z_L, atol=tol, rtol=0)
    delta = helpers.logit_tol(params, tol)
    chex.assert_trees_all_close(got[0], m.heads(z_H), atol=delta, rtol=0)
    chex.assert_shape(got[0][0], (2, 9, 11))


@pytest.mark.parametrize(
  'preset,count',
  [
    ('trm_att', 6_828_034),
    ('trm_mlp', 5_028_866),
    ('trm_single_z', 5_028_866),
    ('trm_multi_z', 5_028_866),  # the reference's trm_hier6 adds buffers (L1..L6_init) only
  ],
)
def test_trm_sudoku_parameter_counts(preset, count):
  """TRM §4.6: one 2-layer network; TRM-MLP's sequence mixer has width S = 81 + 16 = 97."""
  cfg = helpers.load_config('experiments/sudoku.py', preset)
  model = nnx.eval_shape(lambda: model_lib.ReasoningModel(cfg.model, 11, 81, rngs=nnx.Rngs(0)))
  _, params, _ = nnx.split(model, nnx.Param, layers.Buffer)
  params = nnx.to_pure_dict(params)
  assert ts.count_params(params) == count
  assert 'H_level' not in params and len(params['L_level']['layers']) == 2
  assert model.total_len == 97


@pytest.mark.parametrize(
  'arch,H_layers,nets',
  [
    ('hrm', 1, {'H_level', 'L_level'}),
    ('trm', 0, {'L_level'}),
    ('trm', 1, {'H_level', 'L_level'}),  # the "separate f_H, f_L" ablation
    ('trm_single_z', 0, {'L_level'}),
    ('trm_multi_z', 0, {'L_level'}),
    ('transformer', 2, {'H_level'}),
  ],
)
def test_arch_builds_its_networks(arch, H_layers, nets):
  m = model_lib.ReasoningModel(
    _tiny_cfg(arch=arch, H_layers=H_layers).model, 11, 9, rngs=nnx.Rngs(0)
  )
  params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
  assert {k for k in params if k.endswith('_level')} == nets


def _grad_of_segment(m, segment, inputs, rows, z):
  graphdef, params, buffers = ts.split_model(m)

  def loss(params):
    model = nnx.merge(graphdef, params, buffers)
    return jnp.sum(model.heads(segment(model, model.embed(inputs, rows), *z)[0])[0] ** 2)

  return jax.grad(loss)(params)


def test_trm_gradient_is_the_last_full_recursion():
  """TRM (§4.2): T-1 no-grad recursions, then n z-updates and one y-update with gradient."""
  T, n = 2, 3
  cfg = _tiny_cfg(arch='trm', H_layers=0, H_cycles=T, L_cycles=n, gradient='last_cycle')
  m = model_lib.ReasoningModel(cfg.model, 11, 9, rngs=nnx.Rngs(0))
  inputs = jnp.asarray(np.random.default_rng(0).integers(0, 11, (2, 9)), jnp.int32)
  rows = jax.random.normal(jax.random.key(3), (2, 16))
  z = m.initial_state(2)

  def manual(model, x, y, z):
    f = lambda s, inj: model.L_level(s, inj, model.rope())  # noqa: E731  one shared network
    for t in range(T):
      if t == T - 1:  # only the last recursion records gradient: its inputs are constants
        y, z = jax.lax.stop_gradient((y, z))
      for _ in range(n):
        z = f(z, y + x)
      y = f(y, z)
    return y, z

  g = _grad_of_segment(m, lambda model, x, y, z: model.segment(y, z, x), inputs, rows, z)
  want = _grad_of_segment(m, manual, inputs, rows, z)
  # Gradients reach ~20 here; scan vs unrolled rounding leaves ~1e-4; a wrong schedule is O(1).
  chex.assert_trees_all_close(g, want, rtol=1e-3, atol=3e-4)
  # The 1-step-gradient ablation differentiates only the last z- and y-update.
  cfg.model.gradient = 'one_step'
  m1 = model_lib.ReasoningModel(cfg.model, 11, 9, rngs=nnx.Rngs(0))
  g1 = _grad_of_segment(m1, lambda model, x, y, z: model.segment(y, z, x), inputs, rows, z)
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))), g1, g)
  assert max(jax.tree.leaves(diff['L_level'])) > 0.05, diff['L_level']


def test_multi_z_segment_follows_the_reference_loop():
  """trm_hier6.py: at L-step i of a cycle z_i <- f(sum_j z_j, y + x); then y <- f(y, sum_j z_j)."""
  T, n = 2, 3
  cfg = _tiny_cfg(arch='trm_multi_z', H_layers=0, H_cycles=T, L_cycles=n, gradient='last_cycle')
  m = model_lib.ReasoningModel(cfg.model, 11, 9, rngs=nnx.Rngs(0))
  y0, z0 = m.initial_state(2)
  S, D = m.total_len, 16
  chex.assert_shape((y0, z0), ((2, S, D), (2, S, n * D)))
  chex.assert_trees_all_equal(z0[0, 0], m.L_init[...])  # n initial vectors side by side
  x = jax.random.normal(jax.random.key(1), (2, S, D))
  z0 = jax.random.normal(jax.random.key(2), (2, S, n * D))  # distinct features
  f = lambda s, inj: m.L_level(s, inj, m.rope())  # noqa: E731
  y, zs = y0, [z0[..., i * D : (i + 1) * D] for i in range(n)]
  for _ in range(T):
    for i in range(n):
      zs[i] = f(sum(zs), y + x)
    y = f(y, sum(zs))
  got_y, got_z = m.segment(y0, z0, x)
  # Summation order of the features may differ (jnp.sum vs left to right): a rounding-level
  # difference, bounded as for any two compilations (helpers.state_tol).
  tol = helpers.state_tol(m.cfg, S, T * (n + 1))
  chex.assert_trees_all_close(got_y, y, atol=tol, rtol=0)
  chex.assert_trees_all_close(got_z, jnp.concatenate(zs, axis=-1), atol=tol, rtol=0)


def test_transformer_baseline_is_one_pass_with_full_gradient():
  m = model_lib.ReasoningModel(
    _tiny_cfg(arch='transformer', H_layers=2).model, 11, 9, rngs=nnx.Rngs(0)
  )
  z_H, z_L = jax.random.normal(jax.random.key(0), (2, 2, 10, 16))
  x = jax.random.normal(jax.random.key(1), (2, 10, 16))
  new_H, new_L = m.segment(z_H, z_L, x)
  chex.assert_trees_all_close(new_H, m.H_level(z_H + x, None, m.rope()), rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_equal(new_L, z_L)
  g = jax.grad(lambda z: jnp.sum(m.segment(z, z_L, x)[0]))(z_H)
  assert float(jnp.max(jnp.abs(g))) > 0  # nothing detached inside a segment


@pytest.mark.parametrize(
  'path,preset,vocab,count',
  [
    ('experiments/maze.py', 'default', 6, 27_270_146),
    ('experiments/maze.py', 'trm', 6, 6_822_914),
    ('experiments/arc.py', 'default', 12, 27_276_290),
    ('experiments/arc.py', 'hrm_arc2', 12, 27_276_290),
    ('experiments/arc.py', 'trm_arc1', 12, 6_829_058),
    ('experiments/arc.py', 'trm_arc2', 12, 6_829_058),
  ],
)
def test_maze_and_arc_parameter_counts(path, preset, vocab, count):
  """Spec §2.3 and §4.6: the same networks with the 30x30 tasks' vocabularies (6 and 12)."""
  cfg = helpers.load_config(path, preset)
  config_lib.validate(cfg)
  model = nnx.eval_shape(lambda: model_lib.ReasoningModel(cfg.model, vocab, 900, rngs=nnx.Rngs(0)))
  _, params, _ = nnx.split(model, nnx.Param, layers.Buffer)
  assert ts.count_params(nnx.to_pure_dict(params)) == count
  assert model.total_len == 900 + (16 if cfg.model.arch == 'trm' else 1)


def test_model_config_is_frozen_hashable_and_validated_once():
  import dataclasses

  from hrm_jax.models import model as model_lib

  cfg = helpers.load_config('experiments/sudoku.py', 'trm_cpu')
  m = model_lib.ModelConfig.from_config(cfg.model)
  assert m == model_lib.ModelConfig.from_config(cfg.model.to_dict())
  assert hash(m) == hash(model_lib.ModelConfig.from_config(cfg.model))
  with pytest.raises(dataclasses.FrozenInstanceError):
    m.hidden_size = 8
  with pytest.raises(ValueError, match=r'^model\.H_cycles: must be >= 1, got 0$'):
    dataclasses.replace(m, H_cycles=0)
  with pytest.raises(ValueError, match=r'^model\.hiden_size: unknown field'):
    model_lib.ModelConfig.from_config({**cfg.model.to_dict(), 'hiden_size': 3})
  # The graphdef holds the frozen config, so it is hashable: a static jit argument.
  graphdef, _ = ts.init_state(config_lib.resolve(cfg, 1.0), 11, 81, 2)
  assert hash(graphdef) == hash(ts.init_state(config_lib.resolve(cfg, 1.0), 11, 81, 2)[0])
