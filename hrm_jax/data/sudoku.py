"""Sudoku datasets (spec §6.3): Sudoku-Extreme from CSV, an offline generator, and `prepare`.

Encoding (§6.3): cell value v (0 = blank, 1..9) -> token v + 1, so 1 = blank, 2..10 = digits and
0 = PAD (unused); vocab 11, seq_len 81; labels are the full solution (loss on all 81 cells); one
shared puzzle id 0. A group is a base puzzle with its augmented variants, one example each.

The generated source exists so that training runs with no download: the generator in
``sudoku_gen.py`` (with its bitmask solver) digs holes in random complete grids while the solver
proves the solution stays unique. Its puzzles are much easier than Sudoku-Extreme's (most need no
guessing), so it is a smoke-test and ablation dataset, not a substitute for the paper's benchmark.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import numpy as np

from hrm_jax.config import ConfigError
from hrm_jax.data import build
from hrm_jax.data.format import (
  DatasetError,
  Metadata,
)
from hrm_jax.data.sudoku_gen import MAX_BLANKS, generate_puzzles

HF_REPO = 'sapientinc/sudoku-extreme'
GENERATOR_VERSION = 1  # bump when generated datasets change, so `prepare` rebuilds cached ones
_CSV_CHUNK = 1 << 16
_AUG_CHUNK = 1 << 16


def metadata(num_groups: int, num_puzzles: int) -> Metadata:
  """The §6.1 metadata of a Sudoku split (§6.3 table row)."""
  return Metadata(
    pad_id=0,
    ignore_label_id=0,
    blank_identifier_id=0,
    vocab_size=11,
    seq_len=81,
    num_puzzle_identifiers=1,
    total_groups=num_groups,
    mean_puzzle_examples=1.0,
    sets=['all'],
    total_puzzles=num_puzzles,
  )


UNIT_NAMES = tuple(f'{kind} {i}' for kind in ('row', 'column', 'box') for i in range(1, 10))


def units(grids: np.ndarray) -> np.ndarray:
  """[n, 27, 9]: the cells of each [81] (or [9, 9]) grid by unit: rows 1-9, columns 1-9, boxes
  1-9 (row-major), named by UNIT_NAMES."""
  g = np.asarray(grids).reshape(-1, 9, 9)
  boxes = g.reshape(-1, 3, 3, 3, 3).transpose(0, 1, 3, 2, 4).reshape(-1, 9, 9)
  return np.concatenate([g, g.transpose(0, 2, 1), boxes], axis=1)


def is_valid_solution(grids: np.ndarray) -> np.ndarray:
  """bool [n]: each [81] (or [9, 9]) grid has every row, column and box a permutation of 1..9."""
  return (np.sort(units(grids), axis=2) == np.arange(1, 10)).all(axis=(1, 2))


# ---------------------------------------------------------------------------------------------
# Augmentation (§6.3)


def augment_many(
  boards: np.ndarray, solutions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Applies an independent random Sudoku symmetry to each of n pairs (§6.3).

  boards, solutions: [n, 9, 9] or [n, 81] values 0..9 (0 = blank); returns the same shapes. Per
  pair: a digit permutation of 1..9 (0 fixed), a transpose w.p. 0.5, a row permutation (bands
  permuted, rows permuted within each band) and likewise for columns, applied as: optional
  transpose, then cell (i, j) <- old(row_perm[i], col_perm[j]), then the digit map. Each keeps a
  puzzle valid, its solution unique and its blank count unchanged.
  """
  shape, n = np.shape(boards), len(boards)
  digit_map = np.zeros((n, 10), np.int64)
  digit_map[:, 1:] = rng.permuted(np.tile(np.arange(1, 10), (n, 1)), axis=1)
  flip = rng.random(n) < 0.5

  def line_perm() -> np.ndarray:  # [n, 9]: permuted blocks of 3, permuted lines within each
    blocks = rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1)
    within = rng.permuted(np.tile(np.arange(3), (n, 3, 1)), axis=2)
    return (blocks[:, :, None] * 3 + within).reshape(n, 9)

  row_perm, col_perm = line_perm(), line_perm()

  def apply(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x).reshape(n, 9, 9)
    x = np.where(flip[:, None, None], x.transpose(0, 2, 1), x)
    x = np.take_along_axis(x, row_perm[:, :, None], axis=1)
    x = np.take_along_axis(x, col_perm[:, None, :], axis=2)
    return np.take_along_axis(digit_map, x.reshape(n, 81).astype(np.int64), axis=1)

  dtype = np.asarray(boards).dtype
  return (apply(boards).astype(dtype).reshape(shape), apply(solutions).astype(dtype).reshape(shape))


def augment(
  board: np.ndarray, solution: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """One random symmetry (as in ``augment_many``) of a [9, 9] board and its solution."""
  b, s = augment_many(np.asarray(board)[None], np.asarray(solution)[None], rng)
  return b[0], s[0]


# ---------------------------------------------------------------------------------------------
# CSV source (Hugging Face sapientinc/sudoku-extreme)


def _codes(strings: list[str]) -> np.ndarray:
  """[n, 81] uint32 code points of n strings that are already known to be 81 characters."""
  return np.array(strings, dtype='<U81').view(np.uint32).reshape(len(strings), 81)


def _parse_chunk(
  path: str, lines: list[int], qs: list[str], ans: list[str]
) -> tuple[np.ndarray, np.ndarray]:
  """Validates and decodes one chunk of rows into ([n, 81], [n, 81]) int8 values 0..9."""
  q, a = _codes(qs), _codes(ans)
  q_ok = (q == ord('.')) | ((q >= ord('0')) & (q <= ord('9')))
  a_ok = (a >= ord('1')) & (a <= ord('9'))
  for name, codes, ok in (('question', q, q_ok), ('answer', a, a_ok)):
    if not ok.all():
      row, col = np.argwhere(~ok)[0]
      raise DatasetError(
        f'{path}:{lines[row]}: invalid character {chr(codes[row, col])!r} at '
        f'position {col + 1} of the {name}'
      )
  q = np.where(q == ord('.'), 0, q - ord('0')).astype(np.int8)
  a = (a - ord('0')).astype(np.int8)
  bad = ~is_valid_solution(a) | ((q != 0) & (q != a)).any(axis=1)
  if bad.any():
    row = int(np.argmax(bad))
    what = (
      'is not a valid complete Sudoku'
      if not is_valid_solution(a[row])[0]
      else 'disagrees with a given clue of the question'
    )
    raise DatasetError(f'{path}:{lines[row]}: answer {what}')
  return q, a


def parse_csv(
  path: str, min_difficulty: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Reads a Sudoku-Extreme CSV (header ``source,question,answer,rating``; §6.3).

  Returns (questions [n, 81] int8 values 0..9 with 0 = blank, answers [n, 81] int8 values 1..9,
  ratings [n] int64) for the rows with rating >= min_difficulty (all rows if None), in file order.
  Every row is checked; problems raise DatasetError naming the file and 1-based line.
  """
  parts, ratings = [(np.zeros((0, 81), np.int8), np.zeros((0, 81), np.int8))], []
  lines, qs, ans = [], [], []
  for line, (_, q, a, rating) in build.csv_rows(path):
    for name, s in (('question', q), ('answer', a)):
      if len(s) != 81:
        raise DatasetError(f'{path}:{line}: {name} has {len(s)} characters, expected 81')
    try:
      rating = int(rating)
    except ValueError:
      raise DatasetError(f'{path}:{line}: rating {rating!r} is not an integer') from None
    lines.append(line)
    qs.append(q)
    ans.append(a)
    ratings.append(rating)
    if len(lines) == _CSV_CHUNK:  # bounded memory for the 3.8M-row train file
      parts.append(_parse_chunk(path, lines, qs, ans))
      lines, qs, ans = [], [], []
  if lines:
    parts.append(_parse_chunk(path, lines, qs, ans))
  questions, answers = (np.concatenate(p) for p in zip(*parts))
  ratings = np.asarray(ratings, np.int64)
  keep = ratings >= min_difficulty if min_difficulty is not None else slice(None)
  return questions[keep], answers[keep], ratings[keep]


def _with_variants(
  q: np.ndarray, a: np.ndarray, num_aug: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """[n·(1 + num_aug), 81] group-major: each base pair followed by its num_aug variants."""
  q = np.repeat(q.reshape(-1, 81), 1 + num_aug, axis=0)
  a = np.repeat(a.reshape(-1, 81), 1 + num_aug, axis=0)
  rows = np.flatnonzero(np.arange(len(q)) % (1 + num_aug) != 0)  # variant 0 is the original
  for start in range(0, len(rows), _AUG_CHUNK):  # bounds the int64 temporaries
    r = rows[start : start + _AUG_CHUNK]
    q[r], a[r] = augment_many(q[r], a[r], rng)
  return q, a


def _write_dataset(
  out_dir: str,
  train: tuple[np.ndarray, np.ndarray],
  variants: int,
  test: tuple[np.ndarray, np.ndarray],
  overwrite: bool,
  extra_files: dict[str, Any],
) -> None:
  """Writes values 0..9 as tokens 1..10: train in groups of ``variants``, test one per group."""
  (train_q, train_a), (test_q, test_a) = train, test
  build.write_single_example_puzzles(
    out_dir,
    {'train': (train_q + 1, train_a + 1, variants), 'test': (test_q + 1, test_a + 1, 1)},
    metadata,
    overwrite,
    extra_files,
  )


def build_from_csv(
  out_dir: str,
  csv_dir: Optional[str] = None,
  hf_repo: str = HF_REPO,
  subsample_size: Optional[int] = None,
  min_difficulty: Optional[int] = None,
  num_aug: int = 0,
  seed: int = 0,
  overwrite: bool = False,
) -> str:
  """Builds Sudoku-Extreme in the §6.1 format at ``out_dir`` (atomically) and returns it (§6.3).

  Reads ``train.csv``/``test.csv`` from ``csv_dir``, or downloads them from ``hf_repo``. Both
  splits keep rows with rating >= min_difficulty; train is subsampled to ``subsample_size`` and
  each kept puzzle gets ``num_aug`` augmented variants (a group of 1 + num_aug puzzles); test is
  not augmented.
  """
  paths = build.csv_paths(csv_dir, hf_repo)
  train_q, train_a, _ = parse_csv(paths['train'], min_difficulty)
  test_q, test_a, _ = parse_csv(paths['test'], min_difficulty)
  sub_rng, aug_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
  if subsample_size is not None and subsample_size < len(train_q):
    # The reference draws this subset without a seed, so its "1k" set differs per build (§6.3).
    keep = sub_rng.choice(len(train_q), size=subsample_size, replace=False)
    train_q, train_a = train_q[keep], train_a[keep]
  params = {
    'csv': {s: os.path.abspath(p) for s, p in paths.items()},
    'hf_repo': hf_repo,
    'subsample_size': subsample_size,
    'min_difficulty': min_difficulty,
    'num_aug': num_aug,
    'seed': seed,
  }
  _write_dataset(
    out_dir,
    _with_variants(train_q, train_a, num_aug, aug_rng),
    1 + num_aug,
    (test_q, test_a),
    overwrite,
    {'build.json': params},
  )
  return out_dir


# ---------------------------------------------------------------------------------------------
# Generated source (puzzles from sudoku_gen)


def build_generated(
  out_dir: str,
  num_train: int,
  num_test: int,
  num_aug: int,
  train_min_blanks: int,
  train_max_blanks: int,
  test_min_blanks: int,
  test_max_blanks: int,
  seed: int,
  num_workers: Optional[int] = None,
  overwrite: bool = False,
  train_min_dead_ends: int = 0,
  test_min_dead_ends: int = 0,
) -> str:
  """Builds a generated Sudoku dataset in the §6.1 format at ``out_dir`` (atomically).

  Each split's puzzles have blanks in [<split>_min_blanks, <split>_max_blanks] and at least
  <split>_min_dead_ends dead ends of the solver (``sudoku_gen.generate_puzzles``: 0 admits every
  puzzle, most of which need no search; 1 keeps only puzzles that do).
  Train and test base puzzles come from independent streams of ``seed``; test puzzles whose
  question equals any train question (variants included) are dropped, so test is held out.
  Train gets ``num_aug`` symmetry variants per base puzzle (one group each); test is not
  augmented. Also writes ``identifiers.json`` and ``generator.json`` (parameters, blank-count and
  rating summaries). Returns ``out_dir``.
  """
  started = time.time()
  train_ss, test_ss, aug_ss = np.random.SeedSequence(seed).spawn(3)
  train_q, train_a, train_r = generate_puzzles(
    num_train,
    np.random.default_rng(train_ss),
    train_min_blanks,
    train_max_blanks,
    num_workers,
    train_min_dead_ends,
  )
  test_q, test_a, test_r = generate_puzzles(
    num_test,
    np.random.default_rng(test_ss),
    test_min_blanks,
    test_max_blanks,
    num_workers,
    test_min_dead_ends,
  )
  train = _with_variants(train_q, train_a, num_aug, np.random.default_rng(aug_ss))
  fresh = build.unseen(train[0], test_q)
  test_q, test_a, test_r = test_q[fresh], test_a[fresh], test_r[fresh]
  params = {
    'num_train': num_train,
    'num_test': num_test,
    'num_aug': num_aug,
    'train_min_blanks': train_min_blanks,
    'train_max_blanks': train_max_blanks,
    'test_min_blanks': test_min_blanks,
    'test_max_blanks': test_max_blanks,
    'train_min_dead_ends': train_min_dead_ends,
    'test_min_dead_ends': test_min_dead_ends,
    'seed': seed,
  }
  info = build.generator_info(GENERATOR_VERSION, params, started, fresh)
  for split, q, r in (('train', train_q, train_r), ('test', test_q, test_r)):
    info[split] = {
      'base_puzzles': len(q),
      'blanks': build.summary((q == 0).sum(axis=1)),
      'rating': build.summary(r),
    }
  _write_dataset(out_dir, train, 1 + num_aug, (test_q, test_a), overwrite, {'generator.json': info})
  return out_dir


# ---------------------------------------------------------------------------------------------
# Config -> dataset folder


def _blank_range(split: str) -> tuple[build.Field, build.Field]:
  """The ``<split>_min_blanks``/``<split>_max_blanks`` fields; ConfigError if min > max."""

  def check(values: dict[str, Any]) -> None:
    lo, hi = values[f'{split}_min_blanks'], values[f'{split}_max_blanks']
    if lo > hi:
      raise ConfigError(f'data.{split}_min_blanks ({lo}) must be <= data.{split}_max_blanks ({hi})')

  return (
    build.Field(f'{split}_min_blanks', int, lo=0, hi=MAX_BLANKS),
    build.Field(f'{split}_max_blanks', int, lo=0, hi=MAX_BLANKS, check=check),
    # The difficulty knob; '-d<k>' in the folder name only when set, so older names still hold.
    build.Field(f'{split}_min_dead_ends', int, 0, lo=0, zero_tag='', prefix='-d'),
  )


_COMMON = (build.Field('num_aug', int, 0, lo=0), build.Field('seed', int, 0, lo=0))

# Folder names encode every parameter, so a changed config never reuses another's cached build;
# they must not change, or existing workdirs stop finding their datasets.
SOURCES = {
  'generate': build.Source(
    fields=(
      *_COMMON,
      build.Field('num_train', int, lo=1),
      build.Field('num_test', int, lo=1),
      *_blank_range('train'),
      *_blank_range('test'),
    ),
    name='sudoku-gen-n{num_train}-t{num_test}-aug{num_aug}'
    '-b{train_min_blanks}_{train_max_blanks}{train_min_dead_ends}'
    '-tb{test_min_blanks}_{test_max_blanks}{test_min_dead_ends}-s{seed}',
    builder=build_generated,
    version=('generator.json', GENERATOR_VERSION),
  ),
  'csv': build.Source(
    fields=(
      *_COMMON,
      build.CsvOrigin(HF_REPO),
      build.Field('subsample_size', int, 0, lo=0, none_if_zero=True, zero_tag='all'),
      build.Field('min_difficulty', int, 0, lo=0, none_if_zero=True),
    ),
    name='sudoku-csv-{origin}-sub{subsample_size}-d{min_difficulty}-aug{num_aug}-s{seed}',
    builder=build_from_csv,
  ),
}


def prepare(data_cfg: Any, workdir: str) -> str:
  """Resolves a Sudoku ``data`` config to a dataset folder in the §6.1 format (§6.3).

  ``source`` 'generate' (default) or 'csv' with the fields of its ``SOURCES`` table, see
  ``build.prepare_dataset``; folders are named like
  ``sudoku-gen-n2000-t500-aug8-b30_50-tb35_55-s0``, and a generated one from another generator
  version is rebuilt.
  """
  return build.prepare_sources(data_cfg, workdir, SOURCES, 'generate')
