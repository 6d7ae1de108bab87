"""Sudoku-Extreme (spec §6.3): 9×9 grids, 81 tokens, exact match per puzzle.

Data from the published CSVs (`data.source=csv`) or generated offline (`generate`, the
default of the base config); see `hrm_jax/data/sudoku.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hrm_jax.data import sudoku as data

PAPER_PR = (89.95, 30.22)  # HRM paper §4, trained on Sudoku-Extreme: PR(z_H), PR(z_L)


def data_config() -> dict:
  """The `data` group: generated puzzles (no network); the paper presets switch to csv."""
  return dict(
    name='sudoku',
    path='',  # an existing dataset folder; overrides everything below
    source='generate',  # generate (offline) | csv (published puzzles, local or downloaded)
    csv_dir='',  # folder with train.csv/test.csv; empty: download hf_repo
    hf_repo=data.HF_REPO,
    subsample_size=1000,
    min_difficulty=0,
    num_aug=1000,
    seed=0,
    # source=generate:
    num_train=1000,
    num_test=1000,
    train_min_blanks=35,
    train_max_blanks=60,
    test_min_blanks=35,
    test_max_blanks=60,
  )


def prepare(data_cfg: Any, workdir: str) -> str:
  """The dataset folder of `data_cfg` under `<workdir>/data`, built once (`data.sudoku`)."""
  return data.prepare(data_cfg, workdir)


def shapes(data_cfg: Any) -> tuple[int, int]:
  """(vocab_size 11, seq_len 81)."""
  del data_cfg
  meta = data.metadata(num_groups=1, num_puzzles=1)
  return meta.vocab_size, meta.seq_len


def evaluator(cfg: Any, data_dir: str) -> None:
  """None: exact and token accuracy are Sudoku's whole evaluation."""
  del cfg, data_dir


def draw(path: str, inputs: np.ndarray, labels: np.ndarray, preds_MxL: np.ndarray) -> str:
  """The puzzle filling in over segments (at most five of the M): `plots.sudoku_segments`."""
  from hrm_jax.analysis import plots  # matplotlib only where pictures are drawn

  M = len(preds_MxL)
  segments = sorted({1, 2, 3, M // 2, M} - {0}) if M > 5 else None
  return plots.sudoku_segments(path, inputs, np.asarray(labels), preds_MxL, segments)
