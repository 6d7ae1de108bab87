"""Maze and ARC end to end: builder -> training loop -> task evaluator -> printed figures.

Each runs its `cpu` preset shrunk to seconds (hidden 32, a few steps, tiny data); the builders,
generator, voting and pass@K have their own unit tests.
"""

import json
import os

import numpy as np

from hrm_jax import train
from hrm_jax.data import maze_gen
from hrm_jax.evaluators.maze import MazeEvaluator
from tests import helpers


def _shrink_run(cfg):
  cfg.model.update(hidden_size=32, num_heads=2, puzzle_emb_ndim=32)
  cfg.act.halt_max_steps = 2
  cfg.train.update(global_batch_size=8, steps=4, eval_every=4, log_every=2)
  cfg.eval.update(batch_size=16)
  return cfg


def test_maze_evaluator_scores_valid_optimal_paths_and_skips_padding():
  q, a = maze_gen.generate_mazes(6, 7, 6, np.random.default_rng(0))
  labels = a.astype(np.int32)
  labels[-2:] = -100  # the eval loader's padding rows
  preds = a.astype(np.int32).copy()
  preds[1] = q[1]  # no path: not valid
  ev = MazeEvaluator()
  ev.begin()
  ev.update({'inputs': q, 'labels': labels}, preds, np.zeros(6))
  assert ev.result() == {'valid_optimal': 3 / 4, 'valid_optimal_count': 4}
  ev.begin()
  assert ev.result()['valid_optimal_count'] == 0


def test_maze_cpu_preset_end_to_end(tmp_path, capsys):
  cfg = _shrink_run(helpers.load_config('experiments/maze.py', 'cpu'))
  cfg.data.update(num_train=32, num_test=20, maze_size=7, min_path_len=6)
  metrics = train.train_and_evaluate(cfg, str(tmp_path))
  assert metrics['valid_optimal_count'] == 20 and 0.0 <= metrics['valid_optimal'] <= 1.0
  line = [x for x in capsys.readouterr().out.splitlines() if x.startswith('eval ')][-1]
  assert 'exact_accuracy=' in line and 'valid_optimal=' in line
  assert helpers.records(str(tmp_path), 'eval')[-1]['valid_optimal'] == metrics['valid_optimal']


def test_arc_cpu_preset_end_to_end_with_pass_at_k_and_submission(tmp_path, capsys):
  cfg = _shrink_run(helpers.load_config('experiments/arc.py', 'cpu'))
  cfg.data.update(max_tasks=3, num_aug=2, canvas=6, max_grid=6)
  metrics = train.train_and_evaluate(cfg, str(tmp_path))
  for rule in ('all', 'frac'):
    for k in (1, 2, 1000):
      assert 0.0 <= metrics[f'arc/pass@{k}_{rule}'] <= 1.0
  assert metrics['arc/tasks'] == 3 and metrics['arc/missing_predictions'] == 0
  line = [x for x in capsys.readouterr().out.splitlines() if x.startswith('eval ')][-1]
  assert 'arc/pass@1_all=' in line and 'arc/pass@2_frac=' in line
  with open(os.path.join(tmp_path, 'eval', 'step_4', 'submission.json')) as f:
    submission = json.load(f)
  assert len(submission) == 3
  assert all(set(a) == {'attempt_1', 'attempt_2'} for t in submission.values() for a in t)
