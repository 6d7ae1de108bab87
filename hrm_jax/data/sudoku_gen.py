"""Sudoku solver and offline puzzle generator (spec §6.3), pure Python and numpy.

The solver is a bitmask depth-first search: cells hold a one-bit mask (1 << digit) or 0; 27 unit
masks record the digits used per row (0..8), column (9..17) and box (18..26); it branches on the
blank with fewest candidates (MRV). ``count_solutions`` and ``solve`` are its public face.

The generator makes random complete grids and digs holes while the solver proves the solution stays
unique; ``generate_puzzles`` spreads fixed-size, separately seeded chunks over worker subprocesses,
so its output depends only on the seed. Its puzzles are much easier than Sudoku-Extreme's (most need
no guessing). ``sudoku.build_generated`` turns them into a dataset; a change to what this module
generates must bump ``sudoku.GENERATOR_VERSION`` so that cached datasets are rebuilt.
"""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from typing import Any, Optional

import numpy as np

from hrm_jax import progress

MAX_BLANKS = 64  # 81 - 17: no Sudoku with fewer than 17 clues has a unique solution

# ---------------------------------------------------------------------------------------------
# Bitmask solver

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


# Tries per kept puzzle before generate_puzzles gives up: at 50-64 blanks ~80% of puzzles have a
# dead end and ~40% at least 10; at 35-50 blanks only ~12% have one (200 puzzles each, seed 0).
_MAX_TRIES = 1000


def _generate_chunk(
  args: tuple[int, int, int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``count`` puzzles from ``seed``: ([count, 81] int8, [count, 81] int8, [count] int64)."""
  seed, count, min_blanks, max_blanks, min_dead_ends = args
  rnd = random.Random(seed)  # stdlib RNG: far cheaper per scalar draw than numpy's
  questions, solutions, ratings = [], [], []
  while len(questions) < count:
    for _ in range(_MAX_TRIES):
      solution = _random_grid(rnd)
      cells, blanks = _dig(rnd, solution, rnd.randint(min_blanks, max_blanks))
      if len(blanks) < min_blanks:
        continue
      rating = _search(*_state(_values(cells)), 1)[1]
      if rating >= min_dead_ends:
        break
    else:
      raise ValueError(
        f'no puzzle with >= {min_blanks} blanks and >= {min_dead_ends} solver dead ends in '
        f'{_MAX_TRIES} tries; lower min_blanks or min_dead_ends (or raise max_blanks)'
      )
    questions.append(_values(cells))
    solutions.append(_values(solution))
    ratings.append(rating)
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


def _run_in_subprocesses(jobs: list[tuple[int, ...]], workers: int) -> list[Any]:
  """Runs ``_generate_chunk`` over jobs in fresh interpreters; results in job order.

  Plain subprocesses rather than multiprocessing: spawn re-runs the caller's unguarded
  ``__main__`` in every worker (endless respawning from a script or notebook cell), and fork
  copies a process that may already run JAX threads.
  """
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(
    os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get('PYTHONPATH')]))
  )
  command = [
    sys.executable,
    '-c',
    'from hrm_jax.data.sudoku_gen import _worker_main; _worker_main()',
  ]
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
  min_dead_ends: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Generates n random Sudokus with unique solutions.

  Returns (questions [n, 81] int8 values 0..9 with 0 = blank, solutions [n, 81] int8 values 1..9,
  ratings [n] int64). Each puzzle: a random complete grid, then cells blanked in random order
  while the solution stays unique, until a target drawn uniformly from [min_blanks, max_blanks] is
  reached or no cell can be removed. Rating = dead ends of the deterministic MRV search on the
  final puzzle (0 = solvable by filling forced cells, without a wrong guess). A puzzle is kept
  only with >= min_blanks blanks and rating >= min_dead_ends (the difficulty knob: 1 keeps only
  puzzles that need search), else another is drawn; ValueError after 1000 draws for one puzzle.
  The output depends only on ``rng``: work is split into fixed chunks of 64 with their own seeds,
  spread over ``num_workers`` processes (default: all cores when n >= 2000, else 1).
  """
  if not 0 <= min_blanks <= max_blanks <= MAX_BLANKS:
    raise ValueError(
      f'need 0 <= min_blanks <= max_blanks <= {MAX_BLANKS}, got [{min_blanks}, {max_blanks}]'
    )
  if min_dead_ends < 0:
    raise ValueError(f'need min_dead_ends >= 0, got {min_dead_ends}')
  sizes = [min(64, n - s) for s in range(0, n, 64)]
  seeds = rng.integers(0, 2**63, size=len(sizes))
  jobs = [(int(s), k, min_blanks, max_blanks, min_dead_ends) for s, k in zip(seeds, sizes)]
  workers = min(len(jobs), num_workers or (_num_cpus() if n >= 2000 else 1))
  if workers > 1:
    parts = _run_in_subprocesses(jobs, workers)
  else:
    shown, parts = progress.Progress('data: puzzles generated', n), []
    for job in jobs:
      shown.update(64 * len(parts))
      parts.append(_generate_chunk(job))
  if not parts:
    return np.zeros((0, 81), np.int8), np.zeros((0, 81), np.int8), np.zeros(0, np.int64)
  return tuple(np.concatenate(p) for p in zip(*parts))
