"""`sudoku_extreme`: the HRM/TRM Sudoku-Extreme benchmark, built by `hrm_jax.data.sudoku`.

The published ``train.csv``/``test.csv`` of the Hugging Face dataset
``sapientinc/sudoku-extreme`` (downloaded, or read from ``manual_dir``); the generated configs
(``cpu``, ``tiny``, ``generated_1k_aug1000``) need no download.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hrm_jax.data import sudoku
from hrm_jax.data.tfds import common


class Builder(common.HrmBuilder):
  """Sudoku-Extreme: 9x9 puzzles as 81 tokens (1 = blank, 2..10 = digits), labels the solution."""

  TASK = 'sudoku'
  BUILDER_CONFIGS = common.named_configs('sudoku_extreme')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    'Offline: put train.csv and test.csv of the Hugging Face dataset sapientinc/sudoku-extreme '
    '(https://huggingface.co/datasets/sapientinc/sudoku-extreme) in manual_dir.'
  )
  DESCRIPTION = (
    'Sudoku-Extreme as HRM (arXiv 2506.21734) and TRM (arXiv 2510.04871) train and test on '
    'it: hard 9x9 Sudokus (the published CSVs of sapientinc/sudoku-extreme, drawn from '
    "Kaggle collections, tdoku's benchmarks and other sources, rated by a solver's "
    'backtracks), each row 81 tokens: 0 pad, 1 blank, 2..10 the digits 1..9; labels are the '
    'full solution. A group is a base puzzle with its augmented variants (digit permutation, '
    'transpose, band/row and stack/column permutations), one example each; the training '
    'subsample and augmentations are seeded. Built by hrm_jax.data.sudoku; the generated '
    'configs are puzzles of our generator (far easier: for CPU runs, not the benchmark).'
  )
  HOMEPAGE = 'https://huggingface.co/datasets/sapientinc/sudoku-extreme'
  LICENSE = (
    'See the source dataset card (https://huggingface.co/datasets/sapientinc/sudoku-extreme); '
    'the builder code is Apache-2.0.'
  )

  def _downloads(self, fields: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    if fields['source'] != 'csv':
      return {}
    repo = fields.get('hf_repo') or sudoku.HF_REPO
    return {'csv_dir': {f: common.hf_url(repo, f) for f in ('train.csv', 'test.csv')}}
