"""The datasets as TensorFlow Datasets: builders, named configs and the `data.format=tfds` reader.

Three `GeneratorBasedBuilder`s (``sudoku_extreme``, ``maze_hard``, ``arc_agi``; one sub-package
each, TFDS's folder layout) write our datasets as ``array_record`` files, read back with
``tfds.data_source`` and no TensorFlow. Each one runs the task's own `.npy` builder
(`hrm_jax.tasks.<task>.prepare`) into a temporary folder and yields its rows: one
implementation of every augmentation, two writers. Modules:

  configs.py   the named configs as `data.<field>` values (no tfds import: cheap to read)
  common.py    the shared builder: features, examples, metadata, downloads
  reader.py    `data.format=tfds`: build on first use, a `format.Split` over the data source
  builders.py  imports the three builders (``tfds build --imports=hrm_jax.data.tfds.builders``)

This package's ``__init__`` imports nothing heavy: ``is_view`` is called on every load.
"""

from __future__ import annotations

import os

# A reader's view of a TFDS dataset (`reader.write_view`): the small files our evaluators read
# from a dataset folder, and this one, naming the TFDS dataset that holds the examples.
VIEW_FILE = 'tfds.json'


def is_view(data_dir: str) -> bool:
  """Whether ``data_dir`` is a view of a TFDS dataset (`reader.write_view`), not a §6.1 folder."""
  return os.path.isfile(os.path.join(str(data_dir), VIEW_FILE))
