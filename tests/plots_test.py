"""Every figure function writes a valid, non-trivial PNG from synthetic inputs."""

import json

import numpy as np
import pytest

from hrm_jax import tasks
from hrm_jax.analysis import plots
from hrm_jax.data import grids, maze_gen

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _check_png(path):
  data = open(path, 'rb').read()
  assert data[:8] == PNG_SIGNATURE
  assert len(data) > 5000, len(data)  # a drawn figure, not an empty canvas


def test_residuals(tmp_path):
  steps = np.arange(1, 25)
  series = {'H': (steps[2::3], 1.0 / steps[2::3]), 'L': (steps, np.exp(-0.1 * steps))}
  res = dict(model=series, baseline={'H': (steps[:0], steps[:0]), 'L': series['L']}, K=3, M=8)
  _check_png(plots.residuals(str(tmp_path / 'r.png'), res))


def test_participation_and_scaling(tmp_path):
  trained = dict(pr_h=12.0, pr_l=4.0, curve_sizes=[8, 16], curve_h=[6.0, 12.0], curve_l=[3, 4])
  random = dict(pr_h=5.0, pr_l=5.5, curve_sizes=[8, 16], curve_h=[4.0, 5.0], curve_l=[4, 5.5])
  _check_png(plots.participation(str(tmp_path / 'p.png'), trained, random, (89.95, 30.22)))
  table = {
    m: dict(
      exact_accuracy=0.1 * np.log2(2 * m),
      blank_accuracy=0.5,
      steps=float(m),
      qhalt_exact_accuracy=0.05 * np.log2(2 * m),
      qhalt_steps=min(m, 3.5),
    )
    for m in (1, 2, 4, 8)
  }
  _check_png(plots.scaling(str(tmp_path / 's.png'), table))


def test_task_pictures(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(2, 11, 81)
  inputs = np.where(rng.random(81) < 0.5, labels, 1)
  preds = np.stack([np.where(rng.random(81) < p, labels, 2) for p in (0.3, 0.6, 0.9)])
  _check_png(tasks.get('sudoku').draw(str(tmp_path / 'sudoku.png'), inputs, labels, preds))

  q = np.array(list('#####' + '#S  #' + '# # #' + '#  G#' + '#####'))
  a = q.copy()
  a[[11, 12, 13, 18]] = 'o'
  tok = lambda s: maze_gen.CODE_TO_TOKEN[np.frombuffer(''.join(s).encode(), np.uint8)]  # noqa: E731
  _check_png(tasks.get('maze').draw(str(tmp_path / 'maze.png'), tok(q), tok(a), tok(q)[None]))

  grid_in, grid_out = rng.integers(0, 10, (3, 4)), rng.integers(0, 10, (4, 4))
  x, y = grids.encode_grid(grid_in, canvas=10), grids.encode_grid(grid_out, canvas=10)
  path = tasks.get('arc').draw(str(tmp_path / 'arc.png'), x, y, np.stack([x, y]))
  _check_png(path)
  with pytest.raises(ValueError, match="unknown task 'chess'"):
    tasks.get('chess')


def test_training_curves(tmp_path):
  metrics = tmp_path / 'metrics.jsonl'
  with open(metrics, 'w') as f:
    f.write(json.dumps(dict(step=0, split='meta', num_params=10)) + '\n')
    for step in range(10, 110, 10):
      acc = dict(accuracy=step / 200, blank_accuracy=step / 300, exact_accuracy=0.0)
      f.write(json.dumps(dict(step=step, split='train', lm_loss=1 / step, **acc)) + '\n')
      if step % 50 == 0:
        f.write(json.dumps(dict(step=step, split='eval', lm_loss=2 / step, **acc)) + '\n')
  _check_png(plots.training_curves(str(tmp_path / 'curves.png'), str(metrics)))
