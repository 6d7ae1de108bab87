"""The reference on-disk dataset format (spec §6.1), read and written with validation.

A dataset folder holds one sub-folder per split (``train``, ``test``), each with five arrays per
subset name (always ``all``) and a ``dataset.json``; ``identifiers.json`` sits at the root:

  <dir>/<split>/all__inputs.npy              [N, L]   uint8 tokens (int32 when vocab > 256)
  <dir>/<split>/all__labels.npy              [N, L]   same dtype
  <dir>/<split>/all__puzzle_identifiers.npy  [P]      int32, one id per puzzle (variant)
  <dir>/<split>/all__puzzle_indices.npy      [P + 1]  int32 CSR offsets: examples of puzzle p
  <dir>/<split>/all__group_indices.npy       [G + 1]  int32 CSR offsets: puzzles of group g
  <dir>/<split>/dataset.json                 Metadata
  <dir>/identifiers.json                     list id -> name, index 0 = "<blank>"

Folders built by the PyTorch HRM/TRM builders load unchanged, and ours load in theirs (we always
write ``total_puzzles``, which TRM's metadata model has and HRM's ignores). Every problem with a
folder raises ``DatasetError`` naming the file, before any array is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional

import numpy as np

IGNORE_LABEL_ID = -100  # what the loss ignores; the loader maps ignore_label_id onto it (§6.1)
_ARRAY_NAMES = ('inputs', 'labels', 'puzzle_identifiers', 'puzzle_indices', 'group_indices')
_REQUIRED_FIELDS = (
  'pad_id',
  'ignore_label_id',
  'blank_identifier_id',
  'vocab_size',
  'seq_len',
  'num_puzzle_identifiers',
  'total_groups',
  'mean_puzzle_examples',
  'sets',
)
_INT_FIELDS = (
  'pad_id',
  'blank_identifier_id',
  'vocab_size',
  'seq_len',
  'num_puzzle_identifiers',
  'total_groups',
)
_NULLABLE_INT_FIELDS = ('ignore_label_id', 'total_puzzles')


class DatasetError(ValueError):
  """A dataset folder or source file is missing, unreadable or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Metadata:
  """``dataset.json`` of one split (the reference ``PuzzleDatasetMetadata``, §6.1)."""

  pad_id: int
  ignore_label_id: Optional[int]
  blank_identifier_id: int
  vocab_size: int
  seq_len: int
  num_puzzle_identifiers: int
  total_groups: int
  mean_puzzle_examples: float
  sets: list[str]
  total_puzzles: Optional[int] = None  # TRM only; its Sudoku/Maze builders store #groups here

  def to_json(self) -> str:
    """Returns the JSON text of ``dataset.json``."""
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, data: str | Mapping[str, Any], source: str = 'dataset.json') -> Metadata:
    """Parses JSON text or a decoded dict; unknown keys are ignored (as pydantic does).

    Raises DatasetError naming ``source`` for bad JSON, missing fields or wrong types.
    """
    if isinstance(data, str):
      try:
        data = json.loads(data)
      except json.JSONDecodeError as e:
        raise DatasetError(f'{source}: not valid JSON ({e})') from None
    if not isinstance(data, Mapping):
      raise DatasetError(f'{source}: expected a JSON object, found {type(data).__name__}')
    missing = [k for k in _REQUIRED_FIELDS if k not in data]
    if missing:
      raise DatasetError(f'{source}: missing field(s) {missing}')
    for k in _INT_FIELDS + _NULLABLE_INT_FIELDS:
      v = data.get(k)
      if v is None and k in _NULLABLE_INT_FIELDS:
        continue
      if isinstance(v, bool) or not isinstance(v, int):
        raise DatasetError(f'{source}: field {k!r} must be an integer, found {v!r}')
    mpe = data['mean_puzzle_examples']
    if isinstance(mpe, bool) or not isinstance(mpe, (int, float)):
      raise DatasetError(f"{source}: field 'mean_puzzle_examples' must be a number, found {mpe!r}")
    sets = data['sets']
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
      raise DatasetError(f"{source}: field 'sets' must be a list of strings, found {sets!r}")
    if data['vocab_size'] < 1 or data['seq_len'] < 1 or data['num_puzzle_identifiers'] < 1:
      raise DatasetError(f'{source}: vocab_size, seq_len and num_puzzle_identifiers must be >= 1')
    return cls(
      **{f.name: data.get(f.name) for f in dataclasses.fields(cls)}
      | {'mean_puzzle_examples': float(mpe), 'sets': list(sets)}
    )


@dataclasses.dataclass(frozen=True, eq=False)  # field-wise == is ambiguous for arrays
class Split:
  """One loaded split (§6.1): N examples, P puzzles (variants), G groups (base puzzles).

  ``inputs``/``labels`` are int32 [N, L] with labels equal to ``ignore_label_id`` replaced by -100
  (the reference loader's conversion). With ``load_split(..., mmap=True)`` they are instead the
  read-only memory maps of the files (file dtype, labels unconverted, ``converted`` False); read
  rows through ``take`` to get the int32/-100 form either way.
  """

  metadata: Metadata
  inputs: np.ndarray  # [N, L]
  labels: np.ndarray  # [N, L]
  puzzle_identifiers: np.ndarray  # [P] int32
  puzzle_indices: np.ndarray  # [P + 1] int32
  group_indices: np.ndarray  # [G + 1] int32
  converted: bool = True

  @property
  def num_examples(self) -> int:
    return int(self.inputs.shape[0])

  @property
  def num_puzzles(self) -> int:
    return int(self.puzzle_identifiers.shape[0])

  @property
  def num_groups(self) -> int:
    return int(self.group_indices.shape[0] - 1)

  def take(self, example_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (inputs, labels) int32 [len(idx), L] of the given examples, labels with -100."""
    inputs = np.asarray(self.inputs[example_idx], dtype=np.int32)
    labels = np.asarray(self.labels[example_idx], dtype=np.int32)
    if not self.converted:
      labels = _convert_labels(labels, self.metadata.ignore_label_id)
    return inputs, labels


def _convert_labels(labels: np.ndarray, ignore_label_id: Optional[int]) -> np.ndarray:
  labels = labels.astype(np.int32)  # always a copy: never write into a caller's or mmap array
  if ignore_label_id is not None:
    labels[labels == ignore_label_id] = IGNORE_LABEL_ID
  return labels


def _file(split_dir: str, set_name: str, name: str) -> str:
  return os.path.join(split_dir, f'{set_name}__{name}.npy')


def _check_range(
  arr: np.ndarray, lo: int, hi: int, what: str, where: str, allowed: Optional[int] = None
) -> None:
  """Raises unless every value is in [lo, hi) (or equals ``allowed``); chunked for memory maps."""
  flat = arr.reshape(-1)
  for start in range(0, flat.size, 1 << 24):
    chunk = np.asarray(flat[start : start + (1 << 24)])
    bad = (chunk < lo) | (chunk >= hi)
    if allowed is not None:
      bad &= chunk != allowed
    if bad.any():
      value = chunk[np.argmax(bad)]
      raise DatasetError(f'{where}: {what} {value} outside [{lo}, {hi})')


def _check_offsets(offsets: np.ndarray, length: int, what: str, where: str, strict: bool) -> None:
  """CSR offsets: start at 0, non-decreasing (increasing if ``strict``), end at ``length``."""
  if offsets.size < 1 or offsets[0] != 0:
    first = offsets[0] if offsets.size else 'nothing'
    raise DatasetError(f'{where}: offsets must start at 0, found {first}')
  steps = np.diff(offsets.astype(np.int64))
  bad = steps <= 0 if strict else steps < 0
  if bad.any():
    at = int(np.argmax(bad))
    kind = 'increasing' if strict else 'monotonic'
    raise DatasetError(
      f'{where}: offsets not {kind} at index {at} ({offsets[at]} -> {offsets[at + 1]})'
    )
  if offsets[-1] != length:
    raise DatasetError(f'{where}: last offset {offsets[-1]} != {what} {length}')


def _validate(arrays: Mapping[str, np.ndarray], meta: Metadata, files: Mapping[str, str]) -> None:
  """Checks dtypes, ranks, shapes, token/id ranges and CSR offsets; ``files`` name the arrays."""
  for name in _ARRAY_NAMES:
    arr, ndim = arrays[name], 2 if name in ('inputs', 'labels') else 1
    if arr.dtype.kind not in 'iu':
      raise DatasetError(f'{files[name]}: dtype {arr.dtype} is not an integer type')
    if arr.ndim != ndim:
      raise DatasetError(f'{files[name]}: expected {ndim} dimensions, found shape {arr.shape}')
  inputs, labels = arrays['inputs'], arrays['labels']
  if inputs.shape != labels.shape:
    raise DatasetError(f'{files["labels"]}: shape {labels.shape} != inputs shape {inputs.shape}')
  if inputs.shape[1] != meta.seq_len:
    raise DatasetError(
      f'{files["inputs"]}: seq_len {inputs.shape[1]} != metadata seq_len {meta.seq_len}'
    )
  _check_range(inputs, 0, meta.vocab_size, 'token id', files['inputs'])
  _check_range(
    labels, 0, meta.vocab_size, 'label id', files['labels'], allowed=meta.ignore_label_id
  )
  ids = arrays['puzzle_identifiers']
  _check_range(
    ids, 0, meta.num_puzzle_identifiers, 'puzzle identifier', files['puzzle_identifiers']
  )
  # Empty puzzles are harmless, but an empty group could not be sampled (§6.2).
  _check_offsets(
    arrays['puzzle_indices'],
    inputs.shape[0],
    'number of examples',
    files['puzzle_indices'],
    strict=False,
  )
  _check_offsets(
    arrays['group_indices'], ids.shape[0], 'number of puzzles', files['group_indices'], strict=True
  )
  if arrays['group_indices'].size - 1 != meta.total_groups:
    raise DatasetError(
      f'{files["group_indices"]}: {arrays["group_indices"].size - 1} groups != '
      f'metadata total_groups {meta.total_groups}'
    )


def load_metadata(data_dir: str, split: str = 'train') -> Metadata:
  """Reads ``<data_dir>/<split>/dataset.json`` (§6.1); DatasetError if missing or malformed."""
  if not os.path.isdir(data_dir):
    raise DatasetError(f'{data_dir}: dataset folder does not exist')
  path = os.path.join(data_dir, split, 'dataset.json')
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise DatasetError(f'{path}: cannot read ({e.strerror or e})') from None
  return Metadata.from_json(text, source=path)


def load_split(
  data_dir: str, split: str = 'train', set_name: str = 'all', mmap: bool = False
) -> Split:
  """Loads and validates one split of a §6.1 folder.

  Returns a Split with int32 arrays and labels converted to -100 (or, with ``mmap``, read-only
  memory maps of the token files, for datasets too large to hold as int32). Raises DatasetError
  naming the offending file for any problem, before returning anything.
  """
  meta = load_metadata(data_dir, split)
  split_dir = os.path.join(data_dir, split)
  if set_name not in meta.sets:
    raise DatasetError(
      f'{os.path.join(split_dir, "dataset.json")}: set {set_name!r} not in sets {meta.sets}'
    )
  files = {name: _file(split_dir, set_name, name) for name in _ARRAY_NAMES}
  arrays = {}
  for name, path in files.items():
    if os.path.isdir(path):
      raise DatasetError(f'{path}: is a directory, expected a .npy file')
    if not os.path.isfile(path):
      raise DatasetError(f'{path}: file is missing')
    try:
      mode = 'r' if mmap and name in ('inputs', 'labels') else None
      arrays[name] = np.load(path, mmap_mode=mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
      raise DatasetError(f'{path}: unreadable .npy ({e})') from None
  _validate(arrays, meta, files)
  small = {k: np.asarray(arrays[k], dtype=np.int32) for k in _ARRAY_NAMES[2:]}
  if mmap:
    return Split(meta, arrays['inputs'], arrays['labels'], converted=False, **small)
  return Split(
    meta,
    arrays['inputs'].astype(np.int32),
    _convert_labels(arrays['labels'], meta.ignore_label_id),
    **small,
  )


def write_split(
  data_dir: str,
  split_name: str,
  metadata: Metadata,
  inputs: np.ndarray,
  labels: np.ndarray,
  puzzle_identifiers: np.ndarray,
  puzzle_indices: np.ndarray,
  group_indices: np.ndarray,
  set_name: str = 'all',
) -> None:
  """Writes ``<data_dir>/<split_name>/`` in the §6.1 format after validating the arrays.

  inputs/labels [N, L] (values in [0, vocab), labels may hold ignore_label_id) are stored as uint8
  when vocab_size <= 256 else int32; the index arrays as int32. ``total_puzzles`` defaults to P.
  """
  split_dir = os.path.join(data_dir, split_name)
  token_dtype = np.uint8 if metadata.vocab_size <= 256 else np.int32
  if metadata.total_puzzles is None:
    metadata = dataclasses.replace(metadata, total_puzzles=int(len(puzzle_identifiers)))
  if set_name not in metadata.sets:
    raise DatasetError(f'{split_dir}: set {set_name!r} not in metadata sets {metadata.sets}')
  arrays = {
    'inputs': np.asarray(inputs),
    'labels': np.asarray(labels),
    'puzzle_identifiers': np.asarray(puzzle_identifiers),
    'puzzle_indices': np.asarray(puzzle_indices),
    'group_indices': np.asarray(group_indices),
  }
  files = {name: _file(split_dir, set_name, name) for name in _ARRAY_NAMES}
  _validate(arrays, metadata, files)
  os.makedirs(split_dir, exist_ok=True)
  for name, arr in arrays.items():
    np.save(files[name], arr.astype(token_dtype if name in ('inputs', 'labels') else np.int32))
  with open(os.path.join(split_dir, 'dataset.json'), 'w') as f:
    f.write(metadata.to_json())


def write_identifiers(data_dir: str, names: Sequence[str] = ('<blank>',)) -> None:
  """Writes ``<data_dir>/identifiers.json``: the id -> name list, index 0 being "<blank>"."""
  if not names or names[0] != '<blank>':
    raise ValueError(f"identifiers must start with '<blank>', got {list(names[:1])}")
  with open(os.path.join(data_dir, 'identifiers.json'), 'w') as f:
    json.dump(list(names), f)


@contextlib.contextmanager
def atomic_dataset_dir(final_dir: str, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary sibling folder that is renamed to ``final_dir`` only if the body succeeds.

  On an exception the temporary folder is removed, so a failed build leaves nothing behind. If
  ``final_dir`` already exists at the end it is replaced when ``overwrite``, else FileExistsError
  (e.g. another process finished the same build first).
  """
  final_dir = os.path.abspath(final_dir)
  parent, name = os.path.split(final_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=parent)
  try:
    yield tmp
    if os.path.exists(final_dir):
      if not overwrite:
        raise FileExistsError(f'{final_dir}: already exists')
      # Move the old folder aside first so the new one appears with a single rename.
      trash = tempfile.mkdtemp(prefix=f'.{name}.old-', dir=parent)
      os.rename(final_dir, os.path.join(trash, name))
      os.rename(tmp, final_dir)
      shutil.rmtree(trash, ignore_errors=True)
    else:
      os.rename(tmp, final_dir)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
