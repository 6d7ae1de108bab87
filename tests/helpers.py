"""Shared test helpers: load experiment configs by path, tiny configs."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _experiment(path: str):
  spec = importlib.util.spec_from_file_location('exp_config', os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(path: str, preset: str = ''):
  """get_config(preset) of an experiments/*.py file, as `--config=path:preset` would."""
  return _experiment(path).get_config(preset)


def preset_names(path: str) -> list[str]:
  """The preset names an experiments/*.py file defines (its PRESETS dict), sorted."""
  return sorted(_experiment(path).PRESETS)


def tiny_config(preset: str = 'cpu'):
  """A CPU preset (HRM `cpu` or TRM `trm_cpu`) made tiny: seconds per run on 2 CPU cores."""
  cfg = load_config('experiments/sudoku.py', preset)
  cfg.model.update(hidden_size=32, num_heads=2, puzzle_emb_ndim=32)
  cfg.act.halt_max_steps = 4
  cfg.data.update(
    num_train=64,
    num_test=32,
    num_aug=2,
    train_min_blanks=20,
    train_max_blanks=30,
    test_min_blanks=35,
    test_max_blanks=40,
  )
  cfg.train.update(global_batch_size=16, steps=40, eval_every=20, log_every=10)
  cfg.eval.update(batch_size=16)
  cfg.opt.update(lr=3e-3, puzzle_emb_lr=3e-3, lr_warmup_steps=5)
  return cfg


def check_sudoku_pairs(q, s):
  """Asserts each solution is a valid Sudoku and each question agrees with it on its givens."""
  import numpy as np

  from hrm_jax.data import sudoku

  q, s = np.asarray(q).reshape(-1, 81), np.asarray(s).reshape(-1, 81)
  assert sudoku.is_valid_solution(s).all()
  assert ((q == 0) | (q == s)).all()


def tiny_trm_config():
  """`tiny_config` of the TRM preset, with an EMA rate that moves within 40 steps."""
  cfg = tiny_config('trm_cpu')
  cfg.ema.rate = 0.9
  return cfg


def records(workdir: str, split: str) -> list[dict]:
  """The metrics.jsonl records of `workdir` whose split is `split` (train, eval, meta)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [r for r in map(json.loads, f) if r['split'] == split]


def shrink(cfg, batch_size: int = 4):
  """A preset at test size: hidden 32, ≤ 2 layers per network, fp32, a small batch.

  Keeps what distinguishes the preset (arch, gradient, token mixer, cycles, heads of a
  non-dividing head count, halting, EMA), so one train step exercises its code path.
  """
  m = cfg.model
  heads = 12 if m.num_heads == 12 else 2  # 12 heads at hidden 32: head_dim 2, o_proj 24 -> 32
  m.update(
    hidden_size=32,
    num_heads=heads,
    H_layers=min(m.H_layers, 2),
    L_layers=min(m.L_layers, 2),
    puzzle_emb_ndim=32,
    compute_dtype='float32',
  )
  cfg.train.update(global_batch_size=batch_size, steps=1, eval_every=1)
  cfg.eval.update(batch_size=batch_size)
  # Full lr from step 1, so that one step visibly moves every weight (even q_head's bias −5).
  cfg.opt.lr_warmup_steps = 1
  return cfg


# `python -m hrm_jax.main` flags for a run of seconds: the `tiny` preset (hidden 32, 6 steps).
TINY_MAIN_FLAGS = ('--config=experiments/sudoku.py:tiny',)


def main_command(*flags: str) -> list[str]:
  """argv of `python -m hrm_jax.main` with `flags` (this interpreter)."""
  import sys

  return [sys.executable, '-m', 'hrm_jax.main', *flags]


def main_env(devices: int = 1, **extra: str) -> dict:
  """Environment for a CPU subprocess with `devices` fake CPU devices."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', **extra)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  return env


def run_main(*flags: str, devices: int = 1, timeout: int = 300):
  """Runs `python -m hrm_jax.main` in a subprocess; raises with its output if it fails."""
  import subprocess

  r = subprocess.run(
    main_command(*flags),
    cwd=ROOT,
    env=main_env(devices),
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert r.returncode == 0, r.stdout + r.stderr
  return r


def trained_params(workdir: str):
  """(params, puzzle table, EMA weights) of the latest checkpoint in `workdir`, as numpy on 1
  device, restored with the config the run saved."""
  import jax

  from hrm_jax import evaluate
  from hrm_jax import train_step as ts
  from hrm_jax import workdir as workdir_lib

  _, _, state, _, _ = evaluate.load_trained(workdir_lib.saved_config(workdir), workdir)
  return jax.device_get((state.params, state.puzzle_emb, ts.eval_params(state)))


TIMING_KEYS = ('steps_per_s',)


def assert_same_run(workdir_a: str, workdir_b: str, rtol: float, atol: float) -> None:
  """Two runs logged the same train/eval records (timings aside) and ended with the
  same parameters, puzzle-table rows and EMA weights, within (rtol, atol)."""
  import chex
  import numpy as np

  for split in ('train', 'eval'):
    a, b = records(workdir_a, split), records(workdir_b, split)
    assert [r['step'] for r in a] == [r['step'] for r in b], (split, a, b)
    for ra, rb in zip(a, b):
      for k in ra:
        if k not in TIMING_KEYS and not isinstance(ra[k], str):
          np.testing.assert_allclose(rb[k], ra[k], rtol=rtol, atol=atol, err_msg=f'{split} {k}')
  params_a, table_a, ema_a = trained_params(workdir_a)
  params_b, table_b, ema_b = trained_params(workdir_b)
  chex.assert_trees_all_close(params_a, params_b, rtol=rtol, atol=atol)
  chex.assert_trees_all_close(ema_a, ema_b, rtol=rtol, atol=atol)
  rows = min(len(table_a), len(table_b))  # a sharded table has padding rows at the end
  np.testing.assert_allclose(table_a[:rows], table_b[:rows], rtol=rtol, atol=atol)
