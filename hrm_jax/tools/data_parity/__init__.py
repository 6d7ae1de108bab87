r"""Data and ARC-scoring parity of hrm_jax with the reference PyTorch repos (HRM, TRM).

  python -m hrm_jax.tools.data_parity --repo=PATH --task=sudoku|maze|arc|arc_scoring \
      [--num_aug=4] [--seed=0] [--workdir=DIR]

PATH is a checkout of `sapientinc/HRM` or `SamsungSAILMontreal/TinyRecursiveModels`. The tool
writes small inputs of its own into a temporary folder (--workdir: that folder, kept), runs the
reference builders (imported from PATH/dataset; `hf_hub_download` redirected to the local CSVs)
and ours on them, and compares what `hrm_jax.data.format.load_split` reads from both folders:

  sudoku — Sudoku-Extreme CSV rows (spec §6.3). Without augmentation (also with min_difficulty)
           the reference is deterministic: every array, the metadata and identifiers.json must
           be identical. With --num_aug it draws from the unseeded global numpy RNG, so the test
           split, the index arrays (group sizes) and each group's base puzzle must be identical,
           and every variant, theirs and ours, a Sudoku symmetry of its base: the transform
           (transpose, band-preserving row and column permutations, digit relabelling) is
           searched for exhaustively and must map the base onto the variant.
  maze   — Maze CSV rows (§6.4) with and without `aug`. The reference's `aug` is deterministic
           (the 8 dihedral transforms in tid order), so all arrays must be identical; every
           variant must also be a dihedral transform of its base under the reference's own
           `dihedral_transform`, whose table is checked against `hrm_jax.data.grids`.
  arc    — a few small ARC tasks (training + evaluation subsets, §6.6) as task files (what HRM's
           builder reads) and Kaggle's combined files (TRM's). Task order, augmentations and
           translations are random on both sides, so each folder is decoded (translation undone,
           the variant name parsed as `hrm_jax.evaluators.arc` parses it, the transform inverted)
           and the two are compared per task: base pairs per split (the split rule, also against
           the source), group sizes, every variant inverting to its base, distinct variants, test
           pairs at (0, 0) and one train pair per variant at (0, 0), one identifier per variant
           shared by both splits, the metadata, and test_puzzles.json where the reference writes
           one (TRM).
  arc_scoring — one dataset of ours fed the same predictions and q_halt logits (agreeing and
           disagreeing votes, count ties broken by q, an exact tie, an empty prediction, padding
           rows): pass@K of `ArcEvaluator` under the `all` rule against a transcription of HRM's
           `arc_eval.ipynb` (checked against the notebook in the checkout when it has one), under
           the `frac` rule against TRM's `evaluators/arc.py` `ARC` (run on CPU in a single-process
           gloo group; needs the TRM checkout), and ours again reading HRM-style variant names.

Prints one line per check (items compared, mismatches, the first differences), what was not
compared and why, then `examples_compared: N` and `mismatches: M`; exits 1 when M > 0 and 2 on
bad input. Needs what the reference code imports (pydantic, argdantic; torch and numba for
arc_scoring); `huggingface_hub` is stubbed when it is not installed. One module per comparison
(`sudoku`, `maze`, `arc`, `scoring` with `hrm_notebook`) and `common` for what they share (the
reference import, the report, the folder comparisons).
"""

from __future__ import annotations

import functools
import os
import tempfile
from typing import Optional

import numpy as np

from hrm_jax.tools.data_parity import arc, maze, scoring, sudoku
from hrm_jax.tools.data_parity.common import ParityError, Report

TASKS = ('sudoku', 'maze', 'arc', 'arc_scoring')

_RUNNERS = {
  'sudoku': (sudoku.parity_sudoku, 'dataset/build_sudoku_dataset.py'),
  'maze': (maze.parity_maze, 'dataset/build_maze_dataset.py'),
  'arc': (arc.parity_arc, 'dataset/build_arc_dataset.py'),
  'arc_scoring': (scoring.parity_arc_scoring, 'dataset/common.py'),
}


def run_task(
  task: str,
  repo: str,
  workdir: Optional[str] = None,
  seed: int = 0,
  num_aug: int = 4,
  arc_dedup_probe: bool = True,
) -> Report:
  """Runs one comparison (``TASKS``) against the checkout ``repo``, in ``workdir`` (kept) or a
  temporary folder; ParityError when the checkout lacks what the task needs.
  ``arc_dedup_probe``: task arc only, see ``arc.parity_arc``."""
  if task not in _RUNNERS:
    raise ParityError(f'--task must be one of {TASKS}, got {task!r}')
  runner, needed = _RUNNERS[task]
  if not os.path.isfile(os.path.join(repo, needed)):
    raise ParityError(
      f'{os.path.join(repo, needed)} not found: --repo must be an HRM or TRM checkout'
    )
  if num_aug < 1:
    raise ParityError(f'--num_aug must be >= 1, got {num_aug}')
  if arc_dedup_probe and task == 'arc':
    runner = functools.partial(runner, dedup_probe=True)
  # The references' unseeded draws (Sudoku augmentation) come from the global RNG: seed it so
  # that a run of this tool can be repeated.
  np.random.seed(seed)
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    return runner(repo, workdir, seed, num_aug)
  with tempfile.TemporaryDirectory(prefix='data_parity-') as work:
    return runner(repo, work, seed, num_aug)
