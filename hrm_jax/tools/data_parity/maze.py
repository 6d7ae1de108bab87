"""Maze (spec §6.4): the reference's `build_maze_dataset.py` against `hrm_jax.data.maze` on
the same CSV rows, without and with `aug` (deterministic on both sides, so compared exactly),
every variant also a dihedral transform of its base under the reference's own transform."""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Callable
from typing import Optional

import numpy as np

from hrm_jax.data import grids
from hrm_jax.data import maze as maze_data
from hrm_jax.tools.data_parity.common import (
  SUBSAMPLE_NOTE,
  Report,
  check_dihedral_table,
  compare_folders,
  metadata_skip,
  reference_imports,
  run_reference_csv_builder,
  variants_valid,
  write_csvs,
)


def _shortest_path(walls: np.ndarray, start: tuple, goal: tuple) -> Optional[list[tuple]]:
  """Cells of one shortest 4-connected path from start to goal (both included), or None."""
  prev = {start: None}
  queue = collections.deque([start])
  while queue:
    cell = queue.popleft()
    if cell == goal:
      path = []
      while cell is not None:
        path.append(cell)
        cell = prev[cell]
      return path[::-1]
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
      nxt = (cell[0] + dr, cell[1] + dc)
      if not walls[nxt] and nxt not in prev:  # the border is all wall, so nxt stays inside
        prev[nxt] = cell
        queue.append(nxt)
  return None


def maze_rows(num: int, size: int, rng: np.random.Generator) -> list[tuple[str, str, str, int]]:
  """``num`` CSV rows of size×size mazes in the published format (§6.4, "# SGo").

  Walled border, random inner walls, one S and one G at least ``size`` moves apart, the answer
  marking one shortest path with ``o``; the rating is the path length.
  """
  rows = []
  while len(rows) < num:
    walls = rng.random((size, size)) < 0.3
    walls[[0, -1], :] = True
    walls[:, [0, -1]] = True
    free = np.argwhere(~walls)
    if len(free) < 2:
      continue
    s, g = (tuple(int(v) for v in free[i]) for i in rng.choice(len(free), 2, replace=False))
    path = _shortest_path(walls, s, g)
    if path is None or len(path) <= size:
      continue
    q = np.where(walls, '#', ' ')
    q[s], q[g] = 'S', 'G'
    a = q.copy()
    for cell in path[1:-1]:
      a[cell] = 'o'
    rows.append(('parity', ''.join(q.reshape(-1)), ''.join(a.reshape(-1)), len(path) - 1))
  return rows


def find_dihedral(
  base: np.ndarray, variant: np.ndarray, transform: Callable[[np.ndarray, int], np.ndarray]
) -> Optional[int]:
  """The first tid in 0..7 with ``transform(b, tid) == v`` for every grid pair of base and
  variant ([k, H, W] each, e.g. question and answer), or None. ``transform(grid [H, W], tid)``
  is a dihedral transform such as the reference's ``common.dihedral_transform``."""
  for tid in range(grids.NUM_DIHEDRAL):
    if all(np.array_equal(transform(b, tid), v) for b, v in zip(base, variant)):
      return tid
  return None


def maze_variant_check(
  transform: Callable[[np.ndarray, int], np.ndarray],
) -> Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], bool]:
  """``check_variants``' test for Maze token rows [size²]: some dihedral ``transform``."""

  def check(bi, bl, vi, vl) -> bool:
    size = math.isqrt(len(bi))
    base = np.stack([bi, bl]).reshape(2, size, size)
    return find_dihedral(base, np.stack([vi, vl]).reshape(2, size, size), transform) is not None

  return check


def parity_maze(repo: str, work: str, seed: int, num_aug: int) -> Report:
  """Maze: reference vs ours on the same CSVs, without and with ``aug``. The reference's ``aug``
  is deterministic (all 8 transforms in tid order), so both are compared exactly; with ``aug``
  every variant must also be a dihedral transform (the reference's) of its base."""
  del num_aug  # Maze augmentation is all 8 dihedral transforms
  report = Report()
  rng = np.random.default_rng(seed)
  csv_dir = write_csvs(os.path.join(work, 'maze-csv'), maze_rows(4, 9, rng), maze_rows(3, 9, rng))
  with reference_imports(repo) as load:
    common = load('common')
    check_dihedral_table(common, report)
    transform = common.dihedral_transform
  for name, aug in (('plain', False), ('aug', True)):
    ref = run_reference_csv_builder(
      repo, 'maze', csv_dir, os.path.join(work, f'ref-{name}'), aug=aug
    )
    ours = maze_data.build_from_csv(
      os.path.join(work, f'ours-{name}'), csv_dir=csv_dir, aug=aug, seed=seed
    )
    report.examples += compare_folders(ref, ours, report, name, metadata_skip(ref, report))
    if aug:
      variants_valid(ref, ours, report, name, maze_variant_check(transform))
  report.skip(SUBSAMPLE_NOTE)
  return report
