"""PNG figures of the analyses and of predictions (matplotlib on its own Agg canvas:
no display needed, pyplot's backend untouched).

Every function draws one figure, writes it to `path` and returns `path`. Token encodings:
Sudoku 1 = blank, 2..10 = digits 1..9 (`data/sudoku.py`); Maze `# SGo` = 1..5 (`data/maze.py`);
ARC PAD 0, EOS 1, colours 0..9 = 2..11 on a square canvas (`data/grids.py`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional, Sequence

import numpy as np
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hrm_jax.data import grids

# The ARC palette as the ARC-AGI testing interface draws colours 0..9.
ARC_COLOURS = (
  '#000000',  # 0 black
  '#0074D9',  # 1 blue
  '#FF4136',  # 2 red
  '#2ECC40',  # 3 green
  '#FFDC00',  # 4 yellow
  '#AAAAAA',  # 5 grey
  '#F012BE',  # 6 magenta
  '#FF851B',  # 7 orange
  '#7FDBFF',  # 8 azure
  '#870C25',  # 9 maroon
)
H_COLOUR, L_COLOUR, BASE_COLOUR = '#d62728', '#1f77b4', '#7f7f7f'
DPI = 100


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float], **kw):
  """(figure, axes) as `plt.subplots` makes them, on its own Agg canvas: pyplot and its global
  backend are never touched, so importing or drawing leaves a notebook's `plt.show()` alone."""
  fig = Figure(figsize=figsize)
  FigureCanvasAgg(fig)
  return fig, fig.subplots(nrows, ncols, **kw)


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=DPI, bbox_inches='tight')
  return path


def residuals(path: str, res: dict, title: str = 'Forward residuals') -> str:
  """Forward residuals ‖z^i − z^{i−1}‖ against the step index over an episode (the HRM paper's
  figure): the model's z_H and z_L, and beside it the recurrent baseline's z_L (when present).

  `res` is `analysis.forward_residuals`'s dict; dotted lines mark segment boundaries.
  """
  panels = [('model', 'Model: z_H and z_L')]
  if res.get('baseline') is not None:
    panels.append(('baseline', 'Recurrent baseline: f_L, no H update'))
  fig, axes = _subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
  top = max(float(np.max(r[1])) for p, _ in panels for r in res[p].values() if len(r[1]))
  for ax, (key, label) in zip(axes[0], panels):
    for name, colour in (('H', H_COLOUR), ('L', L_COLOUR)):
      steps, r = res[key][name]
      if len(steps):
        ax.plot(steps, r, '.-', color=colour, ms=3, lw=1, label=f'z_{name}')
    for m in range(1, res['M']):
      ax.axvline(m * res['K'] + 0.5, color='#cccccc', lw=0.6, ls=':')
    ax.set(title=label, xlabel='step', ylabel='‖z^i − z^{i−1}‖', ylim=(0, 1.05 * top))
    ax.legend(frameon=False)
  fig.suptitle(title)
  return _save(fig, path)


def participation(
  path: str, trained: dict, random: dict, paper: Optional[tuple[float, float]] = None
) -> str:
  """Participation ratios: bars of PR(z_H), PR(z_L) trained vs random init, and (when the dicts
  carry `curve_sizes`) PR against the number of puzzles. `paper` = (PR_H, PR_L) is drawn as
  reference marks; the dicts are `analysis.participation_ratios` outputs."""
  has_curve = bool(trained.get('curve_sizes'))
  fig, axes = _subplots(1, 2 if has_curve else 1, figsize=(10 if has_curve else 5, 3.6))
  axes = np.atleast_1d(axes)
  ax = axes[0]
  x = np.arange(2)
  for i, (d, name, hatch) in enumerate(((trained, 'trained', ''), (random, 'random init', '//'))):
    vals = [d['pr_h'], d['pr_l']]
    bars = ax.bar(
      x + (i - 0.5) * 0.38, vals, 0.36, color=[H_COLOUR, L_COLOUR], hatch=hatch, label=name
    )
    ax.bar_label(bars, fmt='%.1f', fontsize=8)
  if paper is not None:
    ax.scatter(x - 0.19, paper, marker='_', s=400, color='k', zorder=3, label='paper (trained)')
  ax.set_xticks(x, ['z_H', 'z_L'])
  ax.set(ylabel='participation ratio', title='PR of the states')
  ax.legend(frameon=False, fontsize=8)
  if has_curve:
    ax = axes[1]
    for d, ls, tag in ((trained, '-', 'trained'), (random, '--', 'random')):
      if d.get('curve_sizes'):
        ax.plot(d['curve_sizes'], d['curve_h'], ls, marker='o', color=H_COLOUR, label=f'z_H {tag}')
        ax.plot(d['curve_sizes'], d['curve_l'], ls, marker='o', color=L_COLOUR, label=f'z_L {tag}')
    ax.set(
      xscale='log',
      xlabel='puzzles included',
      ylabel='participation ratio',
      title='PR vs number of puzzles',
    )
    ax.legend(frameon=False, fontsize=8)
  return _save(fig, path)


def scaling(path: str, table: dict) -> str:
  """Inference-time scaling: exact (and blank) accuracy against M_max, evaluating all M_max
  segments and with Q halting; and the mean number of segments each uses. `table` is
  `analysis.scaling`'s {M: metrics}."""
  Ms = sorted(table)
  col = lambda k: [table[m][k] for m in Ms]  # noqa: E731
  fig, (a, b) = _subplots(1, 2, figsize=(10, 3.6))
  a.plot(Ms, col('exact_accuracy'), 'o-', color='k', label='exact, M_max segments')
  a.plot(Ms, col('qhalt_exact_accuracy'), 's--', color='#2ca02c', label='exact, Q halting')
  a.plot(Ms, col('blank_accuracy'), '^:', color=L_COLOUR, label='blank-cell accuracy')
  a.set(xscale='log', xlabel='M_max', ylabel='accuracy', title='Accuracy vs M_max', ylim=(0, 1))
  b.plot(Ms, col('steps'), 'o-', color='k', label='evaluation (= M_max)')
  b.plot(Ms, col('qhalt_steps'), 's--', color='#2ca02c', label='Q halting')
  b.set(xscale='log', yscale='log', xlabel='M_max', ylabel='mean segments', title='Compute used')
  for ax in (a, b):
    ax.set_xticks(Ms, [str(m) for m in Ms])
    ax.legend(frameon=False, fontsize=8)
  b.set_yticks(Ms, [str(m) for m in Ms])
  return _save(fig, path)


def sudoku_board(
  ax,
  inputs: np.ndarray,
  pred: np.ndarray,
  title: str,
  wrong: Optional[np.ndarray] = None,
  changed: Optional[np.ndarray] = None,
):
  """One 9×9 board on `ax`: givens black, predicted digits blue; cells in `wrong` [81] red on
  pink, other cells in `changed` [81] on yellow."""
  wrong = np.zeros(81, bool) if wrong is None else np.asarray(wrong)
  changed = np.zeros(81, bool) if changed is None else np.asarray(changed)
  ax.set_xlim(0, 9)
  ax.set_ylim(9, 0)
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title(title, fontsize=9)
  for i in range(10):
    lw = 1.6 if i % 3 == 0 else 0.4
    ax.axhline(i, color='k', lw=lw)
    ax.axvline(i, color='k', lw=lw)
  for c in range(81):
    r, k = divmod(c, 9)
    given = inputs[c] >= 2
    value = inputs[c] if given else pred[c]
    bad = not given and wrong[c]
    if bad or (not given and changed[c]):
      ax.add_patch(Rectangle((k, r), 1, 1, color='#ffc9c9' if bad else '#fff3a8'))
    colour = 'k' if given else ('#c00000' if bad else '#1f5fbf')
    text = str(int(value) - 1) if 2 <= value <= 10 else '·'
    ax.text(k + 0.5, r + 0.55, text, ha='center', va='center', color=colour, fontsize=7)


def _sudoku_grid(ax, inputs: np.ndarray, labels: np.ndarray, pred: np.ndarray, title: str):
  """`sudoku_board` with the cells that differ from `labels` wrong."""
  sudoku_board(ax, inputs, pred, title, wrong=pred != labels)


def sudoku_segments(
  path: str,
  inputs: np.ndarray,
  labels: np.ndarray,
  preds_MxL: np.ndarray,
  segments: Optional[Sequence[int]] = None,
) -> str:
  """A Sudoku filling in over segments: the answer decoded after each chosen segment (1-based,
  default all), givens black, predicted digits blue, wrong cells red; then the solution."""
  M = len(preds_MxL)
  segments = list(segments or range(1, M + 1))
  fig, axes = _subplots(1, len(segments) + 1, figsize=(1.9 * (len(segments) + 1), 2.3))
  for ax, m in zip(axes, segments):
    wrong = int(((preds_MxL[m - 1] != labels) & (inputs < 2)).sum())
    _sudoku_grid(ax, inputs, labels, preds_MxL[m - 1], f'segment {m}: {wrong} wrong')
  _sudoku_grid(axes[-1], inputs, labels, labels, 'solution')
  return _save(fig, path)


def _maze_image(tokens: np.ndarray, size: int) -> np.ndarray:
  # PAD, wall, free, S, G, path -> RGB
  palette = np.array(
    [[1, 1, 1], [0.15, 0.15, 0.15], [1, 1, 1], [0.1, 0.7, 0.2], [0.85, 0.1, 0.1], [0.3, 0.55, 1]]
  )
  return palette[np.clip(tokens, 0, 5)].reshape(size, size, 3)


def maze_board(ax, pred: np.ndarray, title: str, outline: Optional[np.ndarray] = None):
  """One maze of tokens `pred` [size²] on `ax` (path blue, S green, G red), the cells in
  `outline` [size²] outlined in red."""
  size = math.isqrt(len(pred))
  ax.imshow(_maze_image(np.asarray(pred), size), interpolation='nearest')
  ax.set(xticks=[], yticks=[])
  ax.set_title(title, fontsize=9)
  for c in np.flatnonzero(np.zeros(len(pred), bool) if outline is None else outline):
    r, k = divmod(int(c), size)
    ax.add_patch(Rectangle((k - 0.5, r - 0.5), 1, 1, fill=False, ec='red', lw=1.5))


def maze(path: str, inputs: np.ndarray, labels: np.ndarray, pred: np.ndarray) -> str:
  """A maze: the question, the label path and the predicted path (blue `o` cells; S green,
  G red), with the cells the prediction gets wrong outlined in red."""
  fig, axes = _subplots(1, 3, figsize=(9, 3.2))
  maze_board(axes[0], inputs, 'maze')
  maze_board(axes[1], labels, 'shortest path')
  maze_board(axes[2], pred, 'prediction', pred != labels)
  return _save(fig, path)


def segments_figure(
  path: str, draw_board, boards: Sequence[tuple], titles: Sequence[str], colours: Sequence[str]
) -> str:
  """One row of panels: `draw_board(ax, *board)` for each of `boards`, titled `titles[i]` in
  `colours[i]` (what `python -m hrm_jax.solve` shows as text, as a picture)."""
  n = len(boards)
  fig, axes = _subplots(1, n, figsize=(2.2 * n, 2.6), squeeze=False)
  for ax, board, title, colour in zip(axes[0], boards, titles, colours):
    draw_board(ax, *board)
    ax.set_title(title, fontsize=8, color=colour)
  return _save(fig, path)


def _arc_panel(ax, tokens: np.ndarray, canvas: int, title: str):
  grid = grids.crop(np.asarray(tokens).astype(np.int64), canvas)
  ax.set(xticks=[], yticks=[], title=f'{title} {grid.shape[0]}×{grid.shape[1]}')
  if grid.size:
    ax.imshow(grid, cmap=ListedColormap(ARC_COLOURS), vmin=0, vmax=9, interpolation='nearest')
    h, w = grid.shape
    ax.set_xticks(np.arange(-0.5, w), minor=True)
    ax.set_yticks(np.arange(-0.5, h), minor=True)
    ax.grid(which='minor', color='#555555', lw=0.5)
    ax.tick_params(which='minor', length=0)
  return grid


def arc(path: str, inputs: np.ndarray, labels: np.ndarray, pred: np.ndarray) -> str:
  """An ARC test pair: input, expected output and prediction grids (cropped from the canvas as
  the ARC evaluator crops them) in the standard ARC palette; the title says if it matches."""
  canvas = math.isqrt(len(inputs))
  fig, axes = _subplots(1, 3, figsize=(9, 3.2))
  _arc_panel(axes[0], inputs, canvas, 'input')
  want = _arc_panel(axes[1], np.where(labels < 0, 0, labels), canvas, 'output')
  got = _arc_panel(axes[2], pred, canvas, 'prediction')
  ok = want.shape == got.shape and bool((want == got).all())
  axes[2].set_title(axes[2].get_title() + (' ✓' if ok else ' ✗'), color='g' if ok else 'r')
  return _save(fig, path)


def read_metrics(metrics_path: str) -> dict[str, list[dict]]:
  """The records of a `metrics.jsonl`, grouped by split ('train', 'eval', 'meta')."""
  out: dict[str, list[dict]] = {}
  with epath.Path(metrics_path).open() as f:  # a local file or a bucket object
    for line in f:
      if line.strip():
        r = json.loads(line)
        out.setdefault(r.get('split', ''), []).append(r)
  return out


def training_curves(path: str, metrics_path: str) -> str:
  """Training curves from a workdir's metrics.jsonl: LM loss, then token / blank / exact
  accuracy, for the train records (interval means) and the eval records."""
  recs = read_metrics(metrics_path)
  fig, (a, b) = _subplots(1, 2, figsize=(10, 3.6))
  for split, ls in (('train', '-'), ('eval', 'o--')):
    rs = recs.get(split, [])
    if not rs:
      continue
    steps = [r['step'] for r in rs]
    a.plot(steps, [r['lm_loss'] for r in rs], ls, color='k', label=split)
    for key, colour in (
      ('accuracy', '#9467bd'),
      ('blank_accuracy', L_COLOUR),
      ('exact_accuracy', H_COLOUR),
    ):
      if key in rs[0]:
        b.plot(steps, [r[key] for r in rs], ls, color=colour, label=f'{key} ({split})')
  a.set(xlabel='step', ylabel='LM loss', title='Loss')
  b.set(xlabel='step', ylabel='accuracy', title='Accuracy', ylim=(0, 1))
  for ax in (a, b):
    ax.legend(frameon=False, fontsize=8)
  return _save(fig, path)
