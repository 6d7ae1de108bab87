"""Maze-Hard (spec §6.4): square mazes of `# SGo` tokens, scored by exact match and by
`valid_optimal` (any valid shortest start-goal path, `evaluators.maze`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hrm_jax.data import maze as data
from hrm_jax.data import maze_gen
from hrm_jax.evaluators.maze import MazeEvaluator

PAPER_PR = None


def data_config() -> dict:
  """The `data` group: the published 30×30 hard mazes, or generated ones offline."""
  return dict(
    name='maze',
    path='',  # an existing dataset folder; overrides everything below
    # 'npy' (the reference format) | 'tfds': read the TFDS dataset tfds_name ('': the one whose
    # fields equal these), built on first use into tfds_data_dir ('': <workdir>/tfds).
    format='npy',
    tfds_name='',
    tfds_data_dir='',
    source='csv',  # csv (published mazes, local or downloaded) | generate (offline)
    csv_dir='',  # folder with train.csv/test.csv; empty: download hf_repo
    hf_repo=data.HF_REPO,
    subsample_size=0,  # 0: all training mazes
    aug=False,  # 8 dihedral transforms of each training maze (one group)
    seed=0,
    # source=generate:
    num_train=1000,
    num_test=1000,
    maze_size=30,
    min_path_len=110,  # shortest start-goal path must be longer (moves), as the paper
  )


def prepare(data_cfg: Any, workdir: str) -> str:
  """The dataset folder of `data_cfg` under `<workdir>/data`, built once (`data.maze`)."""
  return data.prepare(data_cfg, workdir)


def shapes(data_cfg: Any) -> tuple[int, int]:
  """(vocab_size 6, maze_size²)."""
  return maze_gen.VOCAB_SIZE, data_cfg.maze_size**2


def evaluator(cfg: Any, data_dir: str) -> MazeEvaluator:
  """`valid_optimal` of the final segment's paths."""
  del cfg, data_dir
  return MazeEvaluator()


def draw(path: str, inputs: np.ndarray, labels: np.ndarray, preds_MxL: np.ndarray) -> str:
  """The maze, its label path and the last segment's path: `plots.maze`."""
  from hrm_jax.analysis import plots

  return plots.maze(path, inputs, np.asarray(labels), preds_MxL[-1])


# ---------------------------------------------------------------------------------------------
# `python -m hrm_jax.solve`: mazes as text, checked by the rules


def parse_puzzle(text: str) -> np.ndarray:
  """Tokens int32 [size²] of a square maze written as `size` lines of `#` (wall), ' ' (free),
  `S` and `G` (blank lines dropped; a line shorter than the others is padded with free cells
  only if it lost trailing spaces). ValueError for a non-square maze, another character, or not
  exactly one S and one G."""
  rows = [line.rstrip('\n') for line in text.splitlines() if line.strip()]
  size = len(rows)
  if size < 2 or any(len(r.rstrip()) > size for r in rows):
    raise ValueError(f'a maze is a square of # (wall), space, S and G; got {size} lines')
  grid = ''.join(r.ljust(size) for r in rows)
  bad = sorted(set(grid) - set('# SG'))
  if bad:
    raise ValueError(f"a maze cell is '#', ' ', 'S' or 'G', got {bad}")
  if grid.count('S') != 1 or grid.count('G') != 1:
    raise ValueError(f'a maze has one S and one G, got {grid.count("S")} and {grid.count("G")}')
  return maze_gen.CODE_TO_TOKEN[np.frombuffer(grid.encode(), np.uint8)].astype(np.int32)


def is_solution(inputs: np.ndarray, answer: np.ndarray) -> bool:
  """Whether `answer` [size²] marks a valid shortest S-G path in maze `inputs` and changes
  nothing else (`maze_gen.valid_optimal`). No label is consulted."""
  return bool(maze_gen.valid_optimal(np.asarray(inputs)[None], np.asarray(answer)[None])[0])


def draw_board(ax, inputs: np.ndarray, pred: np.ndarray, changed: np.ndarray) -> None:
  """`pred` [size²] as a maze on matplotlib `ax` for `solve.figure`, changed cells outlined."""
  from hrm_jax.analysis import plots

  del inputs
  plots.maze_board(ax, pred, '', changed)


def text_grid(tokens: np.ndarray, inputs: np.ndarray, changed: np.ndarray, colour: bool) -> str:
  """The maze of tokens [size²] as `size` lines of `# SGo`. A cell in `changed` that is now on
  the path is shown 'O', any other changed cell 'x' (in yellow with `colour`; the path in blue)."""
  del inputs
  size = int(np.sqrt(len(tokens)))
  out = []
  for i, t in enumerate(np.asarray(tokens)):
    ch = maze_gen.CHARSET[t - 1] if 1 <= t <= len(maze_gen.CHARSET) else '?'
    if changed[i]:
      ch = 'O' if ch == 'o' else 'x'
    if colour and changed[i]:
      ch = f'\033[33m{ch}\033[0m'
    elif colour and ch == 'o':
      ch = f'\033[34m{ch}\033[0m'
    out.append(ch)
  return '\n'.join(''.join(out[r * size : (r + 1) * size]) for r in range(size))
