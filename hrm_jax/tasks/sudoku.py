"""Sudoku-Extreme (spec §6.3): 9×9 grids, 81 tokens, exact match per puzzle.

Data from the published CSVs (`data.source=csv`) or generated offline (`generate`, the
default of the base config); see `hrm_jax/data/sudoku.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hrm_jax.data import sudoku as data
from hrm_jax.data import sudoku_gen

PAPER_PR = (89.95, 30.22)  # HRM paper §4, trained on Sudoku-Extreme: PR(z_H), PR(z_L)


def data_config() -> dict:
  """The `data` group: generated puzzles (no network); the paper presets switch to csv."""
  return dict(
    name='sudoku',
    path='',  # an existing dataset folder; overrides everything below
    # 'npy' (the reference format) | 'tfds': read the TFDS dataset tfds_name ('': the one whose
    # fields equal these), built on first use into tfds_data_dir ('': <workdir>/tfds).
    format='npy',
    tfds_name='',
    tfds_data_dir='',
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
    # Difficulty: keep only puzzles on which the generator's solver meets at least this many dead
    # ends (0: any; 1: puzzles that need search, see docs/data.md).
    train_min_dead_ends=0,
    test_min_dead_ends=0,
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


# ---------------------------------------------------------------------------------------------
# `python -m hrm_jax.solve`: puzzles as text, checked by the rules


def parse_puzzle(text: str) -> np.ndarray:
  """Tokens int32 [81] of a Sudoku written as 81 digits, row by row, 0 or '.' for a blank
  (whitespace and '|', '-', '+' separators ignored). ValueError for another length, another
  character, or impossible givens: a digit twice in a row, column or box (named), or no
  solution at all (`sudoku_gen.count_solutions`)."""
  chars = [c for c in text if not c.isspace() and c not in '|-+']
  if len(chars) != 81:
    raise ValueError(f'a Sudoku has 81 cells, got {len(chars)} (digits 1-9, 0 or . for blanks)')
  bad = sorted({c for c in chars if c not in '.0123456789'})
  if bad:
    raise ValueError(f'a Sudoku cell is 1-9, 0 or ., got {bad}')
  values = np.array([0 if c == '.' else int(c) for c in chars], np.int32)
  for name, unit in zip(data.UNIT_NAMES, data.units(values)[0]):
    given = unit[unit > 0]
    if len(given) != len(set(given.tolist())):
      raise ValueError(f'impossible givens: {name} repeats a digit')
  if sudoku_gen.count_solutions(values, limit=1) == 0:
    raise ValueError('impossible givens: the puzzle has no solution')
  return values + 1


def is_solution(inputs: np.ndarray, answer: np.ndarray) -> bool:
  """Whether token grid `answer` [81] solves puzzle `inputs` [81] by the rules: every row,
  column and box holds 1..9 once, and every given is kept. No label is consulted."""
  inputs, answer = np.asarray(inputs), np.asarray(answer)
  digits = answer - 1
  if digits.min() < 1 or digits.max() > 9:
    return False
  kept = (inputs <= 1) | (inputs == answer)
  return bool(kept.all() and data.is_valid_solution(digits)[0])


def rule_breaks(tokens: np.ndarray) -> np.ndarray:
  """bool [81]: cells of token grid `tokens` [81] that break a rule: not a digit 1-9, or a digit
  that its row, column or box holds twice."""
  digits = np.asarray(tokens).reshape(81) - 1
  cells = data.units(np.arange(81))[0]  # [27, 9] cell indices of each unit
  bad = (digits < 1) | (digits > 9)
  for unit in cells:
    values = digits[unit]
    bad[unit] |= (values[:, None] == values[None, :]).sum(1) > 1
  return bad


def draw_board(ax, inputs: np.ndarray, pred: np.ndarray, changed: np.ndarray) -> None:
  """`pred` [81] as a board on matplotlib `ax` for `solve.figure`: givens black, digits that
  break a rule (`rule_breaks`) red, other changed cells yellow, blanks '·'."""
  from hrm_jax.analysis import plots

  wrong = rule_breaks(pred) & (np.asarray(pred) > 1)
  plots.sudoku_board(ax, inputs, pred, '', wrong=wrong, changed=changed)


def text_grid(tokens: np.ndarray, inputs: np.ndarray, changed: np.ndarray, colour: bool) -> str:
  """The grid of tokens [81] as 11 lines with box separators, a blank as '.'. Each cell is two
  characters: the digit and a mark, '*' when the cell is in `changed` [81]; with `colour` the
  givens (non-blank `inputs`) are bold and changed cells yellow as well."""
  lines = []
  for r in range(9):
    if r and r % 3 == 0:
      lines.append('------+-------+------')
    cells = []
    for c in range(9):
      i = 9 * r + c
      t = int(tokens[i])
      ch = str(t - 1) if 2 <= t <= 10 else '.'
      if colour and inputs[i] > 1:
        ch = f'\033[1m{ch}\033[0m'
      elif colour and changed[i]:
        ch = f'\033[33m{ch}\033[0m'
      cells.append(ch + ('*' if changed[i] else ' '))
      if c in (2, 5):
        cells.append('| ')
    lines.append(''.join(cells).rstrip())
  return '\n'.join(lines)
