"""The benchmark's output contract (`name: value` lines); its figures go in the README."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrm_jax.tools import bench, gemm_peak
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
    '--op_profile',
  )
  for key in (
    'op_ms_matmul',
    'params',
    'step_ms',
    'steps_per_s',
    'examples_per_s',
    'gflops_per_step',
    'model_gflops_per_s',
    'peak_gflops_per_s',
    'utilisation',
    'xla_peak_gflops_per_s',
    'xla_utilisation',
    'peak_rss_mb',
  ):
    assert float(out[key]) > 0, key
  assert int(out['batch']) == 4 and out['dtype'] == 'float32'
  assert 'mfu' not in out  # only on accelerators with a known peak
  # The machine is named, and utilisation is against its fastest GEMM, which may be XLA's.
  assert out['cpu'] == gemm_peak.cpu_info()['model'] and 'cpu_isa' in out
  assert float(out['peak_gflops_per_s']) >= float(out['xla_peak_gflops_per_s'])
  assert out['peak_gemm'].startswith(('jax ', 'numpy ', 'torch ')), out['peak_gemm']
  # The profile's kinds of operation share the operations' time; the cores idle the rest.
  shares = [float(out[f'op_share_{k}']) for k in ('matmul', 'layout', 'other')]
  assert abs(sum(shares) - 1) < 0.01 and 0 <= float(out['idle_share']) < 1, out
  for peak, utilisation in (('peak', 'utilisation'), ('xla_peak', 'xla_utilisation')):
    np.testing.assert_allclose(
      float(out['model_gflops_per_s']) / float(out[f'{peak}_gflops_per_s']),
      float(out[utilisation]),
      rtol=0.02,  # each figure is printed rounded to 3 significant digits or more
    )


def test_op_kinds_of_xla_cpu_operation_names():
  from hrm_jax.tools import bench

  names = ('ynn_fusion.16', 'dot.3', 'transpose_copy_fusion.2', 'subtract_add_fusion.34')
  assert [bench.op_kind(n) for n in names] == ['matmul', 'matmul', 'layout', 'other']


def test_gemm_peak_times_every_installed_library_and_refuses_bad_shapes():
  r = subprocess.run(
    [sys.executable, '-m', 'hrm_jax.tools.gemm_peak', '--shapes=256x128x64', '--reps=1'],
    cwd=helpers.ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 0, r.stderr
  result = json.loads(r.stdout)
  assert result['cpu'] == gemm_peak.cpu_info()
  libs = ['jax', 'numpy'] + (['torch'] if importlib.util.find_spec('torch') else [])
  assert sorted(name.split()[0] for name in result['gflops']) == libs
  assert all(v['256x128x64'] > 0 for v in result['gflops'].values())
  with pytest.raises(ValueError, match="'64x32' is not MxKxN"):
    gemm_peak.parse_shape('64x32')


def test_jaxpr_flops_counts_matmuls_through_scans_and_gradients():
  from hrm_jax.tools import bench

  def f(w, x):  # 3 steps of x @ w: [8, 16] @ [16, 16]
    return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None, length=3)[0].sum()

  w, x = jnp.ones((16, 16)), jnp.ones((8, 16))
  one = 2 * 8 * 16 * 16
  assert bench.jaxpr_flops(jax.make_jaxpr(f)(w, x)) == 3 * one
  # Backward: per step, one matmul for dL/dh and one for dL/dw.
  assert bench.jaxpr_flops(jax.make_jaxpr(jax.grad(f))(w, x)) == 3 * one * 3


def test_accelerator_suite_at_toy_size():
  # One train-step row (TRM-Att Sudoku; the loss row trains the attention HRM), plus an unknown
  # preset whose FAIL row must make the exit code 1. XLA's backend optimisation off: compiling
  # is most of a toy run.
  env = helpers.main_env()
  env['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'
  r = subprocess.run(
    [
      sys.executable,
      '-m',
      'hrm_jax.bench',
      '--suite=accelerator',
      '--suite_presets=sudoku:trm_att,sudoku:no_such_preset',
    ],
    cwd=helpers.ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 1, r.stdout + r.stderr
  assert 'device: cpu x1 (backend cpu), jax ' in r.stdout
  assert 'no accelerator found: the suite runs at toy size' in r.stdout
  rows = [[c.strip() for c in line.split(' | ')] for line in r.stdout.splitlines() if ' | ' in line]
  assert rows[0] == ['check', 'setting', 'result', 'status']
  table = {(check, setting): (result, status) for check, setting, result, status in rows[1:]}
  result, status = table['train step', 'sudoku:trm_att b2 float32']
  assert status == 'ok' and 'ex/s' in result and 'MFU n/a, peak mem n/a' in result
  assert table['train step', 'sudoku:no_such_preset'][1] == 'FAIL'
  for shape in ('sudoku bf16 [B,S,H,K]=[64,97,8,64]', 'maze bf16 [B,S,H,K]=[8,901,8,64]'):
    assert table['cudnn attention', shape] == ('skipped: no GPU (cuDNN)', 'skipped')
  result, status = table['loss falls', 'sudoku:tiny b16 20 steps']
  first, last = map(float, re.findall(r'lm_loss ([\d.]+) \(step \d+\) -> ([\d.]+)', result)[0])
  assert status == 'ok' and last < first, result
  assert len(table) == 5


def test_thread_time_counts_a_helper_thread_for_the_operation_it_helps():
  start, stop = bench._REGION
  dot = [(0, 100, 'ynn_fusion.1')]  # thread 0 runs a dot that thread 1 helps from 10 to 90
  helper = [(10, 10, start), (90, 90, stop), (92, 92, start), (95, 100, 'add_fusion.2')]
  helper += [(100, 100, stop), (100, 100, start), (110, 110, stop)]  # then a task of 10 alone
  ns, busy = bench.thread_time([dot, helper])
  # matmul: the dot, 80 ns of help and 3 ns (92-95) of a task that overlaps it; other: the add
  # and the lone task, which overlaps no traced operation.
  assert ns == {'matmul': 183, 'layout': 0, 'other': 15}
  assert busy == 100 + 80 + 8 + 10
  assert bench._subtract([(0, 10), (20, 30)], [(2, 4), (8, 22), (25, 26)]) == [
    (0, 2),
    (4, 8),
    (22, 25),
    (26, 30),
  ]


def test_side_by_side_alternates_the_codebases_and_keeps_each_best(monkeypatch):
  from hrm_jax.tools import side_by_side

  calls = []
  times = iter([900.0, 2000.0, 800.0, 2100.0])  # jax, eager, jax, eager

  def fake_bench(args):
    calls.append(args[0])
    return dict(
      step_ms=str(next(times)),
      examples_per_s='1',
      utilisation='0.5',
      peak_rss_mb='9',
      dtype='float32',
      gflops_per_step='100',
      peak_gflops_per_s='250',
    )

  monkeypatch.setattr(side_by_side, 'run_bench', fake_bench)
  (row,) = side_by_side.parse_rows('trm_mlp:sudoku:32')
  m = side_by_side.measure(row, dict(trm_repo='/ref'), steps=2, compile_=False, repeats=2)
  assert calls == ['hrm_jax.bench', 'hrm_jax.tools.torch_bench'] * 2
  assert (m['jax']['step_ms'], m['eager']['step_ms']) == ('800.0', '2000.0')
  line = side_by_side.table_row(row, m)
  # The original's utilisation: hrm_jax's 100 GFLOP in 2 s, against the 250 GFLOP/s peak.
  assert line == '| TRM-MLP | Sudoku | 32 | 800 | 1.00 | 0.5 | 9 | 2,000 | 0.200 | 9 | 2.50× |'
  assert line.count('|') == side_by_side.header(False).splitlines()[0].count('|')
  cmds = side_by_side.commands(row, dict(trm_repo='/ref'), 2, compile_=True)
  assert cmds['compiled'][-1] == '--compile' and '--model=trm_mlp' in cmds['eager']
  # Both sides in fp32: the preset's bf16 is overridden, and a run in another dtype is refused.
  assert cmds['jax'][-1] == '--dtype=float32'
  with pytest.raises(RuntimeError, match='bfloat16, not float32'):
    side_by_side.table_row(row, dict(m, jax=dict(m['jax'], dtype='bfloat16')))
  for bad in ('trm_mlp:maze:8', 'hrm:sudoku', 'hrm:sudoku:x', ''):
    with pytest.raises(ValueError, match='--rows'):
      side_by_side.parse_rows(bad)
  with pytest.raises(ValueError, match='needs --hrm_repo'):
    side_by_side.commands(side_by_side.Row('hrm', 'maze', 8), {}, 2, False)
