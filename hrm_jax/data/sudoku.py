"""Sudoku datasets (spec §6.3): Sudoku-Extreme from CSV, an offline generator, and `prepare`.

Encoding (§6.3): cell value v (0 = blank, 1..9) -> token v + 1, so 1 = blank, 2..10 = digits and
0 = PAD (unused); vocab 11, seq_len 81; labels are the full solution (loss on all 81 cells); one
shared puzzle id 0. A group is a base puzzle with its augmented variants, one example each.

The generator exists so that training runs with no download: it makes random complete grids and
digs holes while a bitmask solver proves the solution stays unique. Its puzzles are much easier than
Sudoku-Extreme's (most need no guessing), so it is a smoke-test and ablation dataset, not a
substitute for the paper's benchmark. The solver and generator (~330 lines) take this file past 500
lines; they would split off cleanly into a ``sudoku_gen.py``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
from absl import logging

from hrm_jax.config import ConfigError
from hrm_jax.data.format import (
  DatasetError,
  Metadata,
  atomic_dataset_dir,
  load_split,
  write_identifiers,
  write_split,
)

CSV_COLUMNS = ('source', 'question', 'answer', 'rating')
MAX_BLANKS = 64  # 81 - 17: no Sudoku with fewer than 17 clues has a unique solution
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


def is_valid_solution(grids: np.ndarray) -> np.ndarray:
  """bool [n]: each [81] (or [9, 9]) grid has every row, column and box a permutation of 1..9."""
  g = np.asarray(grids).reshape(-1, 9, 9)
  boxes = g.reshape(-1, 3, 3, 3, 3).transpose(0, 1, 3, 2, 4).reshape(-1, 9, 9)
  units = np.concatenate([g, g.transpose(0, 2, 1), boxes], axis=1)  # [n, 27, 9]
  return (np.sort(units, axis=2) == np.arange(1, 10)).all(axis=(1, 2))


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
  if not os.path.isfile(path):
    raise DatasetError(f'{path}: CSV file does not exist')
  parts, ratings = [(np.zeros((0, 81), np.int8), np.zeros((0, 81), np.int8))], []
  with open(path, newline='', encoding='utf-8-sig') as f:  # -sig: tolerate a byte-order mark
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_COLUMNS:
      raise DatasetError(
        f'{path}: expected header {",".join(CSV_COLUMNS)}, found '
        f'{",".join(header) if header else "an empty file"}'
      )
    lines, qs, ans = [], [], []
    for row in reader:
      line = reader.line_num
      if not row:  # blank line
        continue
      if len(row) != len(CSV_COLUMNS):
        raise DatasetError(f'{path}:{line}: expected {len(CSV_COLUMNS)} fields, found {len(row)}')
      _, q, a, rating = row
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


def _download(hf_repo: str, filename: str) -> str:
  try:
    from huggingface_hub import hf_hub_download  # only needed online
  except ImportError:
    raise DatasetError(
      f'{hf_repo}/{filename}: huggingface_hub is not installed; install it or '
      'point data.csv_dir at a folder holding train.csv and test.csv'
    ) from None
  try:
    return hf_hub_download(repo_id=hf_repo, filename=filename, repo_type='dataset')
  except Exception as e:  # network, auth, missing repo: all end the same way
    raise DatasetError(
      f'{hf_repo}/{filename}: download from the Hugging Face dataset failed '
      f'({type(e).__name__}: {e}); download it yourself and set data.csv_dir'
    ) from e


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
  """Writes train (groups of ``variants`` consecutive puzzles) and test (one puzzle per group)."""
  with atomic_dataset_dir(out_dir, overwrite=overwrite) as tmp:
    for split, (q, a), per_group in (('train', train, variants), ('test', test, 1)):
      groups, puzzles = len(q) // per_group, len(q)
      write_split(
        tmp,
        split,
        metadata(groups, puzzles),
        q + 1,
        a + 1,
        np.zeros(puzzles, np.int32),
        np.arange(puzzles + 1, dtype=np.int32),
        np.arange(groups + 1, dtype=np.int32) * per_group,
      )
    write_identifiers(tmp, ['<blank>'])
    for name, content in extra_files.items():
      with open(os.path.join(tmp, name), 'w') as f:
        json.dump(content, f, indent=1)


def build_from_csv(
  out_dir: str,
  csv_dir: Optional[str] = None,
  hf_repo: str = 'sapientinc/sudoku-extreme',
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
  paths = {
    s: (os.path.join(csv_dir, f'{s}.csv') if csv_dir else _download(hf_repo, f'{s}.csv'))
    for s in ('train', 'test')
  }
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
# Bitmask solver: cells hold a one-bit mask (1 << digit) or 0; 27 unit masks record the digits
# used per row (0..8), column (9..17) and box (18..26). Pure Python, MRV branching.

_ALL = 0x3FE
_UNITS = tuple((i // 9, 9 + i % 9, 18 + i // 27 * 3 + i % 9 // 3) for i in range(81))
_POP = tuple(bin(m).count('1') for m in range(1024))
_BITS = tuple(tuple(1 << d for d in range(1, 10) if m >> d & 1) for m in range(1024))


def _state(values: list[int]) -> Optional[tuple[list[int], list[int], list[int]]]:
  """(cells, units, blanks) of 81 values 0..9, or None if two givens clash."""
  cells, units = [0 if v == 0 else 1 << v for v in values], [0] * 27
  for i, bit in enumerate(cells):
    for u in _UNITS[i]:
      if units[u] & bit:
        return None
      units[u] |= bit
  return cells, units, [i for i in range(81) if not cells[i]]


def _search(
  cells: list[int],
  units: list[int],
  blanks: list[int],
  limit: int,
  rnd: Optional[random.Random] = None,
) -> tuple[int, int, Optional[list[int]]]:
  """Depth-first search branching on the blank with fewest candidates (MRV).

  Returns (solutions found, stopping at ``limit``; dead ends met; first solution's cells). Digits
  are tried in increasing order, or shuffled by ``rnd``. The arguments are restored on return.
  """
  found, dead, first = 0, 0, None

  def rec(n: int) -> bool:  # n = blanks[:n] still open; True = stop
    nonlocal found, dead, first
    if n == 0:
      found += 1
      first = first or cells[:]
      return found >= limit
    best_n = 10
    for k in range(n):
      r, c, b = _UNITS[blanks[k]]
      m = _ALL & ~(units[r] | units[c] | units[b])
      if _POP[m] < best_n:
        best_n, best_k, best_m = _POP[m], k, m
        if best_n <= 1:  # take a forced cell at once; a dead cell elsewhere still shows up later
          break
    if best_n == 0:
      dead += 1
      return False
    i, last = blanks[best_k], n - 1
    blanks[best_k], blanks[last] = blanks[last], i
    r, c, b = _UNITS[i]
    digits = _BITS[best_m]
    if rnd is not None and best_n > 1:
      digits = rnd.sample(digits, best_n)
    stop = False
    for bit in digits:
      units[r] |= bit
      units[c] |= bit
      units[b] |= bit
      cells[i] = bit
      stop = rec(last)
      units[r] ^= bit
      units[c] ^= bit
      units[b] ^= bit
      if stop:
        break
    cells[i] = 0
    blanks[last], blanks[best_k] = blanks[best_k], i
    return stop

  rec(len(blanks))
  return found, dead, first


def _values(cells: list[int]) -> list[int]:
  return [bit.bit_length() - 1 if bit else 0 for bit in cells]


def count_solutions(puzzle: np.ndarray, limit: int = 2) -> int:
  """Number of solutions of an [81] or [9, 9] puzzle (values 0..9, 0 = blank), capped at limit."""
  state = _state([int(v) for v in np.asarray(puzzle).reshape(81)])
  return 0 if state is None else _search(*state, limit)[0]


def solve(puzzle: np.ndarray) -> tuple[Optional[np.ndarray], int]:
  """(first solution [81] int8 or None, dead ends of the deterministic MRV search)."""
  state = _state([int(v) for v in np.asarray(puzzle).reshape(81)])
  if state is None:
    return None, 0
  _, dead, first = _search(*state, 1)
  return (None if first is None else np.array(_values(first), np.int8)), dead


# ---------------------------------------------------------------------------------------------
# Generator


def _random_grid(rnd: random.Random) -> list[int]:
  """Cells of a uniformly-shuffled complete grid: random diagonal boxes, then a random search."""
  values = [0] * 81
  for box in range(3):  # the three diagonal boxes share no unit, so any fillings are compatible
    for k, d in enumerate(rnd.sample(range(1, 10), 9)):
      values[(box * 3 + k // 3) * 9 + box * 3 + k % 3] = d
  return _search(*_state(values), 1, rnd)[2]


def _toggle(cells: list[int], units: list[int], i: int, bit: int) -> None:
  """Places ``bit`` in blank cell i, or removes it if cell i holds it."""
  cells[i] ^= bit
  for u in _UNITS[i]:
    units[u] ^= bit


def _dig(rnd: random.Random, solution: list[int], target: int) -> tuple[list[int], list[int]]:
  """Blanks cells in random order while the solution stays unique, up to ``target`` blanks.

  Blanking cell i (digit d) keeps uniqueness iff no solution has i != d; one pass over the cells
  suffices, since a cell that cannot be blanked now cannot be after more cells are blanked.
  Returns (puzzle cells, blanked cell indices).
  """
  cells, units, _ = _state(_values(solution))
  blanks = []
  for i in rnd.sample(range(81), 81):
    if len(blanks) >= target:
      break
    bit, (r, c, b) = cells[i], _UNITS[i]
    _toggle(cells, units, i, bit)
    unique = True
    for alt in _BITS[_ALL & ~(units[r] | units[c] | units[b]) & ~bit]:
      _toggle(cells, units, i, alt)
      unique = _search(cells, units, blanks, 1)[0] == 0
      _toggle(cells, units, i, alt)
      if not unique:
        break
    if unique:
      blanks.append(i)
    else:
      _toggle(cells, units, i, bit)
  return cells, blanks


def _generate_chunk(args: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``count`` puzzles from ``seed``: ([count, 81] int8, [count, 81] int8, [count] int64)."""
  seed, count, min_blanks, max_blanks = args
  rnd = random.Random(seed)  # stdlib RNG: far cheaper per scalar draw than numpy's
  questions, solutions, ratings = [], [], []
  while len(questions) < count:
    for _ in range(1000):
      solution = _random_grid(rnd)
      cells, blanks = _dig(rnd, solution, rnd.randint(min_blanks, max_blanks))
      if len(blanks) >= min_blanks:
        break
    else:
      raise ValueError(
        f'could not dig {min_blanks} blanks with a unique solution in 1000 tries; lower min_blanks'
      )
    questions.append(_values(cells))
    solutions.append(_values(solution))
    ratings.append(_search(*_state(questions[-1]), 1)[1])
  return (
    np.array(questions, np.int8).reshape(-1, 81),
    np.array(solutions, np.int8).reshape(-1, 81),
    np.array(ratings, np.int64),
  )


def _num_cpus() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _worker_main() -> None:
  """Subprocess entry: pickled jobs on stdin -> pickled ('ok', results) or ('error', exc)."""
  jobs = pickle.load(sys.stdin.buffer)
  try:
    reply = ('ok', [_generate_chunk(job) for job in jobs])
  except Exception as e:  # handed to the parent, which re-raises it
    reply = ('error', e)
  pickle.dump(reply, sys.stdout.buffer)


def _run_in_subprocesses(jobs: list[tuple[int, int, int, int]], workers: int) -> list[Any]:
  """Runs ``_generate_chunk`` over jobs in fresh interpreters; results in job order.

  Plain subprocesses rather than multiprocessing: spawn re-runs the caller's unguarded
  ``__main__`` in every worker (endless respawning from a script or notebook cell), and fork
  copies a process that may already run JAX threads.
  """
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(
    os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get('PYTHONPATH')]))
  )
  command = [sys.executable, '-c', 'from hrm_jax.data.sudoku import _worker_main; _worker_main()']
  procs, results = [], [None] * len(jobs)
  try:
    for k in range(workers):
      proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
      procs.append(proc)
      proc.stdin.write(pickle.dumps(jobs[k::workers]))  # interleaved shares balance the load
      proc.stdin.close()
    for k, proc in enumerate(procs):
      out = proc.stdout.read()
      if proc.wait() != 0 or not out:
        raise RuntimeError(f'Sudoku generator worker {k} exited with code {proc.returncode}')
      status, value = pickle.loads(out)
      if status == 'error':
        raise value
      results[k::workers] = value
  finally:  # on any error (or Ctrl-C) leave no orphaned workers behind
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return results


def generate_puzzles(
  n: int,
  rng: np.random.Generator,
  min_blanks: int,
  max_blanks: int,
  num_workers: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Generates n random Sudokus with unique solutions.

  Returns (questions [n, 81] int8 values 0..9 with 0 = blank, solutions [n, 81] int8 values 1..9,
  ratings [n] int64). Each puzzle: a random complete grid, then cells blanked in random order
  while the solution stays unique, until a target drawn uniformly from [min_blanks, max_blanks] is
  reached or no cell can be removed (kept only if >= min_blanks, else retried). Rating = dead ends
  of the deterministic MRV search on the final puzzle (0 = solvable without a wrong guess).
  The output depends only on ``rng``: work is split into fixed chunks of 64 with their own seeds,
  spread over ``num_workers`` processes (default: all cores when n >= 2000, else 1).
  """
  if not 0 <= min_blanks <= max_blanks <= MAX_BLANKS:
    raise ValueError(
      f'need 0 <= min_blanks <= max_blanks <= {MAX_BLANKS}, got [{min_blanks}, {max_blanks}]'
    )
  sizes = [min(64, n - s) for s in range(0, n, 64)]
  seeds = rng.integers(0, 2**63, size=len(sizes))
  jobs = [(int(s), k, min_blanks, max_blanks) for s, k in zip(seeds, sizes)]
  workers = min(len(jobs), num_workers or (_num_cpus() if n >= 2000 else 1))
  if workers > 1:
    parts = _run_in_subprocesses(jobs, workers)
  else:
    parts = [_generate_chunk(job) for job in jobs]
  if not parts:
    return np.zeros((0, 81), np.int8), np.zeros((0, 81), np.int8), np.zeros(0, np.int64)
  return tuple(np.concatenate(p) for p in zip(*parts))


def _summary(values: np.ndarray) -> dict[str, float]:
  if not len(values):
    return {}
  return {'min': int(values.min()), 'max': int(values.max()), 'mean': float(values.mean())}


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
) -> str:
  """Builds a generated Sudoku dataset in the §6.1 format at ``out_dir`` (atomically).

  Train and test base puzzles come from independent streams of ``seed``; test puzzles whose
  question equals any train question (variants included) are dropped, so test is held out.
  Train gets ``num_aug`` symmetry variants per base puzzle (one group each); test is not
  augmented. Also writes ``identifiers.json`` and ``generator.json`` (parameters, blank-count and
  rating summaries). Returns ``out_dir``.
  """
  started = time.time()
  train_ss, test_ss, aug_ss = np.random.SeedSequence(seed).spawn(3)
  train_q, train_a, train_r = generate_puzzles(
    num_train, np.random.default_rng(train_ss), train_min_blanks, train_max_blanks, num_workers
  )
  test_q, test_a, test_r = generate_puzzles(
    num_test, np.random.default_rng(test_ss), test_min_blanks, test_max_blanks, num_workers
  )
  train = _with_variants(train_q, train_a, num_aug, np.random.default_rng(aug_ss))
  seen = {row.tobytes() for row in train[0]}
  fresh = np.array([q.tobytes() not in seen for q in test_q], bool)
  test_q, test_a, test_r = test_q[fresh], test_a[fresh], test_r[fresh]
  params = {
    'num_train': num_train,
    'num_test': num_test,
    'num_aug': num_aug,
    'train_min_blanks': train_min_blanks,
    'train_max_blanks': train_max_blanks,
    'test_min_blanks': test_min_blanks,
    'test_max_blanks': test_max_blanks,
    'seed': seed,
  }
  elapsed = round(time.time() - started, 3)
  info = {
    'version': GENERATOR_VERSION,
    'params': params,
    'seconds': elapsed,
    'test_dropped_duplicates': int((~fresh).sum()),
  }
  for split, q, r in (('train', train_q, train_r), ('test', test_q, test_r)):
    info[split] = {
      'base_puzzles': len(q),
      'blanks': _summary((q == 0).sum(axis=1)),
      'rating': _summary(r),
    }
  _write_dataset(out_dir, train, 1 + num_aug, (test_q, test_a), overwrite, {'generator.json': info})
  return out_dir


# ---------------------------------------------------------------------------------------------
# Config -> dataset folder

_REQUIRED = object()


def _field(
  cfg: Any,
  name: str,
  kind: type,
  default: Any = _REQUIRED,
  lo: Optional[int] = None,
  hi: Optional[int] = None,
) -> Any:
  """Reads ``cfg.<name>``, checking its type and range; errors name the field ``data.<name>``."""
  value = getattr(cfg, name, default)
  if value is None and default is not _REQUIRED:
    value = default
  if value is _REQUIRED:
    raise ConfigError(f'data.{name} is missing')
  if kind is int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ConfigError(f'data.{name} must be an integer, got {value!r}')
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
      raise ConfigError(
        f'data.{name} must be in [{lo}, {"inf" if hi is None else hi}], got {value}'
      )
  elif not isinstance(value, kind):
    raise ConfigError(f'data.{name} must be a {kind.__name__}, got {value!r}')
  return value


def _is_cached(out: str, generated: bool) -> bool:
  """True if ``out`` holds a valid dataset (and, if generated, from this generator version)."""
  if not os.path.isdir(out):
    return False
  try:
    for split in ('train', 'test'):
      load_split(out, split, mmap=True)
    if generated:
      with open(os.path.join(out, 'generator.json')) as f:
        return json.load(f).get('version') == GENERATOR_VERSION
  except (DatasetError, OSError, ValueError):
    return False
  return True


def _generate_plan(cfg: Any, num_aug: int, seed: int) -> tuple[str, Callable[..., str]]:
  """(folder name, builder) of a 'generate' config."""
  gen = {k: _field(cfg, k, int, lo=1) for k in ('num_train', 'num_test')}
  for split in ('train', 'test'):
    lo, hi = (_field(cfg, f'{split}_{m}_blanks', int, lo=0, hi=MAX_BLANKS) for m in ('min', 'max'))
    if lo > hi:
      raise ConfigError(f'data.{split}_min_blanks ({lo}) must be <= data.{split}_max_blanks ({hi})')
    gen[f'{split}_min_blanks'], gen[f'{split}_max_blanks'] = lo, hi
  name = (
    f'sudoku-gen-n{gen["num_train"]}-t{gen["num_test"]}-aug{num_aug}'
    f'-b{gen["train_min_blanks"]}_{gen["train_max_blanks"]}'
    f'-tb{gen["test_min_blanks"]}_{gen["test_max_blanks"]}-s{seed}'
  )
  return name, functools.partial(build_generated, num_aug=num_aug, seed=seed, **gen)


def _csv_plan(cfg: Any, num_aug: int, seed: int) -> tuple[str, Callable[..., str]]:
  """(folder name, builder) of a 'csv' config; the name hashes a local csv_dir's path."""
  csv_dir = _field(cfg, 'csv_dir', str, '')
  hf_repo = _field(cfg, 'hf_repo', str, 'sapientinc/sudoku-extreme')
  subsample = _field(cfg, 'subsample_size', int, 0, lo=0)
  difficulty = _field(cfg, 'min_difficulty', int, 0, lo=0)
  origin = (
    f'dir{hashlib.sha1(os.path.abspath(csv_dir).encode()).hexdigest()[:8]}'
    if csv_dir
    else hf_repo.replace('/', '_')
  )
  name = f'sudoku-csv-{origin}-sub{subsample or "all"}-d{difficulty}-aug{num_aug}-s{seed}'
  return name, functools.partial(
    build_from_csv,
    csv_dir=csv_dir or None,
    hf_repo=hf_repo,
    subsample_size=subsample or None,
    min_difficulty=difficulty or None,
    num_aug=num_aug,
    seed=seed,
  )


def prepare(data_cfg: Any, workdir: str) -> str:
  """Resolves a ``data`` config to a dataset folder in the §6.1 format, building it if needed.

  ``data_cfg.path`` non-empty: that existing folder is validated (DatasetError naming it if
  missing or corrupt) and returned. Otherwise the dataset described by ``source`` ('generate' or
  'csv') and its parameters is built once into ``<workdir>/data/<name>``, the name encoding every
  parameter (e.g. ``sudoku-gen-n2000-t500-aug8-b30_50-tb35_55-s0``), and reused while it
  validates (a corrupt copy is rebuilt). Invalid values raise ValueError naming ``data.<field>``.
  """
  path = _field(data_cfg, 'path', str, '')
  if path:
    for split in ('train', 'test'):
      load_split(path, split, mmap=True)
    return path
  source = _field(data_cfg, 'source', str, 'generate')
  if source not in ('generate', 'csv'):
    raise ConfigError(f"data.source must be 'generate' or 'csv', got {source!r}")
  num_aug = _field(data_cfg, 'num_aug', int, 0, lo=0)
  seed = _field(data_cfg, 'seed', int, 0, lo=0)
  plan = _generate_plan if source == 'generate' else _csv_plan
  name, build = plan(data_cfg, num_aug, seed)
  out = os.path.join(workdir, 'data', name)
  generated = source == 'generate'
  if _is_cached(out, generated):
    return out
  logging.info('building dataset %s', out)
  try:
    build(out, overwrite=os.path.exists(out))  # an invalid leftover is replaced
  except FileExistsError:  # another process finished the same build first
    if not _is_cached(out, generated):
      raise
  return out
