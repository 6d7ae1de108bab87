"""Every figure function writes a valid PNG that shows what it should: read back, its pixels hold
the figure's colours (ARC palette, path, wrong cells, series) and differ where the inputs do."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import colors, image

from hrm_jax import tasks
from hrm_jax.analysis import plots
from hrm_jax.data import grids, maze_gen

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _check_png(path):
  data = open(path, 'rb').read()
  assert data[:8] == PNG_SIGNATURE
  assert len(data) > 5000, len(data)  # a drawn figure, not an empty canvas
  return path


def _rgb(path) -> np.ndarray:
  """The PNG's pixels as uint8 RGB [H, W, 3]."""
  return np.round(image.imread(_check_png(path))[..., :3] * 255).astype(np.uint8)


def _pixels(rgb: np.ndarray, colour, tol: int = 2) -> int:
  """How many pixels of `rgb` have `colour` (a matplotlib colour or RGB floats), ±tol per byte."""
  want = np.round(np.asarray(colors.to_rgb(colour)) * 255)
  return int(np.all(np.abs(rgb.astype(int) - want) <= tol, axis=-1).sum())


def test_residuals(tmp_path):
  steps = np.arange(1, 25)
  series = {'H': (steps[2::3], 1.0 / steps[2::3]), 'L': (steps, np.exp(-0.1 * steps))}
  res = dict(model=series, baseline={'H': (steps[:0], steps[:0]), 'L': series['L']}, K=3, M=8)
  both = _rgb(plots.residuals(str(tmp_path / 'r.png'), res))
  alone = _rgb(plots.residuals(str(tmp_path / 'r1.png'), dict(res, baseline=None)))
  # z_H red, z_L blue in the model panel; the baseline adds a panel of the same width, z_L only.
  for rgb in (both, alone):
    assert _pixels(rgb, plots.H_COLOUR) > 20 and _pixels(rgb, plots.L_COLOUR) > 20
  assert 1.7 < both.shape[1] / alone.shape[1] < 2.3, (both.shape, alone.shape)
  assert _pixels(both, plots.L_COLOUR) > 1.5 * _pixels(alone, plots.L_COLOUR)
  assert _pixels(both, plots.H_COLOUR) < 1.2 * _pixels(alone, plots.H_COLOUR)


def test_participation_and_scaling(tmp_path):
  trained = dict(pr_h=12.0, pr_l=4.0, curve_sizes=[8, 16], curve_h=[6.0, 12.0], curve_l=[3, 4])
  random = dict(pr_h=5.0, pr_l=5.5, curve_sizes=[8, 16], curve_h=[4.0, 5.0], curve_l=[4, 5.5])
  rgb = _rgb(plots.participation(str(tmp_path / 'p.png'), trained, random, (89.95, 30.22)))
  # Bars: z_H red, z_L blue; the trained z_H bar (12) is the tallest, so red outweighs blue.
  h, l = _pixels(rgb, plots.H_COLOUR), _pixels(rgb, plots.L_COLOUR)
  assert h > 200 and l > 200 and h > l, (h, l)
  no_curve = dict(trained, curve_sizes=[])
  narrow = _rgb(plots.participation(str(tmp_path / 'p1.png'), no_curve, random))
  assert narrow.shape[1] < 0.7 * rgb.shape[1]  # one panel instead of two
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
  rgb = _rgb(plots.scaling(str(tmp_path / 's.png'), table))
  for colour in ('#2ca02c', plots.L_COLOUR):  # Q halting (green), blank accuracy (blue)
    assert _pixels(rgb, colour) > 20, colour


def _sudoku(tmp_path, name, inputs, labels, preds):
  return _rgb(tasks.get('sudoku').draw(str(tmp_path / name), inputs, labels, preds))


def test_task_pictures(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(2, 11, 81)
  inputs = np.where(rng.random(81) < 0.5, labels, 1)
  preds = np.stack([np.where(rng.random(81) < p, labels, 2) for p in (0.3, 0.6, 0.9)])
  wrong = _sudoku(tmp_path, 'sudoku.png', inputs, labels, preds)
  right = _sudoku(tmp_path, 'sudoku_right.png', inputs, labels, np.stack([labels] * 3))
  # Wrong cells are pink: a right prediction has none.
  assert _pixels(right, '#ffc9c9') == 0
  assert _pixels(wrong, '#ffc9c9') > 100 * ((preds != labels) & (inputs < 2)).sum()  # ~190 each
  assert _pixels(wrong, '#1f5fbf') > 0 and _pixels(right, '#1f5fbf') > 0  # predicted digits

  q = np.array(list('#####' + '#S  #' + '# # #' + '#  G#' + '#####'))
  a = q.copy()
  a[[11, 12, 13, 18]] = 'o'
  tok = lambda s: maze_gen.CODE_TO_TOKEN[np.frombuffer(''.join(s).encode(), np.uint8)]  # noqa: E731
  maze = lambda name, pred: _rgb(  # noqa: E731
    tasks.get('maze').draw(str(tmp_path / name), tok(q), tok(a), pred[None])
  )
  missed, found = maze('maze.png', tok(q)), maze('maze_right.png', tok(a))
  path, start, goal = (0.3, 0.55, 1), (0.1, 0.7, 0.2), (0.85, 0.1, 0.1)
  # The label panel shows the path; a right prediction shows it a second time, a missed one no.
  assert _pixels(missed, path) > 100
  assert _pixels(found, path) > 1.8 * _pixels(missed, path)
  for colour in (start, goal):  # S and G in all three panels
    assert _pixels(found, colour) > 100 and _pixels(missed, colour) > 100
  assert _pixels(missed, 'red') > _pixels(found, 'red')  # the missed cells are outlined

  # ARC: input colours 1, 2 and output colours 3, 4 appear as palette cells; no other colour.
  grid_in = np.array([[1, 2, 1, 2], [2, 1, 2, 1], [1, 1, 2, 2]])
  grid_out = np.array([[3, 4, 3, 4], [4, 3, 4, 3], [3, 3, 4, 4], [4, 4, 3, 3]])
  x, y = grids.encode_grid(grid_in, canvas=10), grids.encode_grid(grid_out, canvas=10)
  path = tasks.get('arc').draw(str(tmp_path / 'arc.png'), x, y, np.stack([x, y]))
  rgb = _rgb(path)
  cells = {c: _pixels(rgb, plots.ARC_COLOURS[c], tol=1) for c in range(10)}
  assert cells[1] > 3000 and cells[2] > 3000, cells  # the input panel (~15k each)
  assert cells[3] > 10000 and cells[4] > 10000, cells  # output and prediction (~40k)
  assert all(cells[c] == 0 for c in (6, 7, 8, 9)), cells
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
  rgb = _rgb(plots.training_curves(str(tmp_path / 'curves.png'), str(metrics)))
  # Token (purple), blank (blue) and exact (red) accuracy curves.
  for colour in ('#9467bd', plots.L_COLOUR, plots.H_COLOUR):
    assert _pixels(rgb, colour) > 20, colour


def test_backend_untouched(tmp_path):
  """Importing the drawing modules and drawing leaves pyplot's backend as the user set it (a
  notebook's `plt.show()` keeps working) and never imports pyplot."""
  code = f"""
import sys
import matplotlib
matplotlib.use('svg')
import numpy as np
from hrm_jax import evaluate, solve, tasks
from hrm_jax.analysis import plots
from hrm_jax.tasks import arc, maze, sudoku
labels = np.arange(81) % 9 + 2
tasks.get('sudoku').draw({str(tmp_path / 's.png')!r}, labels, labels, labels[None])
assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()
assert 'matplotlib.pyplot' not in sys.modules
print('ok')
"""
  env = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
  assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-2000:]
  _check_png(tmp_path / 's.png')
