"""The benchmark's output contract (`name: value` lines); its figures go in the README."""

import os
import subprocess
import sys

import pytest

from tests import helpers


def _bench(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  r = subprocess.run(
    [sys.executable, '-m', 'hrm_jax.bench', *args],
    cwd=helpers.ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr
  return dict(line.split(': ', 1) for line in r.stdout.splitlines() if ': ' in line)


@pytest.mark.parametrize(
  'preset,count', [('', 27_275_266), ('trm_att', 6_828_034), ('trm_mlp', 5_028_866)]
)
def test_params_only_counts_the_paper_models(preset, count):
  out = _bench(f'--config=experiments/sudoku.py:{preset}', '--params_only')
  assert out == {'params': str(count)}


def test_timing_lines_for_a_tiny_model():
  out = _bench(
    '--config=experiments/sudoku.py:cpu',
    '--config.model.hidden_size=16',
    '--config.model.puzzle_emb_ndim=16',
    '--config.train.global_batch_size=4',
    '--steps=1',
  )
  for key in ('params', 'step_ms', 'examples_per_s', 'peak_rss_mb'):
    assert float(out[key]) > 0, key
  assert int(out['batch']) == 4
