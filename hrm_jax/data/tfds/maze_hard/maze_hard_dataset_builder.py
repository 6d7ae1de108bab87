"""`maze_hard`: the HRM/TRM Maze-Hard benchmark (30x30), built by `hrm_jax.data.maze`.

The published ``train.csv``/``test.csv`` of the Hugging Face dataset
``sapientinc/maze-30x30-hard-1k`` (downloaded, or read from ``manual_dir``), with or without the
8 dihedral transforms; the generated configs (``cpu``, ``trm_cpu``) need no download.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hrm_jax.data import maze
from hrm_jax.data.tfds import common


class Builder(common.HrmBuilder):
  """Maze-Hard: square mazes of '# SGo' as tokens 1..5, labels with the shortest path 'o'."""

  TASK = 'maze'
  BUILDER_CONFIGS = common.named_configs('maze_hard')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    'Offline: put train.csv and test.csv of the Hugging Face dataset '
    'sapientinc/maze-30x30-hard-1k (https://huggingface.co/datasets/sapientinc/'
    'maze-30x30-hard-1k) in manual_dir.'
  )
  DESCRIPTION = (
    'Maze-Hard as HRM (arXiv 2506.21734) and TRM (arXiv 2510.04871) train and test on it: '
    '30x30 mazes of Lehnert et al. (2024, arXiv 2402.14083) whose shortest start-goal path is '
    'longer than 110 moves, 1000 for training and 1000 for testing (the published CSVs of '
    'sapientinc/maze-30x30-hard-1k). Tokens: 0 pad, 1 wall, 2 free, 3 start, 4 goal, 5 path; '
    'inputs are the maze, labels the maze with its shortest path marked. The dihedral config '
    'makes each training maze a group of its 8 dihedral transforms. Built by '
    'hrm_jax.data.maze; the generated configs are mazes of our generator with the same '
    'constraints but not the published distribution (for CPU runs).'
  )
  HOMEPAGE = 'https://huggingface.co/datasets/sapientinc/maze-30x30-hard-1k'
  CITATION = (
    common.HRM_CITATION
    + """
@article{lehnert2024beyond,
  title={Beyond A*: Better Planning with Transformers via Search Dynamics Bootstrapping},
  author={Lehnert, Lucas and Sukhbaatar, Sainbayar and Su, DiJia and Zheng, Qinqing and
          McVay, Paul and Rabbat, Michael and Tian, Yuandong},
  journal={arXiv preprint arXiv:2402.14083},
  year={2024}
}"""
  )
  LICENSE = (
    'See the source dataset card (https://huggingface.co/datasets/sapientinc/'
    'maze-30x30-hard-1k); the builder code is Apache-2.0.'
  )

  def _downloads(self, fields: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    if fields['source'] != 'csv':
      return {}
    repo = fields.get('hf_repo') or maze.HF_REPO
    return {'csv_dir': {f: common.hf_url(repo, f) for f in ('train.csv', 'test.csv')}}
