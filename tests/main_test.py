"""The command line: bad input stops with one clear message, before compiling, writing nothing."""

import os
import subprocess
import sys

import pytest

from hrm_jax import config as config_lib
from tests import helpers


def _run(*args, cwd=helpers.ROOT):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
    [sys.executable, '-m', 'hrm_jax.main', *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_unknown_preset(tmp_path):
  r = _run('--config=experiments/sudoku.py:nope', f'--workdir={tmp_path}/w')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert "unknown preset 'nope'" in r.stderr and "'cpu'" in r.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_unknown_field_suggests_the_right_one(tmp_path):
  r = _run(
    '--config=experiments/sudoku.py:tiny', '--config.model.hiden_size=3', f'--workdir={tmp_path}/w'
  )
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert "error: invalid config: unknown field 'hiden_size'" in r.stderr
  assert 'Did you mean "hidden_size"' in r.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_invalid_field_names_it_and_writes_nothing(tmp_path):
  r = _run(
    '--config=experiments/sudoku.py:cpu', f'--workdir={tmp_path}/w', '--config.model.H_cycles=0'
  )
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == (
    'error: invalid config: model.H_cycles: must be >= 1, got 0'
  )
  assert 'Traceback' not in r.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_missing_data_folder(tmp_path):
  r = _run(
    '--config=experiments/sudoku.py:cpu',
    f'--workdir={tmp_path}/w',
    f'--config.data.path={tmp_path}/nowhere',
  )
  assert r.returncode == 2
  assert f'{tmp_path}/nowhere' in r.stderr and 'Traceback' not in r.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_csv_with_wrong_columns(tmp_path):
  csv_dir = tmp_path / 'csv'
  csv_dir.mkdir()
  for name in ('train.csv', 'test.csv'):
    (csv_dir / name).write_text('id,puzzle,solution\n1,' + '.' * 81 + ',' + '1' * 81 + '\n')
  r = _run(
    '--config=experiments/sudoku.py:cpu',
    f'--workdir={tmp_path}/w',
    '--config.data.source=csv',
    f'--config.data.csv_dir={csv_dir}',
  )
  assert r.returncode == 2
  assert 'train.csv' in r.stderr and 'source,question,answer,rating' in r.stderr
  # Nothing partial: no dataset folder (temporary or final) was left behind.
  data_root = tmp_path / 'w' / 'data'
  assert not data_root.exists() or not any(data_root.iterdir())


def test_eval_without_checkpoint(tmp_path):
  r = _run('--config=experiments/sudoku.py:cpu', f'--workdir={tmp_path}/w', '--mode=eval')
  assert r.returncode == 2 and 'no checkpoint' in r.stderr


@pytest.mark.parametrize('devices,batch,ok', [(1, 3, True), (2, 3, False), (8, 768, True)])
def test_batch_must_divide_over_devices(devices, batch, ok):
  cfg = helpers.load_config('experiments/sudoku.py', 'cpu')
  cfg.train.global_batch_size = batch
  cfg.eval.batch_size = batch
  if ok:
    config_lib.validate(cfg, devices)
  else:
    with pytest.raises(config_lib.ConfigError, match='train.global_batch_size.*not divisible'):
      config_lib.validate(cfg, devices)


@pytest.mark.parametrize(
  'field,value,message',
  [
    ('model.arch', 'rnn', 'model.arch: must be one of'),
    ('model.token_mixer', 'conv', 'model.token_mixer: must be one of'),
    ('model.gradient', 'last_two', 'model.gradient: must be one of'),
    ('ema.rate', 1.0, r'ema.rate: must be in \[0, 1\)'),
    ('model.L_layers', 0, 'model.L_layers: must be >= 1'),
    # Issue 18: fields that used to pass and then ran gradient ascent, NaN'd at step 2 (and were
    # written into config.json), deleted every checkpoint or crashed at the first evaluation.
    ('opt.lr', -1.0, 'opt.lr: must be a finite number > 0'),
    ('opt.lr', float('nan'), 'opt.lr: must be a finite number > 0'),
    ('opt.puzzle_emb_lr', float('inf'), 'opt.puzzle_emb_lr: must be a finite number >= 0'),
    ('opt.weight_decay', -0.1, 'opt.weight_decay: must be a finite number >= 0'),
    ('opt.b2', 1.0, r'opt.b2: must be in \[0, 1\)'),
    ('ckpt.max_to_keep', 0, 'ckpt.max_to_keep: must be >= 1'),
    ('eval.max_examples', -1, 'eval.max_examples: must be >= 0'),
  ],
)
def test_validate_names_the_bad_field(field, value, message):
  cfg = helpers.load_config('experiments/sudoku.py', 'trm_cpu')
  group, name = field.split('.')
  cfg[group][name] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(cfg)


def test_trm_with_shared_network_needs_no_H_layers():
  cfg = helpers.load_config('experiments/sudoku.py', 'trm_cpu')
  assert cfg.model.H_layers == 0
  config_lib.validate(cfg)
  cfg.model.arch = 'hrm'  # HRM's f_H is a network of its own: H_layers 0 is an error
  with pytest.raises(config_lib.ConfigError, match='model.H_layers: must be >= 1'):
    config_lib.validate(cfg)


def test_paper_arc_preset_without_conceptarc_stops_with_one_line(tmp_path):
  # Offline, without a local copy: the paper recipe is not silently shrunk to 800 groups.
  r = _run(
    '--config=experiments/arc.py',
    f'--workdir={tmp_path}/w',
    f'--config.data.concept_url=file://{tmp_path}/nowhere/arc-agi_concept',
  )
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and 'ConceptARC is part of this recipe' in last
  assert '--config.data.concept_dir=DIR' in last and '--config.data.concept=False' in last


def test_missing_config_file_is_one_error_line(tmp_path):
  r = _run('--config=experiments/nope.py:tiny', f'--workdir={tmp_path}/w')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert r.stderr.strip() == 'error: --config: experiments/nope.py: no such file'
  assert not os.path.exists(tmp_path / 'w')
