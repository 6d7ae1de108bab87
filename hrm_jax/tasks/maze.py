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
