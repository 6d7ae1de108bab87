"""The benchmark's output contract (`name: value` lines); its figures go in the README."""

import os
import subprocess
import sys

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


def test_params_only_counts_the_paper_model():
  out = _bench('--config=experiments/sudoku.py', '--params_only')
  assert out == {'params': '27275266'}


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
