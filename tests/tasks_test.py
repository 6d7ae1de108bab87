"""Maze and ARC end to end: builder -> training loop -> task evaluator -> printed figures.

Each runs its `cpu` preset shrunk to seconds (hidden 32, a few steps, tiny data); the builders,
generator, voting and pass@K have their own unit tests.
"""

import json
import os

import numpy as np
import pytest

from hrm_jax import config as config_lib
from hrm_jax import evaluate, tasks, train
from hrm_jax.data import maze_gen
from hrm_jax.evaluators.maze import MazeEvaluator
from tests import helpers


def _small_run(path):
  """The `cpu` preset of `path` at 4 steps of batch 8, M_max 2 (its lr warm-up kept)."""
  cfg = helpers.load_config(path, 'cpu')
  return config_lib.shrink(
    cfg, batch_size=8, steps=4, log_every=2, eval_batch_size=16, halt_max_steps=2,
    lr_warmup_steps=None,
  )  # fmt: skip


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
  cfg = _small_run('experiments/maze.py')
  cfg.data.update(num_train=32, num_test=20, maze_size=7, min_path_len=6)
  metrics = train.train_and_evaluate(cfg, str(tmp_path))
  assert metrics['valid_optimal_count'] == 20
  # An exactly right path is a valid optimal one; and the figure is that of the final weights'
  # M_max-segment predictions, recomputed here.
  assert metrics['valid_optimal'] >= metrics['exact_accuracy']
  _, graphdef, state, _, _ = evaluate.load_trained(cfg, str(tmp_path))
  batch = helpers.test_examples(tasks.prepare_data(cfg, str(tmp_path)))
  want = helpers.manual_eval(
    graphdef, state.params, state.buffers, state.puzzle_emb, batch, cfg.act.halt_max_steps
  )
  helpers.assert_eval_close(metrics, want)
  # valid_optimal of the recomputed paths; a maze whose path holds a near-tied cell may differ.
  ok = maze_gen.valid_optimal(batch['inputs'], want['preds'])
  tied = want['margin_flip'](2 * want['logit_tol']).any(-1)
  assert abs(metrics['valid_optimal'] - ok.mean()) <= tied.mean() + 1e-9
  line = [x for x in capsys.readouterr().out.splitlines() if x.startswith('eval ')][-1]
  assert 'exact_accuracy=' in line and 'valid_optimal=' in line
  assert helpers.records(str(tmp_path), 'eval')[-1]['valid_optimal'] == metrics['valid_optimal']


def test_arc_cpu_preset_end_to_end_with_pass_at_k_and_submission(tmp_path, capsys):
  cfg = _small_run('experiments/arc.py')
  cfg.data.update(max_tasks=3, num_aug=2, canvas=6, max_grid=6)
  metrics = train.train_and_evaluate(cfg, str(tmp_path))
  # More attempts never solve fewer tasks; a task's credit under the HRM rule (1 only when all
  # its test inputs are solved) is at most its fraction of solved inputs (TRM rule).
  for rule in ('all', 'frac'):
    p1, p2, p1000 = (metrics[f'arc/pass@{k}_{rule}'] for k in (1, 2, 1000))
    assert 0.0 <= p1 <= p2 <= p1000 <= 1.0, (rule, p1, p2, p1000)
  for k in (1, 2, 1000):
    assert metrics[f'arc/pass@{k}_all'] <= metrics[f'arc/pass@{k}_frac'], k
  assert metrics['arc/tasks'] == 3 and metrics['arc/missing_predictions'] == 0
  line = [x for x in capsys.readouterr().out.splitlines() if x.startswith('eval ')][-1]
  assert 'arc/pass@1_all=' in line and 'arc/pass@2_frac=' in line
  with open(os.path.join(tmp_path, 'eval', 'step_4', 'submission.json')) as f:
    submission = json.load(f)
  assert len(submission) == 3
  assert all(set(a) == {'attempt_1', 'attempt_2'} for t in submission.values() for a in t)


def test_registry_finds_every_task_module_and_refuses_others():
  assert tasks.names() == ['arc', 'maze', 'sudoku']
  for name in tasks.names():
    task = tasks.get(name)
    assert all(hasattr(task, attr) for attr in tasks.REQUIRED)
    # The task's data group is what its experiments start from.
    assert config_lib.base_config(name).data.to_dict() == task.data_config()
    assert task.data_config()['name'] == name
  assert tasks.shapes(config_lib.base_config('sudoku').data) == (11, 81, 1)
  assert tasks.shapes(config_lib.base_config('maze').data) == (6, 900, 1)
  assert tasks.shapes(config_lib.base_config('arc').data) == (12, 900, 1)
  with pytest.raises(config_lib.ConfigError, match="data.name: unknown task 'chess'"):
    tasks.get('chess')
