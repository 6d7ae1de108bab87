"""From a ``data`` config to a built dataset folder: the pieces every task's ``prepare`` shares.

A task's ``prepare`` reads its fields with ``config_field`` (errors name ``data.<field>``), names
its folder after every parameter, and calls ``build_once``, which reuses a valid folder under
``<workdir>/data`` and otherwise builds it atomically. ``sudoku`` and ``maze`` describe each
source as a table (``Source``: its ``Field``s, folder-name template and builder) that
``prepare_sources`` runs; ``arc`` reads its fields itself and calls ``prepare_dataset``. The
published Sudoku and Maze CSVs share ``csv_paths`` and ``csv_rows``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional, Union

import numpy as np

from hrm_jax.config import ConfigError
from hrm_jax.data.format import (
  DatasetError,
  Metadata,
  atomic_dataset_dir,
  load_split,
  write_identifiers,
  write_split,
)

REQUIRED = object()


def config_field(
  cfg: Any,
  name: str,
  kind: type,
  default: Any = REQUIRED,
  lo: Optional[float] = None,
  hi: Optional[float] = None,
) -> Any:
  """Reads ``cfg.<name>``, checking its type and range; ConfigError names ``data.<name>``.

  A missing or None field takes ``default`` (ConfigError if there is none). ``kind`` int rejects
  bools; ``lo``/``hi`` bound ints and floats inclusively.
  """
  value = getattr(cfg, name, default)
  if value is None and default is not REQUIRED:
    value = default
  if value is REQUIRED:
    raise ConfigError(f'data.{name} is missing')
  if kind in (int, float):
    numeric = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, numeric):
      raise ConfigError(
        f'data.{name} must be {"an integer" if kind is int else "a number"}, got {value!r}'
      )
    value = kind(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
      raise ConfigError(
        f'data.{name} must be in [{lo}, {"inf" if hi is None else hi}], got {value}'
      )
  elif not isinstance(value, kind):
    raise ConfigError(f'data.{name} must be a {kind.__name__}, got {value!r}')
  return value


def path_tag(*paths: str) -> str:
  """8 hex digits naming local source paths in a dataset folder name (absolute paths hashed)."""
  return hashlib.sha1('|'.join(os.path.abspath(p) for p in paths).encode()).hexdigest()[:8]


def summary(values: np.ndarray) -> dict[str, float]:
  """{'min', 'max', 'mean'} of a 1-D array for build records; {} when it is empty."""
  if not len(values):
    return {}
  return {'min': int(values.min()), 'max': int(values.max()), 'mean': float(values.mean())}


def unseen(train: np.ndarray, test: np.ndarray) -> np.ndarray:
  """bool [m]: which test rows [m, L] equal no train row [n, L] (compared as raw bytes, so both
  arrays should share a dtype)."""
  seen = {row.tobytes() for row in train}
  return np.array([row.tobytes() not in seen for row in test], bool)


def generator_info(
  version: Any, params: Mapping[str, Any], started: float, fresh: np.ndarray
) -> dict[str, Any]:
  """The common head of a generated dataset's ``generator.json``: builder version, parameters,
  seconds since ``started`` (a ``time.time()``) and how many test items ``fresh`` (``unseen``)
  dropped."""
  return {
    'version': version,
    'params': dict(params),
    'seconds': round(time.time() - started, 3),
    'test_dropped_duplicates': int((~fresh).sum()),
  }


def write_single_example_puzzles(
  out_dir: str,
  splits: Mapping[str, tuple[np.ndarray, np.ndarray, int]],
  make_metadata: Callable[[int, int], Metadata],
  overwrite: bool,
  extra_files: Mapping[str, Any],
) -> None:
  """Writes a §6.1 dataset whose puzzles hold one example each and share puzzle id 0 (Sudoku,
  Maze), atomically at ``out_dir``.

  splits: name -> (inputs [N, L], labels [N, L] tokens, puzzles per group), groups being runs
  of consecutive puzzles (a base puzzle and its variants). ``make_metadata(groups, puzzles)``
  gives each split's metadata; ``extra_files`` (name -> JSON object) are written at the root.
  """
  with atomic_dataset_dir(out_dir, overwrite=overwrite) as tmp:
    for split, (inputs, labels, per_group) in splits.items():
      groups, puzzles = len(inputs) // per_group, len(inputs)
      write_split(
        tmp,
        split,
        make_metadata(groups, puzzles),
        inputs,
        labels,
        np.zeros(puzzles, np.int32),
        np.arange(puzzles + 1, dtype=np.int32),
        np.arange(groups + 1, dtype=np.int32) * per_group,
      )
    write_identifiers(tmp, ['<blank>'])
    for name, content in extra_files.items():
      with open(os.path.join(tmp, name), 'w') as f:
        json.dump(content, f, indent=1)


def check_built(path: str) -> str:
  """Validates an existing dataset folder (both splits; DatasetError naming the file) and
  returns it."""
  for split in ('train', 'test'):
    load_split(path, split, mmap=True)
  return path


def is_built(out: str, version_file: Optional[str] = None, version: Any = None) -> bool:
  """True if ``out`` holds a valid dataset and, when ``version_file`` is given, that JSON file's
  ``version`` equals ``version`` (so a changed generator rebuilds its cached datasets)."""
  if not os.path.isdir(out):
    return False
  try:
    check_built(out)
    if version_file is not None:
      with open(os.path.join(out, version_file)) as f:
        return json.load(f).get('version') == version
  except (DatasetError, OSError, ValueError):
    return False
  return True


def build_once(
  out: str,
  build: Callable[..., Any],
  version_file: Optional[str] = None,
  version: Any = None,
) -> str:
  """Returns ``out``, first calling ``build(out, overwrite=...)`` unless ``is_built`` says it is
  there already. An invalid leftover is replaced; if another process finishes the same build
  first, its folder is used."""
  if is_built(out, version_file, version):
    return out
  print(f'data: building {out} (first use; reused after)', flush=True)
  t0 = time.time()
  try:
    build(out, overwrite=os.path.exists(out))
  except FileExistsError:
    if not is_built(out, version_file, version):
      raise
  print(f'data: built in {time.time() - t0:.1f} s', flush=True)
  return out


Plan = Callable[[Any], tuple[str, Callable[..., Any]]]


def cache_root() -> str:
  """The local folder for datasets of bucket workdirs and copies of bucket datasets:
  `$HRM_JAX_DATA_CACHE`, default `~/.cache/hrm_jax/data`."""
  return os.environ.get('HRM_JAX_DATA_CACHE') or os.path.expanduser('~/.cache/hrm_jax/data')


def data_root(workdir: str) -> str:
  """Where a run's generated datasets are built: `<workdir>/data` for a local workdir; for a
  bucket workdir (`gs://...`) the local `cache_root()`, as training memory-maps the arrays."""
  return os.path.join(workdir, 'data') if '://' not in str(workdir) else cache_root()


def localize(path: str) -> str:
  """`path` itself when local; a dataset folder in a bucket is copied once into
  `<cache_root()>/remote/<hash>-<name>` (all its files, atomically: a temporary folder renamed
  when complete) and that local copy is returned, since the arrays are memory-mapped."""
  if '://' not in str(path) or str(path).startswith('file://'):
    return str(path).removeprefix('file://')
  from etils import epath

  src = epath.Path(path)
  if not src.is_dir():
    raise DatasetError(f'{path}: dataset folder does not exist')
  key = hashlib.sha1(str(path).encode()).hexdigest()[:10]
  out = os.path.join(cache_root(), 'remote', f'{key}-{src.name}')
  if os.path.isdir(out):
    return out
  tmp = f'{out}.tmp-{os.getpid()}'
  for f in src.rglob('*'):
    if not f.is_dir():
      dest = os.path.join(tmp, str(f.relative_to(src)))
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      with open(dest, 'wb') as fh:
        fh.write(f.read_bytes())
  try:
    os.rename(tmp, out)
  except OSError:  # another process copied it first
    shutil.rmtree(tmp, ignore_errors=True)
  return out


def prepare_dataset(
  data_cfg: Any,
  workdir: str,
  plans: Mapping[str, Plan],
  default_source: str,
  versions: Optional[Mapping[str, tuple[str, Any]]] = None,
) -> str:
  """A task's ``prepare``: resolves its ``data`` config to a dataset folder, building it once.

  ``data.path`` non-empty: that folder is validated and returned. Otherwise ``plans[source]``
  (``data.source``, default ``default_source``) reads the config (ConfigError naming
  ``data.<field>``) and returns (folder name encoding every parameter, builder); the folder
  ``<workdir>/data/<name>`` is built once and reused while valid. ``versions[source]`` =
  (JSON file, version) makes a build from another builder version count as stale.
  """
  path = config_field(data_cfg, 'path', str, '')
  if path:
    return check_built(localize(path))
  source = config_field(data_cfg, 'source', str, default_source)
  if source not in plans:
    raise ConfigError(f'data.source must be one of {sorted(plans)}, got {source!r}')
  name, builder = plans[source](data_cfg)
  version_file, version = (versions or {}).get(source, (None, None))
  return build_once(os.path.join(data_root(workdir), name), builder, version_file, version)


@dataclasses.dataclass(frozen=True)
class Field:
  """One ``data.<name>`` field in a ``Source`` table.

  Read by ``config_field`` with ``kind``, ``default`` and the inclusive bounds ``lo``/``hi``, then
  ``check``ed (if given) against the fields read so far, ConfigError for a cross-field conflict.
  Passed to the builder as keyword ``arg`` (default ``name``), None in place of 0 where
  ``none_if_zero``; shown in the folder name where the template has ``{<name>}``, a bool as 0/1,
  0 as ``zero_tag`` where one is given, and any other value after ``prefix`` (so that a field
  added later can stay out of the names of existing folders: ``zero_tag=''``).
  """

  name: str
  kind: type
  default: Any = REQUIRED
  lo: Optional[float] = None
  hi: Optional[float] = None
  check: Optional[Callable[[Mapping[str, Any]], None]] = None
  arg: Optional[str] = None
  none_if_zero: bool = False
  zero_tag: Optional[str] = None
  prefix: str = ''

  def read(self, cfg: Any) -> Any:
    """The field's value in ``cfg`` (``config_field``)."""
    return config_field(cfg, self.name, self.kind, self.default, self.lo, self.hi)

  def builder_args(self, value: Any) -> dict[str, Any]:
    """{builder keyword: argument} for ``value``."""
    return {self.arg or self.name: None if self.none_if_zero and value == 0 else value}

  def tag(self, value: Any) -> str:
    """``value`` as written in the folder name."""
    if self.zero_tag is not None and value == 0:
      return self.zero_tag
    return self.prefix + (str(int(value)) if isinstance(value, bool) else str(value))


@dataclasses.dataclass(frozen=True)
class CsvOrigin:
  """Where a CSV source's files come from, as an entry of its ``Source`` table.

  Reads ``data.csv_dir`` (default '') and ``data.hf_repo`` (default ``default_repo``); the builder
  gets ``csv_dir`` (None when empty: download instead) and ``hf_repo``. ``{origin}`` in the folder
  name is ``dir`` and ``path_tag`` of a local csv_dir, else the repo with '/' as '_'.
  """

  default_repo: str
  name = 'origin'  # its key in the folder-name template (class constants, not dataclass fields)
  check = None

  def read(self, cfg: Any) -> tuple[str, str]:
    """(csv_dir, hf_repo) of ``cfg``."""
    return (
      config_field(cfg, 'csv_dir', str, ''),
      config_field(cfg, 'hf_repo', str, self.default_repo),
    )

  def builder_args(self, value: tuple[str, str]) -> dict[str, Any]:
    """{'csv_dir': local folder or None, 'hf_repo': repo}."""
    csv_dir, hf_repo = value
    return {'csv_dir': csv_dir or None, 'hf_repo': hf_repo}

  def tag(self, value: tuple[str, str]) -> str:
    """The folder-name tag of (csv_dir, hf_repo)."""
    csv_dir, hf_repo = value
    return f'dir{path_tag(csv_dir)}' if csv_dir else hf_repo.replace('/', '_')


@dataclasses.dataclass(frozen=True)
class Source:
  """One ``data.source`` of a task, as a table: ``fields`` (read in this order), the folder-name
  template ``name`` (``str.format`` over the fields' tags by name), the ``builder`` that gets the
  fields' arguments, and (JSON file, version) where a cached build must match the builder's
  version."""

  fields: tuple[Union[Field, CsvOrigin], ...]
  name: str
  builder: Callable[..., Any]
  version: Optional[tuple[str, Any]] = None


def plan_source(cfg: Any, source: Source) -> tuple[str, Callable[..., Any]]:
  """(folder name, builder bound to every field's argument) of a config for ``source``.

  Fields are read and checked in table order, so the first bad one gives the ConfigError.
  """
  values, tags, args = {}, {}, {}
  for field in source.fields:
    value = values[field.name] = field.read(cfg)
    if field.check is not None:
      field.check(values)
    tags[field.name] = field.tag(value)
    args.update(field.builder_args(value))
  return source.name.format(**tags), functools.partial(source.builder, **args)


def prepare_sources(
  data_cfg: Any, workdir: str, sources: Mapping[str, Source], default_source: str
) -> str:
  """``prepare_dataset`` for a task whose sources are ``Source`` tables (``plan_source``), each
  with its own builder version where it has one."""
  return prepare_dataset(
    data_cfg,
    workdir,
    {key: functools.partial(plan_source, source=source) for key, source in sources.items()},
    default_source,
    {key: source.version for key, source in sources.items() if source.version is not None},
  )


# ---------------------------------------------------------------------------------------------
# The published CSVs (Sudoku-Extreme, Maze-Hard)

CSV_COLUMNS = ('source', 'question', 'answer', 'rating')
_CSV_HINT = 'point data.csv_dir at a folder holding train.csv and test.csv'


def csv_paths(csv_dir: Optional[str], hf_repo: str) -> dict[str, str]:
  """{'train', 'test'} -> that split's CSV: ``<csv_dir>/<split>.csv`` when csv_dir is given,
  else downloaded from the Hugging Face dataset ``hf_repo`` (``download_hf``)."""
  return {
    s: os.path.join(csv_dir, f'{s}.csv') if csv_dir else download_hf(hf_repo, f'{s}.csv', _CSV_HINT)
    for s in ('train', 'test')
  }


def csv_rows(path: str) -> Iterator[tuple[int, list[str]]]:
  """(1-based line, fields) of each non-blank row after the header ``CSV_COLUMNS``.

  DatasetError naming the file (and line) if it is missing, its header differs, or a row does not
  have one field per column.
  """
  if not os.path.isfile(path):
    raise DatasetError(f'{path}: CSV file does not exist')
  with open(path, newline='', encoding='utf-8-sig') as f:  # -sig: tolerate a byte-order mark
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_COLUMNS:
      raise DatasetError(
        f'{path}: expected header {",".join(CSV_COLUMNS)}, found '
        f'{",".join(header) if header else "an empty file"}'
      )
    for row in reader:
      if not row:  # blank line
        continue
      if len(row) != len(CSV_COLUMNS):
        raise DatasetError(
          f'{path}:{reader.line_num}: expected {len(CSV_COLUMNS)} fields, found {len(row)}'
        )
      yield reader.line_num, row


def download_hf(hf_repo: str, filename: str, local_hint: str) -> str:
  """Path of ``filename`` from the Hugging Face dataset ``hf_repo`` (downloaded or cached).

  DatasetError, ending with ``local_hint`` (how to point the config at local files), when
  huggingface_hub is missing or the download fails.
  """
  try:
    from huggingface_hub import hf_hub_download  # only needed online
  except ImportError:
    raise DatasetError(
      f'{hf_repo}/{filename}: huggingface_hub is not installed; install it '
      f'(pip install -e ".[hub]" in the hrm_jax checkout) or {local_hint}'
    ) from None
  try:
    return hf_hub_download(repo_id=hf_repo, filename=filename, repo_type='dataset')
  except Exception as e:  # network, auth, missing repo: all end the same way
    raise DatasetError(
      f'{hf_repo}/{filename}: download from the Hugging Face dataset failed '
      f'({type(e).__name__}: {e}); download it yourself and {local_hint}'
    ) from e
