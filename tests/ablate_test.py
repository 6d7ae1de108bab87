"""The laptop-scale ablation tool (hrm_jax.tools.ablate): each variant changes what its paper row
changes, at equal parameters, and one command trains, tabulates and resumes."""

import json
import os

import pytest

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.tools import ablate
from tests import helpers


def test_variants_change_only_their_fields_at_equal_parameters():
  base = helpers.tiny_config('trm_cpu')
  params = {}
  for name in ablate.VARIANTS:
    cfg = ablate.variant_config(base, name)
    changes = {} if name == 'base' else config_lib.TRM_ABLATIONS[name]
    diffs = config_lib.run_differences(base.to_dict(), cfg)
    assert sorted(d.split(':')[0] for d in diffs) == sorted(
      k for k, v in changes.items() if base[k.split('.')[0]][k.split('.')[1]] != v
    ), name
    _, state = ts.init_state(config_lib.resolve(cfg, 1.0), 11, 81, 1)
    params[name] = ts.count_params(state.params)
  # One 2-layer network everywhere (HRM split into 1 + 1, the transformer's 2 blocks), except
  # the separate y-network, a second copy of the 2 layers, and attention, which has no
  # sequence-mixing MLP (its weights depend on the sequence length, its projections do not).
  same = {k: v for k, v in params.items() if k not in ('separate_nets', 'attention')}
  assert set(same.values()) == {params['base']}, params
  assert params['separate_nets'] > params['base'] and params['attention'] != params['base']
  with pytest.raises(config_lib.ConfigError, match='unknown variant'):
    ablate.variant_config(base, 'bigger')
  with pytest.raises(config_lib.ConfigError, match='model.nope: no such field'):
    config_lib.apply(base, {'model.nope': 1})


def test_stretched_schedule_keeps_the_warmup_share():
  cfg = helpers.tiny_config('trm_cpu')
  cfg.train.steps, cfg.opt.lr_warmup_steps = 1600, 100
  out = ablate.stretched(cfg, 800)
  assert (out.train.steps, out.train.eval_every, out.opt.lr_warmup_steps) == (800, 400, 50)
  assert ablate.stretched(cfg, 801).train.eval_every == 401  # evaluations at 401 and 801 only
  assert ablate.stretched(cfg, 3).opt.lr_warmup_steps == 1


def test_one_command_trains_tabulates_and_resumes(tmp_path):
  overrides = [
    f'--workdir={tmp_path}',
    '--variants=direct',
    '--minutes=0.00001',  # below one step: the floor of 2 steps
    '--time_steps=1',
    '--config.model.hidden_size=16',
    '--config.model.puzzle_emb_ndim=16',
    '--config.train.global_batch_size=8',
    '--config.eval.batch_size=8',
    '--config.data.num_train=16',
    '--config.data.num_test=8',
    '--config.data.num_aug=1',
    '--config.log.tensorboard=False',
  ]

  def run():
    r = helpers.run_module('hrm_jax.tools.ablate', *overrides, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout

  out = run()
  assert json.load(open(tmp_path / 'ablation.json'))['direct']['steps'] == 2
  row = json.loads(next(line for line in out.splitlines() if line.startswith('variant: '))[9:])
  assert row['variant'] == 'direct' and row['steps'] == 2 and row['paper'] == 0.0
  assert 0.0 <= row['exact_accuracy'] <= row['blank_accuracy'] <= 1.0
  table = (tmp_path / 'ablation.md').read_text()
  assert table.splitlines()[2].startswith('| direct | ') and table.strip() in out
  assert os.listdir(tmp_path / 'direct' / 'checkpoints')
  # A rerun keeps the step counts and trains nothing again.
  again = run()
  assert 'timed:' not in again and 'devices=' not in again and table.strip() in again
