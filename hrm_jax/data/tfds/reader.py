"""``data.format=tfds``: training and evaluation read a TFDS data source (array_record, no TF).

``prepare`` resolves the run's ``data`` config to a named TFDS config (`configs.resolve`),
builds it through TFDS into ``data.tfds_data_dir`` on first use (default ``<workdir>/tfds``)
and returns a *view*: a small folder with what our evaluators read from a dataset folder
(``identifiers.json``, ``test_puzzles.json``, ``<split>/dataset.json``) and ``tfds.json`` naming
the TFDS dataset. ``load_split`` turns a view into a `format.Split` whose ``inputs``/``labels``
decode rows from the data source on indexing, and whose CSR arrays come from the builder's
``metadata.json``: `loader.py` then runs unchanged (seeded group sampler, exact resume,
multi-host slicing), and example i is row i of the `.npy` build (checked on a sample of rows).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from hrm_jax.config import ConfigError
from hrm_jax.data import build
from hrm_jax.data import format as data_format
from hrm_jax.data.tfds import VIEW_FILE, configs

METADATA_VERSION = 1  # common.METADATA_VERSION (not imported: reading needs no builder code)
_CHECKED_ROWS = 16  # rows per split whose per-example fields are checked against the metadata


def data_dir(data_cfg: Any, workdir: str) -> str:
  """``data.tfds_data_dir``, default ``<workdir>/tfds`` (for a bucket workdir the local data
  cache's ``tfds`` folder, as `build.data_root`)."""
  given = data_cfg.get('tfds_data_dir') or ''
  if given:
    return given
  if '://' in str(workdir):  # the data source is read locally, as memory-mapped .npy folders
    return os.path.join(build.cache_root(), 'tfds')
  return os.path.join(workdir, 'tfds')


def prepare(data_cfg: Any, workdir: str) -> str:
  """The view folder of the TFDS dataset a ``data`` config names, built first if needed.

  A missing dataset is built with ``download_and_prepare(file_format='array_record')``, with
  ``data.csv_dir`` (Sudoku, Maze) or ``data.concept_dir`` (ARC) as TFDS's ``manual_dir``.
  ConfigError for a name that is not one of ours (`configs.resolve`).
  """
  import tensorflow_datasets as tfds

  from hrm_jax.data.tfds import builders  # noqa: F401 (registers them)

  name = configs.resolve(data_cfg)
  root = os.path.normpath(data_dir(data_cfg, workdir))
  builder = tfds.builder(name, data_dir=root)
  if not builder.is_prepared():
    print(f'data: building TFDS {name} in {root} (first use; reused after)', flush=True)
    manual = data_cfg.get('csv_dir') or data_cfg.get('concept_dir') or None
    builder.download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(manual_dir=manual),
    )
  return write_view(name, os.fspath(builder.data_dir), root)


def _metadata(dataset_dir: str) -> dict[str, Any]:
  """The builder metadata (`common.folder_metadata`) of a built TFDS dataset folder."""
  path = os.path.join(dataset_dir, 'metadata.json')
  try:
    with open(path) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise data_format.DatasetError(f'{path}: cannot read the builder metadata ({e})') from None
  if meta.get('hrm_jax_metadata') != METADATA_VERSION:
    raise data_format.DatasetError(
      f'{path}: not an hrm_jax TFDS dataset of metadata version {METADATA_VERSION}'
    )
  return meta


def _write_json(path: str, content: Any) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(content, f)
  os.replace(tmp, path)  # several hosts may write the same view: never a half-written file


def write_view(name: str, dataset_dir: str, root: str) -> str:
  """Writes (or rewrites) the view of the TFDS dataset ``name`` built at ``dataset_dir``:
  ``<root>/hrm_jax_views/<builder>-<config>-<version>/``; returns it."""
  meta = _metadata(dataset_dir)
  version = os.path.basename(os.path.normpath(dataset_dir))
  view = os.path.join(root, 'hrm_jax_views', f'{name.replace("/", "-")}-{version}')
  for split, s in meta['splits'].items():
    _write_json(os.path.join(view, split, 'dataset.json'), s['metadata'])
  _write_json(os.path.join(view, 'identifiers.json'), meta.get('identifiers') or ['<blank>'])
  if 'test_puzzles' in meta:
    _write_json(os.path.join(view, 'test_puzzles.json'), meta['test_puzzles'])
  _write_json(
    os.path.join(view, VIEW_FILE), {'name': name, 'dataset_dir': os.path.abspath(dataset_dir)}
  )
  return view


class _Rows:
  """Decodes rows of a data source, keeping the last request: ``Split.take`` reads inputs and
  labels of the same rows one after the other, and each decode yields both."""

  def __init__(self, source: Any):
    self.source = source
    self._key: tuple[int, ...] = ()
    self._rows: list[dict] = []

  def get(self, idx: np.ndarray) -> list[dict]:
    key = tuple(int(i) for i in idx)
    if key != self._key:
      self._rows, self._key = list(self.source.__getitems__(list(key))), key
    return self._rows


class Column:
  """One [N, L] feature of a data source as a read-only array-like: ``x[idx]`` (an int, a
  slice or an integer array of any shape) decodes those rows; ``shape``, ``dtype``, ``len``."""

  def __init__(self, rows: _Rows, key: str, shape: tuple[int, int], dtype: Any):
    self._rows, self._key = rows, key
    self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), 2

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, idx: Any) -> np.ndarray:
    if isinstance(idx, slice):
      idx = np.arange(self.shape[0])[idx]
    idx = np.asarray(idx)
    if idx.dtype.kind not in 'iu':
      raise TypeError(f'rows are selected by integers or a slice, got {idx.dtype}')
    flat = np.where(idx < 0, idx + self.shape[0], idx).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
      raise IndexError(f'row index out of range [0, {self.shape[0]})')
    out = np.empty((flat.size, self.shape[1]), self.dtype)
    for i, row in enumerate(self._rows.get(flat) if flat.size else []):
      out[i] = row[self._key]
    return out.reshape(idx.shape + (self.shape[1],))

  def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
    del copy
    out = self[np.arange(self.shape[0])]
    return out if dtype is None else out.astype(dtype)


def _check_rows(split: data_format.Split, source: Any, where: str) -> None:
  """DatasetError unless the per-example fields of a seeded sample of rows (first and last
  included) agree with their position and the CSR arrays: the examples are in row order."""
  n = split.num_examples
  rng = np.random.default_rng(0)
  sample = np.unique(np.concatenate([[0, n - 1], rng.integers(n, size=_CHECKED_ROWS)]))
  for i, row in zip(sample, source.__getitems__(sample.tolist())):
    p = int(np.searchsorted(split.puzzle_indices, i, side='right') - 1)
    g = int(np.searchsorted(split.group_indices, p, side='right') - 1)
    want = {'index': i, 'puzzle_index': p, 'group': g}
    want['puzzle_identifier'] = int(split.puzzle_identifiers[p])
    got = {k: int(row[k]) for k in want}
    if got != want:
      raise data_format.DatasetError(
        f'{where}: example {i} has {got}, expected {want}: not in the order of its metadata'
      )


def load_split(view: str, split: str) -> data_format.Split:
  """The ``split`` of a view (`write_view`) as a `format.Split` reading the TFDS data source:
  ``inputs``/``labels`` are `Column`s in the file dtype (labels unconverted, ``converted``
  False: read rows with ``take``), the CSR arrays int32 from the builder metadata. DatasetError
  if the dataset is missing, not ours, or its examples disagree with the metadata."""
  import tensorflow_datasets as tfds

  try:
    with open(os.path.join(view, VIEW_FILE)) as f:
      dataset_dir = json.load(f)['dataset_dir']
  except (OSError, ValueError, KeyError) as e:
    raise data_format.DatasetError(f'{view}: not a TFDS view ({e})') from None
  meta = _metadata(dataset_dir)
  if split not in meta['splits']:
    raise data_format.DatasetError(f'{dataset_dir}: no split {split!r}')
  s = meta['splits'][split]
  metadata = data_format.Metadata.from_json(s['metadata'], source=f'{dataset_dir} ({split})')
  arrays = {k: np.asarray(s[k], np.int32) for k in ('puzzle_identifiers', 'puzzle_indices')}
  arrays['group_indices'] = np.asarray(s['group_indices'], np.int32)
  builder = tfds.builder_from_directory(dataset_dir)
  source = builder.as_data_source(split=split)
  n = int(arrays['puzzle_indices'][-1]) if arrays['puzzle_indices'].size else 0
  if len(source) != n:
    raise data_format.DatasetError(
      f'{dataset_dir}: split {split} has {len(source)} examples, its metadata {n}'
    )
  dtype = builder.info.features['inputs'].np_dtype
  rows = _Rows(source)
  shape = (n, metadata.seq_len)
  out = data_format.Split(
    metadata,
    Column(rows, 'inputs', shape, dtype),
    Column(rows, 'labels', shape, dtype),
    converted=False,
    **arrays,
  )
  if n:
    _check_rows(out, source, f'{dataset_dir} ({split})')
  return out


def check_format(data_cfg: Any) -> str:
  """``data.format`` ('npy' when absent); ConfigError unless 'npy' or 'tfds'."""
  fmt = data_cfg.get('format') or 'npy'
  if fmt not in ('npy', 'tfds'):
    raise ConfigError(f"invalid config: data.format must be 'npy' or 'tfds', got {fmt!r}")
  return fmt
