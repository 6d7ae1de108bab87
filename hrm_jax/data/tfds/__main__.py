"""Builds one of our TFDS datasets (array_record, no TensorFlow) and prints where it landed.

  python -m hrm_jax.data.tfds sudoku_extreme/cpu --data_dir=~/tensorflow_datasets
  python -m hrm_jax.data.tfds sudoku_extreme/1k_aug1000 --manual_dir=DIR   # offline CSVs

The same as ``tfds build --imports=hrm_jax.data.tfds.builders <name> --file_format=array_record``;
``--list`` prints the names (docs/data.md, "TensorFlow Datasets").
"""

from __future__ import annotations

import os
import time

from absl import app, flags

_DATA_DIR = flags.DEFINE_string('data_dir', '~/tensorflow_datasets', 'TFDS data_dir')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', '', 'local copies of the source files')
_REGISTER = flags.DEFINE_bool(
  'register_checksums', False, "record the downloads' checksums in the builder's checksums.tsv"
)
_LIST = flags.DEFINE_bool('list', False, 'print the dataset names and exit')


def main(argv: list[str]) -> None:
  import tensorflow_datasets as tfds

  from hrm_jax.data.tfds import builders, configs

  del builders  # imported to register them with TFDS
  if _LIST.value:
    print('\n'.join(configs.names()))
    return
  if len(argv) != 2 or argv[1] not in configs.names():
    raise app.UsageError(f'give one dataset name, one of {configs.names()}')
  builder = tfds.builder(argv[1], data_dir=os.path.expanduser(_DATA_DIR.value))
  started = time.time()
  builder.download_and_prepare(
    file_format='array_record',
    download_config=tfds.download.DownloadConfig(
      manual_dir=_MANUAL_DIR.value or None, register_checksums=_REGISTER.value
    ),
  )
  size = sum(
    os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(builder.data_dir) for f in fs
  )
  print(f'{argv[1]}: {builder.data_dir} ({size / 1e6:.1f} MB, {time.time() - started:.0f} s)')


if __name__ == '__main__':
  app.run(main)
