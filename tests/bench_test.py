"""The benchmark's output contract (`name: value` lines); its figures go in the README."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
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
    '--batch=4',
    '--dtype=float32',
    '--steps=1',
  )
  for key in (
    'params',
    'step_ms',
    'steps_per_s',
    'examples_per_s',
    'gflops_per_step',
    'model_gflops_per_s',
    'peak_gflops_per_s',
    'utilisation',
    'peak_rss_mb',
  ):
    assert float(out[key]) > 0, key
  assert int(out['batch']) == 4 and out['dtype'] == 'float32'
  assert 'mfu' not in out  # only on accelerators with a known peak
  np.testing.assert_allclose(
    float(out['model_gflops_per_s']) / float(out['peak_gflops_per_s']),
    float(out['utilisation']),
    rtol=0.02,
  )


def test_jaxpr_flops_counts_matmuls_through_scans_and_gradients():
  from hrm_jax.tools import bench

  def f(w, x):  # 3 steps of x @ w: [8, 16] @ [16, 16]
    return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, length=3)[0].sum()

  w, x = jnp.ones((16, 16)), jnp.ones((8, 16))
  one = 2 * 8 * 16 * 16
  assert bench.jaxpr_flops(jax.make_jaxpr(f)(w, x)) == 3 * one
  # Backward: per step, one matmul for dL/dh and one for dL/dw.
  assert bench.jaxpr_flops(jax.make_jaxpr(jax.grad(f))(w, x)) == 3 * one * 3
