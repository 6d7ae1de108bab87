"""Tasks as plug-ins: one module per task in this package, looked up by `cfg.data.name`.

A task module provides everything the rest of hrm_jax needs to know about its puzzles:

  data_config() -> dict        the `data` config group of its experiments (defaults)
  prepare(data_cfg, workdir)   a dataset folder in the reference format (§6.1), built if needed
  shapes(data_cfg)             (vocab_size, seq_len) of that data, without building it
  evaluator(cfg, data_dir)     its `hrm_jax.evaluators.Evaluator`, or None (token metrics only)
  draw(path, inputs, labels, preds_MxL)   a PNG of one example's prediction(s); returns path
  PAPER_PR                     (PR(z_H), PR(z_L)) the HRM paper reports for it, or None

Adding a task is one module here plus its `experiments/<task>.py`: `get` imports
`hrm_jax.tasks.<name>` by name, so nothing else is edited.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType
from typing import Any

from hrm_jax.config import ConfigError

REQUIRED = ('data_config', 'prepare', 'shapes', 'evaluator', 'draw', 'PAPER_PR')


def names() -> list[str]:
  """The task names this package holds, sorted."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_'))


@functools.cache
def get(name: str) -> ModuleType:
  """The task module `name` (e.g. 'sudoku'); ConfigError naming `data.name` for an unknown one."""
  if name not in names():
    raise ConfigError(
      f'invalid config: data.name: unknown task {name!r}; choose one of {names()} or set data.path'
    )
  module = importlib.import_module(f'{__name__}.{name}')
  missing = [a for a in REQUIRED if not hasattr(module, a)]
  if missing:
    raise TypeError(
      f'task module {module.__name__} lacks {missing} (see hrm_jax/tasks/__init__.py)'
    )
  return module


def prepare_data(cfg: Any, workdir: str) -> str:
  """Resolves `cfg.data` to a dataset folder in the reference format, building it if needed.

  `data.path` set: that folder (validated by the loads that follow), whatever the task.
  `data.format=tfds`: the view of its TFDS dataset, built through TFDS on first use
  (`hrm_jax/data/tfds/reader.py`); read it with `load_split`.
  """
  from hrm_jax.data.tfds import reader

  fmt = reader.check_format(cfg.data)
  if cfg.data.get('path'):
    from hrm_jax.data import build

    return build.localize(cfg.data.path)  # a bucket folder: its local copy
  if fmt == 'tfds':
    return reader.prepare(cfg.data, workdir)
  return get(cfg.data.name).prepare(cfg.data, workdir)


def load_split(data_dir: str, split: str) -> Any:
  """The `format.Split` `split` of what `prepare_data` returned: a folder in the reference
  format memory-mapped, or a TFDS view read from its data source (`data.tfds.reader`)."""
  from hrm_jax.data import tfds as data_tfds

  if data_tfds.is_view(data_dir):
    from hrm_jax.data.tfds import reader

    return reader.load_split(data_dir, split)
  from hrm_jax.data import format as data_format

  return data_format.load_split(data_dir, split, mmap=True)


def shapes(data_cfg: Any) -> tuple[int, int, int]:
  """(vocab_size, seq_len, num_puzzle_identifiers) of the data `data_cfg` names, unbuilt.

  `data.path` set: read from that folder's test metadata. Otherwise the task's sizes with one
  puzzle id: ARC's ~10^6 ids depend on the build (they do not change a step's compute).
  """
  if data_cfg.get('path'):
    from hrm_jax.data import build
    from hrm_jax.data import format as data_format

    meta = data_format.load_split(build.localize(data_cfg.path), 'test', mmap=True).metadata
    return meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers
  return (*get(data_cfg.name).shapes(data_cfg), 1)
