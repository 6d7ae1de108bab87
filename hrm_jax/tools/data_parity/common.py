"""What the comparisons of `hrm_jax.tools.data_parity` share: the report, the import of the
reference code (and its Sudoku/Maze builders run on local CSVs), the CSV writer, the exact
comparison of two §6.1 folders, and the checks of augmented variants against their base."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from hrm_jax.data import grids
from hrm_jax.data.format import Metadata, Split, load_split

# The K of pass@K that the ARC scoring comparison reports (the default of TRM's evaluator).
SCORING_KS = (1, 2, 5, 10, 100, 1000)
INDEX_ARRAYS = ('puzzle_identifiers', 'puzzle_indices', 'group_indices')
_REFERENCE_MODULES = ('common', 'dataset', 'evaluators') + tuple(
  f'build_{t}_dataset' for t in ('sudoku', 'maze', 'arc')
)


class ParityError(ValueError):
  """The checkout or the options cannot be compared (bad input: exit code 2)."""


# ---------------------------------------------------------------------------------------------
# The report


@dataclasses.dataclass
class Report:
  """Per-check counts: name -> [items compared, mismatches], the first differences, and what was
  left out of the comparison (with the reason)."""

  checks: dict[str, list[int]] = dataclasses.field(default_factory=dict)
  details: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  skipped: list[str] = dataclasses.field(default_factory=list)
  examples: int = 0
  table: list[str] = dataclasses.field(default_factory=list)

  def count(self, name: str, compared: int, mismatches: int, detail: str = '') -> None:
    """Adds ``compared`` items with ``mismatches`` of them different to check ``name``."""
    c = self.checks.setdefault(name, [0, 0])
    c[0] += int(compared)
    c[1] += int(mismatches)
    if mismatches and detail and len(self.details.setdefault(name, [])) < 3:
      self.details[name].append(detail)

  def expect(self, name: str, ok: bool, detail: str = '') -> None:
    """One item of check ``name``: a mismatch unless ``ok``."""
    self.count(name, 1, 0 if ok else 1, detail)

  def skip(self, what: str) -> None:
    """Records something left out of the comparison (a sentence saying what and why)."""
    if what not in self.skipped:
      self.skipped.append(what)

  @property
  def mismatches(self) -> int:
    """Mismatches over all checks."""
    return sum(m for _, m in self.checks.values())

  def render(self) -> str:
    """The text the command prints."""
    width = max([len(n) for n in self.checks] + [5])
    lines = list(self.table)
    lines.append(f'{"check":<{width}}  compared  mismatches')
    for name, (compared, bad) in self.checks.items():
      lines.append(f'{name:<{width}}  {compared:>8}  {bad:>10}')
      lines += [f'    {d}' for d in self.details.get(name, [])]
    lines += [f'not compared: {s}' for s in self.skipped]
    lines += [f'examples_compared: {self.examples}', f'mismatches: {self.mismatches}']
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# The reference code


def _purge_reference_modules() -> None:
  for name in list(sys.modules):
    if name.split('.')[0] in _REFERENCE_MODULES:
      del sys.modules[name]


@contextlib.contextmanager
def reference_imports(repo: str) -> Iterator[Callable[[str], types.ModuleType]]:
  """Yields an importer of the checkout's modules: PATH/dataset (whose builders do ``from common
  import``) and PATH (``dataset.common``, ``evaluators.arc``) lead sys.path, cached modules of
  those names (another checkout's) are dropped before and after, and a ``huggingface_hub``
  stand-in is installed when the package is missing (the builders import it at load time)."""
  repo = os.path.abspath(repo)
  saved = list(sys.path)
  _purge_reference_modules()
  stub = None
  if importlib.util.find_spec('huggingface_hub') is None:
    stub = types.ModuleType('huggingface_hub')

    def hf_hub_download(repo_id, filename, **unused):
      raise ParityError(f'hf_hub_download({repo_id!r}, {filename!r}) was not redirected')

    stub.hf_hub_download = hf_hub_download
    sys.modules['huggingface_hub'] = stub
  sys.path[:0] = [os.path.join(repo, 'dataset'), repo]

  def load(name: str) -> types.ModuleType:
    try:
      return importlib.import_module(name)
    except ImportError as e:
      raise ParityError(f'{repo}: cannot import the reference module {name!r} ({e})') from None

  try:
    yield load
  finally:
    sys.path[:] = saved
    _purge_reference_modules()
    if stub is not None and sys.modules.get('huggingface_hub') is stub:
      del sys.modules['huggingface_hub']


def _local_download(csv_dir: str) -> Callable[..., str]:
  """An ``hf_hub_download`` that returns ``<csv_dir>/<filename>`` instead of downloading."""

  def hf_hub_download(repo_id, filename, **unused):
    path = os.path.join(csv_dir, filename)
    if not os.path.isfile(path):
      raise ParityError(f'{path}: no local file for {repo_id}/{filename}')
    return path

  return hf_hub_download


def run_reference_csv_builder(repo: str, task: str, csv_dir: str, out_dir: str, **options) -> str:
  """Runs the checkout's ``dataset/build_<task>_dataset.py`` (task sudoku | maze) on the CSVs of
  ``csv_dir``: ``convert_subset`` of train and test with ``DataProcessConfig(**options)``, as its
  command line would. Returns ``out_dir``."""
  with reference_imports(repo) as load:
    builder = load(f'build_{task}_dataset')
    builder.hf_hub_download = _local_download(csv_dir)
    builder.tqdm = lambda it, *a, **k: it  # no progress bars in the report
    config = builder.DataProcessConfig(source_repo='local', output_dir=out_dir, **options)
    for split in ('train', 'test'):
      builder.convert_subset(split, config)
  return out_dir


# ---------------------------------------------------------------------------------------------
# Input CSVs (Sudoku, Maze)


def _write_csv(path: str, rows: Sequence[tuple[str, str, str, int]]) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['source', 'question', 'answer', 'rating'])
    w.writerows(rows)
  return path


def write_csvs(csv_dir: str, train: Sequence, test: Sequence) -> str:
  """Writes ``train.csv`` and ``test.csv`` (rows as ``sudoku.sudoku_rows``/``maze.maze_rows``)
  into csv_dir."""
  _write_csv(os.path.join(csv_dir, 'train.csv'), train)
  _write_csv(os.path.join(csv_dir, 'test.csv'), test)
  return csv_dir


# ---------------------------------------------------------------------------------------------
# Exact comparison of two folders


def read_json(path: str) -> Any:
  """The content of the JSON file ``path``."""
  with open(path) as f:
    return json.load(f)


def compare_metadata(
  ref: Metadata, ours: Metadata, report: Report, where: str, skip: Sequence[str] = ()
) -> None:
  """Counts the differing ``dataset.json`` fields (``total_puzzles`` only where the reference
  writes it; ``skip`` names fields left out)."""
  bad, compared = [], 0
  for field in dataclasses.fields(Metadata):
    a, b = getattr(ref, field.name), getattr(ours, field.name)
    if field.name == 'total_puzzles' and a is None:
      report.skip('metadata total_puzzles: this reference (HRM) does not write the field')
      continue
    if field.name in skip:
      continue
    compared += 1
    same = math.isclose(a, b, rel_tol=1e-12) if isinstance(a, float) else a == b
    if not same:
      bad.append(f'{field.name}: {a!r} (reference) vs {b!r} (ours)')
  report.count(f'{where}.metadata', compared, len(bad), '; '.join(bad))


def compare_rows(ref: np.ndarray, ours: np.ndarray, report: Report, name: str) -> None:
  """Counts the differing rows of two [N, L] arrays (all rows when the shapes differ)."""
  if ref.shape != ours.shape:
    n = max(len(ref), len(ours))
    report.count(name, n, n, f'shape {ref.shape} (reference) vs {ours.shape} (ours)')
    return
  bad = (ref != ours).reshape(len(ref), -1).any(axis=1)
  report.count(name, len(ref), int(bad.sum()), f'first differing row {int(np.argmax(bad))}')


def compare_splits(
  ref: Split, ours: Split, report: Report, where: str, skip_meta: Sequence[str] = ()
) -> None:
  """Every array (row by row for inputs/labels) and the metadata of two loaded splits."""
  for name in ('inputs', 'labels'):
    compare_rows(getattr(ref, name), getattr(ours, name), report, f'{where}.{name}')
  for name in INDEX_ARRAYS:
    a, b = getattr(ref, name), getattr(ours, name)
    report.expect(f'{where}.{name}', np.array_equal(a, b), f'{a[:8]}... vs {b[:8]}...')
  compare_metadata(ref.metadata, ours.metadata, report, where, skip_meta)


def compare_folders(
  ref_dir: str, our_dir: str, report: Report, where: str, skip_meta: Sequence[str] = ()
) -> int:
  """Exact comparison of two §6.1 folders: both splits (metadata but ``skip_meta``) and
  identifiers.json. Returns the number of examples compared."""
  examples = 0
  for split in ('train', 'test'):
    ref, ours = load_split(ref_dir, split), load_split(our_dir, split)
    compare_splits(ref, ours, report, f'{where}/{split}', skip_meta)
    examples += ref.num_examples
  names = [read_json(os.path.join(d, 'identifiers.json')) for d in (ref_dir, our_dir)]
  report.expect(f'{where}/identifiers', names[0] == names[1], f'{names[0]} vs {names[1]}')
  return examples


_TOTAL_PUZZLES_NOTE = (
  "metadata total_puzzles with augmentation: TRM's Sudoku/Maze builders store the number of "
  'groups there, ours the number of puzzles (format.py); TRM reads it only to weight '
  'mean_puzzle_examples, which is 1 here'
)


def metadata_skip(ref_dir: str, report: Report) -> tuple[str, ...]:
  """('total_puzzles',) when the reference's train split stores another count there (TRM)."""
  ref = load_split(ref_dir, 'train')
  if ref.metadata.total_puzzles not in (None, ref.num_puzzles):
    report.skip(_TOTAL_PUZZLES_NOTE)
    return ('total_puzzles',)
  return ()


SUBSAMPLE_NOTE = (
  'subsample_size: the reference draws the subset without a seed, ours with one, so which rows '
  'are kept differs by design (docs/departures.md)'
)


# ---------------------------------------------------------------------------------------------
# Augmented variants: each a transform of its base (Sudoku, Maze); the reference's dihedral table


def check_variants(
  split: Split, is_transform: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], bool]
) -> tuple[int, list[str]]:
  """(variants checked, problems) of a split of one-example puzzles (Sudoku, Maze): every
  puzzle after the first of its group must satisfy ``is_transform(base input, base label,
  variant input, variant label)`` (token rows [L])."""
  if not (np.diff(split.puzzle_indices) == 1).all():
    return 1, ['puzzles do not hold exactly one example each']
  gi, bad, compared = split.group_indices, [], 0
  for g in range(split.num_groups):
    base = gi[g]
    for p in range(gi[g] + 1, gi[g + 1]):
      compared += 1
      ok = is_transform(split.inputs[base], split.labels[base], split.inputs[p], split.labels[p])
      if not ok:
        bad.append(f'group {g}: puzzle {p} is no transform of puzzle {base}')
  return compared, bad


def variants_valid(ref_dir: str, our_dir: str, report: Report, where: str, is_transform) -> None:
  """Every train variant of both folders is a transform of its group's base (``check_variants``)."""
  for label, d in (('reference', ref_dir), ('ours', our_dir)):
    compared, bad = check_variants(load_split(d, 'train'), is_transform)
    report.count(f'{where}/train.variants_valid({label})', compared, len(bad), '; '.join(bad[:1]))


def check_dihedral_table(common: types.ModuleType, report: Report) -> None:
  """The reference ``common.dihedral_transform`` and its inverse table against ``grids``, on a
  non-square grid, for every tid."""
  x = np.arange(15).reshape(3, 5)
  for tid in range(grids.NUM_DIHEDRAL):
    same = np.array_equal(common.dihedral_transform(x, tid), grids.dihedral(x, tid))
    report.expect('dihedral_table', same, f'tid {tid}')
  same = list(common.DIHEDRAL_INVERSE) == list(grids.DIHEDRAL_INVERSE)
  report.expect('dihedral_table', same, f'inverse {common.DIHEDRAL_INVERSE}')
