"""Shared test helpers: load experiment configs by path, tiny configs."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path: str, preset: str = ''):
  """get_config(preset) of an experiments/*.py file, as `--config=path:preset` would."""
  spec = importlib.util.spec_from_file_location('exp_config', os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def tiny_config():
  """A tiny HRM on a small generated Sudoku set: seconds per run on 2 CPU cores."""
  cfg = load_config('experiments/sudoku.py', 'cpu')
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
