"""Maze-Hard datasets (spec §6.4): the published 30x30 mazes from CSV, a generator, and `prepare`.

Encoding (§6.4): a size×size maze is a row-major string over "# SGo"; tokens PAD 0, ``#`` wall 1,
space 2, ``S`` 3, ``G`` 4, ``o`` path 5 (vocab 6, seq_len size², 900 for Maze-Hard). Inputs are
the question (no ``o``); labels the full answer grid with the optimal path's cells between S and G
marked ``o``, so the loss covers all cells. One shared puzzle id 0. A group is one maze: one
puzzle with one example, or with ``aug`` (training split only) its 8 dihedral transforms (§6.5)
as 8 puzzles, in the order tid 0..7.

Sources:
  csv      — ``train.csv``/``test.csv`` (1000 rows each, header ``source,question,answer,rating``)
             from a local folder or the Hugging Face dataset ``sapientinc/maze-30x30-hard-1k``.
             These are Lehnert et al. (2024)'s mazes filtered to shortest paths longer than 110
             moves (the HRM paper). The reference builder draws its training subsample without a
             seed; ours is seeded.
  generate — offline mazes from ``maze_gen.generate_mazes``: the same constraints (size, a
             shortest start-goal path longer than ``min_path_len`` moves, here also proved unique)
             but NOT the published distribution: ours are corridor mazes grown from a random
             spanning tree of a lattice with a few loops opened, not Lehnert et al.'s generator.
             Scores on them are not comparable to the paper's Maze-Hard numbers.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import numpy as np

from hrm_jax.config import ConfigError
from hrm_jax.data import build, grids, maze_gen
from hrm_jax.data.format import (
  DatasetError,
  Metadata,
)

HF_REPO = 'sapientinc/maze-30x30-hard-1k'
GENERATOR_VERSION = 1  # bump when generated datasets change, so `prepare` rebuilds cached ones


def metadata(num_groups: int, num_puzzles: int, seq_len: int) -> Metadata:
  """The §6.1 metadata of a Maze split (§6.1 table row; seq_len = size², 900 for Maze-Hard)."""
  return Metadata(
    pad_id=maze_gen.PAD,
    ignore_label_id=0,
    blank_identifier_id=0,
    vocab_size=maze_gen.VOCAB_SIZE,
    seq_len=seq_len,
    num_puzzle_identifiers=1,
    total_groups=num_groups,
    mean_puzzle_examples=1.0,
    sets=['all'],
    total_puzzles=num_puzzles,
  )


def augment_dihedral(questions: np.ndarray, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The 8 dihedral transforms (§6.5) of each of n square mazes, group-major.

  questions, answers: tokens [n, L] with L = size²; returns ([8n, L], [8n, L]) whose rows
  8i..8i+7 are maze i under tids 0..7 (``grids.dihedral`` on the [size, size] grid).
  """
  q, a = np.asarray(questions), np.asarray(answers)
  n, length = q.shape
  size = maze_gen.grid_size(length)

  def all8(x: np.ndarray) -> np.ndarray:
    g = x.reshape(n, size, size)
    return np.stack([grids.dihedral(g, t) for t in range(grids.NUM_DIHEDRAL)], 1).reshape(
      -1, length
    )

  return all8(q), all8(a)


def path_lengths(answers: np.ndarray) -> np.ndarray:
  """int [n]: moves of the path in each answer [n, L] (its ``o`` cells + 1)."""
  return (np.asarray(answers) == maze_gen.PATH).sum(1) + 1


# ---------------------------------------------------------------------------------------------
# CSV source (Hugging Face sapientinc/maze-30x30-hard-1k)


def _first(bad: np.ndarray) -> tuple[int, int]:
  """(row, column) of the first True of a bool [n, L] array, in row-major order."""
  row, col = np.argwhere(bad)[0]
  return int(row), int(col)


def _validate(path: str, lines: list[int], q: np.ndarray, a: np.ndarray, size: int) -> None:
  """Checks decoded tokens [n, L] (0 = bad character already reported) row by row."""

  def fail(row: int, msg: str) -> None:
    raise DatasetError(f'{path}:{lines[row]}: {msg}')

  def cell(col: int) -> str:
    return f'position {col + 1} (row {col // size + 1}, column {col % size + 1})'

  if (q == maze_gen.PATH).any():
    row, col = _first(q == maze_gen.PATH)
    fail(row, f"question has a path cell 'o' at {cell(col)}")
  for token, name in ((maze_gen.START, 'S'), (maze_gen.GOAL, 'G')):
    counts = (q == token).sum(1)
    if (counts != 1).any():
      row = int(np.argmax(counts != 1))
      fail(row, f'question has {counts[row]} {name!r} cells, expected exactly 1')
  bad = (q != a) & ~((q == maze_gen.FREE) & (a == maze_gen.PATH))
  if bad.any():
    row, col = _first(bad)
    got = maze_gen.CHARSET[a[row, col] - 1]
    want = maze_gen.CHARSET[q[row, col] - 1]
    fail(row, f'answer has {got!r} where the question has {want!r} at {cell(col)}')


def parse_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads a Maze CSV (header ``source,question,answer,rating``; §6.4) in file order.

  Returns (questions, answers), uint8 tokens [n, L] with L = size² the same for every row. Checks
  the header, field count, equal square lengths, the characters "# SGo", one S and one G and no
  ``o`` in each question, and that each answer equals its question except on free cells marked
  ``o``. Problems raise DatasetError naming the file and 1-based line.
  """
  lines, qs, ans, length = [], [], [], None
  for line, (_, q, a, _) in build.csv_rows(path):
    if length is None:
      length = len(q)
      try:
        maze_gen.grid_size(length)
      except ValueError:
        raise DatasetError(
          f'{path}:{line}: question has {length} characters, not a square grid'
        ) from None
    for name, s in (('question', q), ('answer', a)):
      if len(s) != length:
        raise DatasetError(
          f'{path}:{line}: {name} has {len(s)} characters, expected {length} (as the first row)'
        )
    lines.append(line)
    qs.append(q)
    ans.append(a)
  if not lines:
    raise DatasetError(f'{path}: no mazes after the header')
  n = len(lines)
  tokens = []
  for name, strings in (('question', qs), ('answer', ans)):
    codes = np.array(strings, dtype=f'<U{length}').view(np.uint32).reshape(n, length)
    t = maze_gen.codes_to_tokens(codes)
    if (t == maze_gen.PAD).any():
      row, col = _first(t == maze_gen.PAD)
      raise DatasetError(
        f'{path}:{lines[row]}: invalid character {strings[row][col]!r} at position {col + 1} '
        f'of the {name} (allowed: {maze_gen.CHARSET!r})'
      )
    tokens.append(t)
  _validate(path, lines, tokens[0], tokens[1], maze_gen.grid_size(length))
  return tokens[0], tokens[1]


def _write_dataset(
  out_dir: str,
  train: tuple[np.ndarray, np.ndarray],
  aug: bool,
  test: tuple[np.ndarray, np.ndarray],
  overwrite: bool,
  extra_files: dict[str, Any],
) -> None:
  """Writes train (groups of 8 transforms with ``aug``, else 1 puzzle) and test (1 per group)."""
  if aug:
    train = augment_dihedral(*train)
  seq_len = train[0].shape[1]
  build.write_single_example_puzzles(
    out_dir,
    {'train': (*train, grids.NUM_DIHEDRAL if aug else 1), 'test': (*test, 1)},
    lambda groups, puzzles: metadata(groups, puzzles, seq_len),
    overwrite,
    extra_files,
  )


def build_from_csv(
  out_dir: str,
  csv_dir: Optional[str] = None,
  hf_repo: str = HF_REPO,
  subsample_size: Optional[int] = None,
  aug: bool = False,
  seed: int = 0,
  overwrite: bool = False,
) -> str:
  """Builds Maze-Hard in the §6.1 format at ``out_dir`` (atomically) and returns it (§6.4).

  Reads ``train.csv``/``test.csv`` from ``csv_dir``, or downloads them from ``hf_repo``. Train is
  subsampled (seeded) to ``subsample_size`` mazes and, with ``aug``, each maze becomes a group of
  its 8 dihedral transforms; test is never augmented. ``build.json`` records the sources, the
  parameters, path-length summaries and how many labels ``maze_gen.valid_optimal`` accepts.
  """
  paths = build.csv_paths(csv_dir, hf_repo)
  train_q, train_a = parse_csv(paths['train'])
  test_q, test_a = parse_csv(paths['test'])
  if train_q.shape[1] != test_q.shape[1]:
    raise DatasetError(
      f'{paths["test"]}: mazes have {test_q.shape[1]} cells but those of {paths["train"]} have '
      f'{train_q.shape[1]}; both splits need the same size'
    )
  if subsample_size is not None and subsample_size < len(train_q):
    # The reference draws this subset without a seed, so its subsets differ per build (§6.4).
    keep = np.random.default_rng(seed).choice(len(train_q), size=subsample_size, replace=False)
    train_q, train_a = train_q[keep], train_a[keep]
  info = {
    'csv': {s: os.path.abspath(p) for s, p in paths.items()},
    'hf_repo': hf_repo,
    'subsample_size': subsample_size,
    'aug': aug,
    'seed': seed,
  }
  for split, q, a in (('train', train_q, train_a), ('test', test_q, test_a)):
    info[split] = {
      'mazes': len(q),
      'path_len': build.summary(path_lengths(a)),
      'labels_valid_optimal': int(maze_gen.valid_optimal(q, a).sum()),
    }
  _write_dataset(
    out_dir, (train_q, train_a), aug, (test_q, test_a), overwrite, {'build.json': info}
  )
  return out_dir


# ---------------------------------------------------------------------------------------------
# Generated source (mazes from maze_gen)


def build_generated(
  out_dir: str,
  num_train: int,
  num_test: int,
  size: int,
  min_path_len: int,
  aug: bool,
  seed: int,
  overwrite: bool = False,
) -> str:
  """Builds a generated Maze dataset in the §6.1 format at ``out_dir`` (atomically).

  Train and test mazes (size×size, unique shortest path longer than ``min_path_len`` moves) come
  from independent streams of ``seed``. A test maze equal to any dihedral transform of a train maze
  is dropped, so test is held out with or without ``aug``. With ``aug`` each train maze becomes a
  group of its 8 dihedral transforms; test is not augmented. Also writes ``identifiers.json`` and
  ``generator.json`` (version, parameters, seconds, dropped duplicates, path-length summaries).
  Returns ``out_dir``.
  """
  started = time.time()
  train_ss, test_ss = np.random.SeedSequence(seed).spawn(2)
  train_q, train_a = maze_gen.generate_mazes(
    num_train, size, min_path_len, np.random.default_rng(train_ss)
  )
  test_q, test_a = maze_gen.generate_mazes(
    num_test, size, min_path_len, np.random.default_rng(test_ss)
  )
  fresh = build.unseen(augment_dihedral(train_q, train_a)[0], test_q)
  test_q, test_a = test_q[fresh], test_a[fresh]
  params = {
    'num_train': num_train,
    'num_test': num_test,
    'size': size,
    'min_path_len': min_path_len,
    'aug': aug,
    'seed': seed,
  }
  info = build.generator_info(GENERATOR_VERSION, params, started, fresh)
  for split, q, a in (('train', train_q, train_a), ('test', test_q, test_a)):
    info[split] = {
      'mazes': len(q),
      'path_len': build.summary(path_lengths(a)),
      'wall_fraction': float((q == maze_gen.WALL).mean()) if len(q) else 0.0,
    }
  _write_dataset(
    out_dir, (train_q, train_a), aug, (test_q, test_a), overwrite, {'generator.json': info}
  )
  return out_dir


# ---------------------------------------------------------------------------------------------
# Config -> dataset folder


def _check_path_len(values: dict[str, Any]) -> None:
  """ConfigError unless a shortest path longer than min_path_len fits a maze_size maze."""
  size, min_path_len = values['maze_size'], values['min_path_len']
  if min_path_len >= maze_gen.max_path_len(size):
    raise ConfigError(
      f'data.min_path_len must be < {maze_gen.max_path_len(size)} for data.maze_size {size} '
      f'(no longer shortest path fits), got {min_path_len}'
    )


_COMMON = (build.Field('aug', bool, False), build.Field('seed', int, 0, lo=0))

# Folder names encode every parameter, so a changed config never reuses another's cached build;
# they must not change, or existing workdirs stop finding their datasets.
SOURCES = {
  'generate': build.Source(
    fields=(
      *_COMMON,
      build.Field('num_train', int, lo=1),
      build.Field('num_test', int, lo=1),
      build.Field('maze_size', int, lo=3, arg='size'),
      build.Field('min_path_len', int, lo=0, check=_check_path_len),
    ),
    name='maze-gen-n{num_train}-t{num_test}-z{maze_size}-p{min_path_len}-aug{aug}-s{seed}',
    builder=build_generated,
    version=('generator.json', GENERATOR_VERSION),
  ),
  'csv': build.Source(
    fields=(
      *_COMMON,
      build.CsvOrigin(HF_REPO),
      build.Field('subsample_size', int, 0, lo=0, none_if_zero=True, zero_tag='all'),
    ),
    name='maze-csv-{origin}-sub{subsample_size}-aug{aug}-s{seed}',
    builder=build_from_csv,
  ),
}


def prepare(data_cfg: Any, workdir: str) -> str:
  """Resolves a Maze ``data`` config to a dataset folder in the §6.1 format (§6.4).

  ``source`` 'csv' (default) or 'generate' with the fields of its ``SOURCES`` table, see
  ``build.prepare_dataset``; folders are named like ``maze-gen-n2000-t500-z5-p4-aug1-s0``, and
  a generated one from another generator version is rebuilt.
  """
  return build.prepare_sources(data_cfg, workdir, SOURCES, 'csv')
