"""From a ``data`` config to a built dataset folder: the pieces every task's ``prepare`` shares.

A task module (``sudoku``, ``maze``, ``arc``) reads its fields with ``config_field`` (errors
name ``data.<field>``), names its folder after every parameter, and calls ``build_once``, which
reuses a valid folder under ``<workdir>/data`` and otherwise builds it atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, Optional

import numpy as np
from absl import logging

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


def csv_source(cfg: Any, default_repo: str) -> tuple[Optional[str], str, str]:
  """(local csv_dir or None, hf_repo, folder-name tag) of a config reading published CSVs from
  ``data.csv_dir`` or, when that is empty, the Hugging Face dataset ``data.hf_repo``."""
  csv_dir = config_field(cfg, 'csv_dir', str, '')
  hf_repo = config_field(cfg, 'hf_repo', str, default_repo)
  tag = f'dir{path_tag(csv_dir)}' if csv_dir else hf_repo.replace('/', '_')
  return csv_dir or None, hf_repo, tag


def summary(values: np.ndarray) -> dict[str, float]:
  """{'min', 'max', 'mean'} of a 1-D array for build records; {} when it is empty."""
  if not len(values):
    return {}
  return {'min': int(values.min()), 'max': int(values.max()), 'mean': float(values.mean())}


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
  logging.info('building dataset %s', out)
  try:
    build(out, overwrite=os.path.exists(out))
  except FileExistsError:
    if not is_built(out, version_file, version):
      raise
  return out


Plan = Callable[[Any], tuple[str, Callable[..., Any]]]


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
    return check_built(path)
  source = config_field(data_cfg, 'source', str, default_source)
  if source not in plans:
    raise ConfigError(f'data.source must be one of {sorted(plans)}, got {source!r}')
  name, builder = plans[source](data_cfg)
  version_file, version = (versions or {}).get(source, (None, None))
  return build_once(os.path.join(workdir, 'data', name), builder, version_file, version)


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
      f'(pip install "hrm_jax[hub]") or {local_hint}'
    ) from None
  try:
    return hf_hub_download(repo_id=hf_repo, filename=filename, repo_type='dataset')
  except Exception as e:  # network, auth, missing repo: all end the same way
    raise DatasetError(
      f'{hf_repo}/{filename}: download from the Hugging Face dataset failed '
      f'({type(e).__name__}: {e}); download it yourself and {local_hint}'
    ) from e
