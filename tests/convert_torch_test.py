"""The PyTorch checkpoint converter: layout round trip, strict key checks, a .pt file end to end.

Numerical parity with the reference code needs its checkout and lives in
`python -m hrm_jax.tools.torch_parity` (README); these tests need no reference code, and torch
only for the one test that writes a .pt file.
"""

import os
import subprocess
import sys
import types

import chex
import jax
import numpy as np
import pytest

from hrm_jax import config as config_lib
from hrm_jax import evaluate, tasks
from hrm_jax import train_step as ts
from hrm_jax.tools import convert_torch as ct
from tests import helpers

PRESETS = {
  'hrm': 'tiny',
  'trm_att': 'trm_att_cpu',
  'trm_mlp': 'trm_mlp',
  'trm_multi_z': 'trm_multi_z',
}
P = '_orig_mod.model.inner.'  # what the reference's compiled loss-head model saves


def _config(name: str):
  return config_lib.shrink(helpers.load_config('experiments/sudoku.py', PRESETS[name]))


def _random_weights(cfg, seed: int = 0, num_ids: int = 3):
  """(params, buffers, puzzle table) of `cfg` at Sudoku sizes, every value random (numpy)."""
  _, state = ts.init_state(config_lib.resolve(cfg, 1.0), 11, 81, num_ids)
  rng = np.random.default_rng(seed)
  draw = lambda x: rng.standard_normal(x.shape).astype(np.float32)  # noqa: E731
  return jax.tree.map(draw, state.params), jax.tree.map(draw, state.buffers), draw(state.puzzle_emb)


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_round_trip_is_exact(name):
  cfg = _config(name)
  params, buffers, table = _random_weights(cfg)
  sd = ct.to_torch_state_dict(params, buffers, table)
  # Reference layout: Linear weights [out, in], embeddings, buffers and the table by name.
  assert sd[P + 'lm_head.weight'].shape == (11, 32)
  np.testing.assert_array_equal(sd[P + 'lm_head.weight'], params['lm_head']['kernel'].T)
  np.testing.assert_array_equal(sd[P + 'q_head.bias'], params['q_head']['bias'])
  np.testing.assert_array_equal(
    sd[P + 'embed_tokens.embedding_weight'], params['embed_tokens']['embedding']
  )
  np.testing.assert_array_equal(sd[P + 'puzzle_emb.weights'], table)
  np.testing.assert_array_equal(sd[P + 'H_init'], buffers['H_init'])
  if name == 'trm_multi_z':  # trm_hier6.py: L1_init ... L6_init, one per latent feature
    assert P + 'L_init' not in sd
    got = np.concatenate([sd[f'{P}L{i}_init'] for i in range(1, 7)])
    np.testing.assert_array_equal(got, buffers['L_init'])
  else:
    np.testing.assert_array_equal(sd[P + 'L_init'], buffers['L_init'])
  block = P + 'L_level.layers.0.'
  if name in ('trm_mlp', 'trm_multi_z'):
    # Sequence mixer over S = 81 + 16 prefix slots, inner width ceil256(round(4·97·2/3)) = 512.
    assert sd[block + 'mlp_t.gate_up_proj.weight'].shape == (1024, 97)
    assert block + 'self_attn.qkv_proj.weight' not in sd
  else:
    assert sd[block + 'self_attn.qkv_proj.weight'].shape == (3 * 32, 32)
  assert (P + 'H_level.layers.0.mlp.down_proj.weight' in sd) == (name == 'hrm')

  back = ct.from_torch_state_dict(sd, params, buffers, table)
  chex.assert_trees_all_equal(back, (params, buffers, table))

  _, _, state, meta = ct.convert_state_dict(cfg, sd, step=5)
  chex.assert_trees_all_equal(jax.device_get(state.params), params)
  chex.assert_trees_all_equal(jax.device_get(state.buffers), buffers)
  np.testing.assert_array_equal(state.puzzle_emb, table)
  assert int(state.step) == 5
  # The reference saves the EMA copy as its model: it becomes both weights and their average.
  if cfg.ema.enabled:
    chex.assert_trees_all_equal(jax.device_get(state.ema_params), params)
  else:
    assert state.ema_params is None
  assert (meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers) == (11, 81, 3)


@pytest.mark.parametrize('prefix', ['', 'inner.', 'model.inner.', '_orig_mod.', P])
def test_prefixes_are_stripped(prefix):
  params, buffers, table = _random_weights(_config('hrm'))
  sd = ct.to_torch_state_dict(params, buffers, table, prefix=prefix)
  chex.assert_trees_all_equal(
    ct.from_torch_state_dict(sd, params, buffers, table), (params, buffers, table)
  )


def test_the_same_tensor_twice_is_refused():
  params, buffers, table = _random_weights(_config('hrm'))
  sd = ct.to_torch_state_dict(params, buffers, table, prefix='model.inner.')
  sd[P + 'lm_head.weight'] = sd['model.inner.lm_head.weight']
  with pytest.raises(ct.ConversionError, match="'lm_head.weight' appears twice"):
    ct.from_torch_state_dict(sd, params, buffers, table)


def _broken(kind: str, sd: dict) -> str:
  """Breaks `sd` in place; returns what the error must say."""
  key = P + 'L_level.layers.0.mlp.down_proj.weight'
  if kind == 'missing':
    del sd[key]
    return "missing tensor 'L_level.layers.0.mlp.down_proj.weight' (expected shape (32, 256))"
  if kind == 'extra':
    sd[P + 'L_level.layers.0.norm.weight'] = np.ones(32, np.float32)
    return "unused tensor 'L_level.layers.0.norm.weight' with shape (32,)"
  sd[key] = np.zeros((256, 32), np.float32)  # transposed by mistake
  return "'L_level.layers.0.mlp.down_proj.weight' has shape (256, 32), expected (32, 256)"


@pytest.mark.parametrize('kind', ['missing', 'extra', 'misshaped'])
def test_bad_state_dict_names_the_tensor(kind):
  params, buffers, table = _random_weights(_config('hrm'))
  sd = ct.to_torch_state_dict(params, buffers, table)
  message = _broken(kind, sd)
  with pytest.raises(ct.ConversionError) as e:
    ct.from_torch_state_dict(sd, params, buffers, table)
  assert isinstance(e.value, ValueError)
  assert message in str(e.value)
  assert str(e.value).count('\n') == 1  # exactly that one problem


def test_architecture_mismatch_names_the_config_fields():
  params, buffers, table = _random_weights(_config('hrm'))
  sd = ct.to_torch_state_dict(params, buffers, table)
  with pytest.raises(ct.ConversionError) as e:
    ct.convert_state_dict(_config('trm_mlp'), sd)
  msg = str(e.value)
  assert 'needs 0 H_level layers, the checkpoint has 1' in msg
  assert "model.token_mixer is 'mlp', the checkpoint has 'attention'" in msg
  wide = _config('hrm')
  wide.model.update(hidden_size=64, puzzle_emb_ndim=64)
  with pytest.raises(ct.ConversionError, match='model.hidden_size is 64, the checkpoint has 32'):
    ct.convert_state_dict(wide, sd)


def test_reference_all_config_is_checked():
  cfg = _config('trm_att')
  m = cfg.model
  arch = dict(
    name='recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1',
    hidden_size=m.hidden_size,
    num_heads=m.num_heads,
    expansion=m.expansion,
    H_cycles=m.H_cycles,
    L_cycles=m.L_cycles,
    H_layers=0,
    L_layers=m.L_layers,
    puzzle_emb_ndim=m.puzzle_emb_ndim,
    pos_encodings='rope',
    halt_max_steps=cfg.act.halt_max_steps,
  )  # puzzle_emb_len absent: the TRM class defaults it to 16, as trm_att_cpu does not
  with pytest.raises(ct.ConversionError, match='puzzle prefix: all_config.yaml gives 16'):
    ct.check_reference_config(cfg, arch)
  ct.check_reference_config(cfg, dict(arch, puzzle_emb_len=1))
  with pytest.raises(ct.ConversionError, match='num_heads: all_config.yaml has 8'):
    ct.check_reference_config(cfg, dict(arch, puzzle_emb_len=1, num_heads=8))


def test_hub_path_downloads_the_checkpoint_file(monkeypatch, tmp_path):
  calls = []

  def hf_hub_download(repo_id, filename):
    calls.append((repo_id, filename))
    if filename != 'checkpoint':
      raise FileNotFoundError(filename)  # no all_config.yaml in this fake repo
    (tmp_path / filename).write_bytes(b'')
    return str(tmp_path / filename)

  monkeypatch.setitem(
    sys.modules, 'huggingface_hub', types.SimpleNamespace(hf_hub_download=hf_hub_download)
  )
  path = ct.resolve_checkpoint('hf://sapientinc/HRM-checkpoint-sudoku-extreme')
  assert path == str(tmp_path / 'checkpoint')
  assert calls[0] == ('sapientinc/HRM-checkpoint-sudoku-extreme', 'checkpoint')
  with pytest.raises(ct.ConversionError, match='expected hf://<owner>/<repo>'):
    ct.resolve_checkpoint('hf://justone')


def test_pt_file_converts_through_the_cli_and_evaluates(tmp_path, capsys):
  torch = pytest.importorskip('torch')
  cfg = helpers.tiny_config()  # the attention HRM at hidden 32, batch 16
  params, buffers, table = _random_weights(cfg, seed=1, num_ids=1)
  # The reference keeps H_init/L_init in bf16: start from bf16-exact values so the check is exact.
  buffers = jax.tree.map(lambda x: torch.from_numpy(x).to(torch.bfloat16).float().numpy(), buffers)
  sd = {k: torch.from_numpy(v) for k, v in ct.to_torch_state_dict(params, buffers, table).items()}
  for name in ('H_init', 'L_init'):
    sd[P + name] = sd[P + name].to(torch.bfloat16)
  ckpt = tmp_path / 'run' / 'step_7'
  ckpt.parent.mkdir()
  torch.save(sd, ckpt)

  workdir = str(tmp_path / 'work')
  args = [
    f'--checkpoint={ckpt}',
    '--config=experiments/sudoku.py:tiny',
    f'--config.model.hidden_size={cfg.model.hidden_size}',
    f'--config.model.num_heads={cfg.model.num_heads}',
    f'--config.model.puzzle_emb_ndim={cfg.model.puzzle_emb_ndim}',
    f'--config.train.global_batch_size={cfg.train.global_batch_size}',
    f'--workdir={workdir}',
  ]
  r = subprocess.run(
    [sys.executable, '-m', 'hrm_jax.convert_torch', *args],
    cwd=helpers.ROOT,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 0, r.stderr
  assert 'step=7 vocab=11 seq_len=81 puzzle_ids=1' in r.stdout

  _, graphdef, state, step, meta = evaluate.load_trained(cfg, workdir)
  assert step == 7 and (meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers) == (11, 81, 1)
  chex.assert_trees_all_equal(jax.device_get(state.params), params)
  chex.assert_trees_all_equal(jax.device_get(state.buffers), buffers)

  metrics = evaluate.evaluate_checkpoint(cfg, workdir)
  assert metrics['count'] == cfg.data.num_test
  # The converted weights' figures: M_max segments of exactly those weights, recomputed here.
  batch = helpers.test_examples(tasks.prepare_data(cfg, workdir))
  want = helpers.manual_eval(graphdef, params, buffers, table, batch, cfg.act.halt_max_steps)
  helpers.assert_eval_close(metrics, want)
  assert 'eval step=7 exact_accuracy=' in capsys.readouterr().out

  # A second conversion into the same workdir is refused rather than mixed in.
  with pytest.raises(ct.ConversionError, match='already holds checkpoints'):
    ct.convert_checkpoint(cfg, str(ckpt), workdir)
