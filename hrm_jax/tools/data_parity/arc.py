"""ARC (spec §6.6): the reference's `build_arc_dataset.py` against `hrm_jax.data.arc` on the
same small tasks, written both as task files (HRM's builder reads those) and as Kaggle's
combined files (TRM's); both folders are decoded and compared per task (see the package
docstring). The task writers, our build and `decode_canvas` also serve `scoring`."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from hrm_jax.data import arc as arc_data
from hrm_jax.data import grids
from hrm_jax.data.format import load_split
from hrm_jax.tools.data_parity.common import (
  ParityError,
  Report,
  check_dihedral_table,
  compare_metadata,
  read_json,
  reference_imports,
)

ARC_SUBSETS = ('training', 'evaluation')
ARC_TEST_SUBSET = 'evaluation'


# ---------------------------------------------------------------------------------------------
# Input tasks and the builders


def arc_tasks(
  rng: np.random.Generator,
  num_train: int = 2,
  eval_tests: Sequence[int] = (1, 2, 1, 1),
  dedup_probe: bool = False,
) -> dict[str, dict[str, dict]]:
  """Small ARC tasks: ``{'training': {id: task}, 'evaluation': {id: task}}`` (§6.6 JSON).

  ``num_train`` training tasks and one evaluation task per entry of ``eval_tests`` (its number of
  test inputs), in that order. Each task has 2-3 demonstrations; grids are 2..5 × 2..5 with at
  least three distinct non-black colours (so 1 + 7 distinct augmentations always exist) and the
  output a fixed function of the input (transpose, colour shift or flip: shapes may differ).
  ``dedup_probe`` adds training task ``probe0f1``: black and blue grids whose output is the
  left-right flip, so that flip composed with a transform swaps inputs and outputs; it has 72
  variants that differ as (input, output) pairs but only 36 that differ as sets of grids.
  """

  def grid(h: int, w: int) -> np.ndarray:
    g = rng.integers(0, 10, (h, w))
    g.reshape(-1)[:3] = rng.choice(np.arange(1, 10), 3, replace=False)
    return g

  rules = (lambda x: x.T, lambda x: (x + 1) % 10, lambda x: x[::-1])

  def task(n_test: int) -> dict:
    rule = rules[int(rng.integers(len(rules)))]
    pairs = [grid(*rng.integers(2, 6, 2)) for _ in range(int(rng.integers(2, 4)) + n_test)]
    pairs = [{'input': x.tolist(), 'output': rule(x).tolist()} for x in pairs]
    return {'train': pairs[n_test:], 'test': pairs[:n_test]}

  ids = iter(dict.fromkeys(f'{int(v):08x}' for v in rng.integers(16**8, size=64)))
  out = {
    'training': {next(ids): task(1) for _ in range(num_train)},
    'evaluation': {next(ids): task(n) for n in eval_tests},
  }
  if dedup_probe:
    pairs = [rng.integers(0, 2, (3, 4)) for _ in range(3)]
    pairs = [{'input': x.tolist(), 'output': x[:, ::-1].tolist()} for x in pairs]
    out['training']['probe0f1'] = {'train': pairs[1:], 'test': pairs[:1]}
  return out


@dataclasses.dataclass(frozen=True)
class ArcSources:
  """Where ``write_arc_tasks`` put the tasks: ``folder/<subset>/<id>.json`` (HRM's layout) and
  ``<prefix>_<subset>_challenges.json`` + ``_solutions.json`` (Kaggle's, TRM's)."""

  folder: str
  prefix: str


def write_arc_tasks(root: str, tasks: Mapping[str, Mapping[str, dict]]) -> ArcSources:
  """Writes ``tasks`` (``arc_tasks``) in both source layouts under ``root``."""
  sources = ArcSources(os.path.join(root, 'folder'), os.path.join(root, 'combined', 'arc-agi'))
  os.makedirs(os.path.dirname(sources.prefix), exist_ok=True)
  for subset, by_id in tasks.items():
    os.makedirs(os.path.join(sources.folder, subset), exist_ok=True)
    for task_id, task in by_id.items():
      with open(os.path.join(sources.folder, subset, f'{task_id}.json'), 'w') as f:
        json.dump(task, f)  # 'train' before 'test': the order the reference appends them in
    challenges = {
      k: {'train': t['train'], 'test': [{'input': p['input']} for p in t['test']]}
      for k, t in by_id.items()
    }
    solutions = {k: [p['output'] for p in t['test']] for k, t in by_id.items()}
    for kind, content in (('challenges', challenges), ('solutions', solutions)):
      with open(f'{sources.prefix}_{subset}_{kind}.json', 'w') as f:
        json.dump(content, f)
  return sources


def arc_builder_layout(repo: str) -> str:
  """'folder' (HRM's builder: ``dataset_dirs`` of subset folders) or 'combined' (TRM's:
  ``input_file_prefix`` of Kaggle files), read from the checkout's ARC builder config."""
  with reference_imports(repo) as load:
    fields = load('build_arc_dataset').DataProcessConfig.model_fields
  if 'dataset_dirs' in fields:
    return 'folder'
  if 'input_file_prefix' in fields:
    return 'combined'
  raise ParityError(f'{repo}: unknown ARC builder config fields {sorted(fields)}')


def run_reference_arc(repo: str, sources: ArcSources, out_dir: str, num_aug: int, seed: int) -> str:
  """Runs the checkout's ``dataset/build_arc_dataset.py`` ``convert_dataset`` on ``sources``
  (evaluation = the test subset) into ``out_dir``; returns what it printed."""
  with reference_imports(repo) as load, contextlib.redirect_stdout(io.StringIO()) as printed:
    builder = load('build_arc_dataset')
    if 'dataset_dirs' in builder.DataProcessConfig.model_fields:
      config = builder.DataProcessConfig(
        dataset_dirs=[sources.folder], output_dir=out_dir, seed=seed, num_aug=num_aug
      )
    else:
      config = builder.DataProcessConfig(
        input_file_prefix=sources.prefix,
        output_dir=out_dir,
        subsets=list(ARC_SUBSETS),
        test_set_name=ARC_TEST_SUBSET,
        seed=seed,
        num_aug=num_aug,
      )
    builder.convert_dataset(config)
  return printed.getvalue()


def run_ours_arc(sources: ArcSources, layout: str, out_dir: str, num_aug: int, seed: int) -> None:
  """Builds the same tasks with ``hrm_jax.data.arc.build``, read from the same layout
  (``load_folder`` or ``load_combined``) as the reference builder reads."""
  subsets = []
  for s in ARC_SUBSETS:
    if layout == 'folder':
      subsets.append((s, arc_data.load_folder(os.path.join(sources.folder, s))))
    else:
      prefix = f'{sources.prefix}_{s}'
      subsets.append(
        (s, arc_data.load_combined(f'{prefix}_challenges.json', f'{prefix}_solutions.json'))
      )
  arc_data.build(out_dir, subsets, [ARC_TEST_SUBSET], num_aug=num_aug, seed=seed)


# ---------------------------------------------------------------------------------------------
# Decoding and comparing ARC folders


def decode_canvas(tokens: np.ndarray, canvas: int = grids.CANVAS) -> tuple[np.ndarray, int, int]:
  """(grid uint8 [h, w], r0, c0) of a colour grid placed anywhere on a canvas [canvas²] of
  tokens (§6.6; the loader's -100 labels count as PAD). ValueError unless the tokens are
  exactly ``grids.encode_grid(grid, r0, c0)``, which undoes and checks the translation."""
  t = np.asarray(tokens).reshape(canvas, canvas)
  t = np.where(t < 0, grids.PAD, t)
  rows, cols = np.nonzero(t != grids.PAD)
  if not rows.size:
    raise ValueError('empty canvas')
  r0, c0 = int(rows.min()), int(cols.min())
  shifted = np.full_like(t, grids.PAD)
  shifted[: canvas - r0, : canvas - c0] = t[r0:, c0:]
  grid = grids.crop(shifted.reshape(-1), canvas)
  if not grid.size or not np.array_equal(grids.encode_grid(grid, r0, c0, canvas), t.reshape(-1)):
    raise ValueError(f'tokens at ({r0}, {c0}) are not one EOS-marked grid')
  return grid, r0, c0


@dataclasses.dataclass
class ArcVariant:
  """One puzzle (augmented variant) of an ARC split, decoded: its pairs in the variant's frame
  (translation undone) and their offsets on the canvas."""

  pid: int
  name: str
  tid: int
  colour_map: np.ndarray  # uint8 [10]
  pairs: list[tuple[np.ndarray, np.ndarray]]
  offsets: list[tuple[int, int]]

  def base_pairs(self) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pairs with the named transform inverted (inverse dihedral, inverse colour map)."""
    return [
      tuple(grids.unaugment_grid(g, self.tid, self.colour_map) for g in p) for p in self.pairs
    ]


def _same_pairs(a: Sequence[tuple], b: Sequence[tuple]) -> bool:
  return len(a) == len(b) and all(
    np.array_equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb)
  )


def read_arc_split(
  data_dir: str, split: str, report: Report, where: str
) -> dict[str, list[ArcVariant]]:
  """{task id: its group's variants in order} of one split, decoding every example (problems
  are counted in ``report`` as ``<where>.decode`` and ``<where>.groups``)."""
  s = load_split(data_dir, split)
  names = read_json(os.path.join(data_dir, 'identifiers.json'))
  out: dict[str, list[ArcVariant]] = {}
  gi, pi = s.group_indices, s.puzzle_indices
  for g in range(s.num_groups):
    variants, tasks = [], set()
    for p in range(gi[g], gi[g + 1]):
      pid = int(s.puzzle_identifiers[p])
      try:
        task, tid, colour_map = grids.parse_variant_name(names[pid])
      except (ValueError, IndexError) as e:
        report.expect(f'{where}.decode', False, f'puzzle {p}: {e}')
        continue
      v = ArcVariant(pid, names[pid], tid, colour_map, [], [])
      for e in range(pi[p], pi[p + 1]):
        try:
          x, r0, c0 = decode_canvas(s.inputs[e])
          y, r1, c1 = decode_canvas(s.labels[e])
          ok = (r0, c0) == (r1, c1)
        except ValueError as err:
          ok, detail = False, f'example {e}: {err}'
        else:
          detail = f'example {e}: input at ({r0}, {c0}), label at ({r1}, {c1})'
          v.pairs.append((x, y))
          v.offsets.append((r0, c0))
        report.expect(f'{where}.decode', ok, detail)
      tasks.add(task)
      variants.append(v)
    report.expect(
      f'{where}.groups', len(tasks) == 1 and not tasks & set(out), f'group {g}: {tasks}'
    )
    if len(tasks) == 1:
      out[tasks.pop()] = variants
  return out


def check_arc_folder(data_dir: str, report: Report, label: str) -> dict[str, dict[str, list]]:
  """Decodes both splits of an ARC folder and checks it on its own; returns {split: {task:
  variants}}. Checks: the first variant of a group is the identity; every other inverts to it;
  variants of a task differ; test pairs sit at (0, 0) and each train variant keeps one pair at
  (0, 0); a variant has one identifier, the same in both splits; identifiers.json starts with
  '<blank>' and its length is num_puzzle_identifiers."""
  names = read_json(os.path.join(data_dir, 'identifiers.json'))
  out = {}
  for split in ('train', 'test'):
    tasks = out[split] = read_arc_split(data_dir, split, report, f'{label}/{split}')
    meta = load_split(data_dir, split).metadata
    report.expect(
      f'{label}/identifiers',
      meta.num_puzzle_identifiers == len(names) and names[0] == '<blank>',
      f'{split}: num_puzzle_identifiers {meta.num_puzzle_identifiers}, {len(names)} names',
    )
    for task, variants in tasks.items():
      first = variants[0]
      identity = first.tid == 0 and np.array_equal(first.colour_map, np.arange(10))
      report.expect(f'{label}/{split}.first_is_base', identity, f'{task}: {first.name}')
      base = first.base_pairs()
      for v in variants[1:]:
        report.expect(f'{label}/{split}.variants_invert', _same_pairs(v.base_pairs(), base), v.name)
      for v in variants:
        at_origin = [o == (0, 0) for o in v.offsets]
        ok = all(at_origin) if split == 'test' else any(at_origin)
        report.expect(f'{label}/{split}.offsets', ok, f'{v.name}: {v.offsets}')
  for task in out['train']:
    by_name: dict[str, list] = {}
    for split in ('train', 'test'):
      for v in out[split].get(task, []):
        by_name.setdefault(v.name, []).append(v)
    contents = set()
    for name, vs in by_name.items():
      report.expect(f'{label}/variant_ids', len({v.pid for v in vs}) == 1, name)
      # Distinct as the reference's puzzle_hash tells them: sorted (input, output) pair hashes.
      pairs = [tuple(grids.grid_hash(g) for g in pair) for v in vs for pair in v.pairs]
      contents.add(tuple(sorted(pairs)))
    report.expect(f'{label}/variants_distinct', len(contents) == len(by_name), task)
    if task in out['test']:
      same = [v.name for v in out['test'][task]] == [v.name for v in out['train'][task]]
      report.expect(f'{label}/test_variants_are_train_variants', same, task)
  return out


def expected_arc_pairs(
  tasks: Mapping[str, Mapping[str, dict]], test_subsets: Sequence[str]
) -> dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
  """The split rule (§6.6) applied to source tasks: {split: {task: [(input, output), ...]}}.
  Demonstrations train; test pairs go to the test split for test subsets, else train too."""

  def grids_of(pairs: Sequence[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [tuple(np.asarray(p[k], np.uint8) for k in ('input', 'output')) for p in pairs]

  out: dict[str, dict[str, list]] = {'train': {}, 'test': {}}
  for subset, by_id in tasks.items():
    for task_id, task in by_id.items():
      if subset in test_subsets:
        out['train'][task_id] = grids_of(task['train'])
        out['test'][task_id] = grids_of(task['test'])
      else:
        out['train'][task_id] = grids_of(task['train'] + task['test'])
  return out


def compare_arc(
  ref: Mapping[str, Mapping[str, list]],
  ours: Mapping[str, Mapping[str, list]],
  expected: Mapping[str, Mapping[str, list]],
  report: Report,
) -> None:
  """Compares two decoded folders (``check_arc_folder``) task by task, and each with the split
  rule on the source (``expected_arc_pairs``): the same tasks per split, base pairs, group
  sizes."""
  for split in ('train', 'test'):
    r, o, want = ref[split], ours[split], expected[split]
    for label, got in (('reference', r), ('ours', o)):
      report.count(
        f'{split}.tasks({label} vs source)',
        len(set(got) | set(want)),
        len(set(got) ^ set(want)),
        f'{sorted(got)} vs {sorted(want)}',
      )
      for task in set(got) & set(want):
        ok = _same_pairs(got[task][0].base_pairs(), want[task])
        report.expect(f'{split}.split_rule({label})', ok, task)
    for task in set(r) & set(o):
      report.expect(
        f'{split}.base_pairs', _same_pairs(r[task][0].base_pairs(), o[task][0].base_pairs()), task
      )
      report.expect(
        f'{split}.group_sizes',
        len(r[task]) == len(o[task]),
        f'{task}: {len(r[task])} vs {len(o[task])}',
      )


# Above the probe's 72 pair-distinct variants (36 grid-distinct), with enough trials (5 per
# variant asked for) that both builders find all 72: a miss has probability ~72·e^(-1000/72).
DEDUP_PROBE_NUM_AUG = 200


def parity_arc(repo: str, work: str, seed: int, num_aug: int, dedup_probe: bool = False) -> Report:
  """ARC: the checkout's builder vs ours on the same tasks (see the package docstring). With
  ``dedup_probe`` the tasks include ``arc_tasks``' probe and num_aug is at least 200, so that
  the probe's variants run out on both sides and the dedup rules decide the group sizes."""
  report = Report()
  tasks = arc_tasks(np.random.default_rng(seed), dedup_probe=dedup_probe)
  if dedup_probe:
    num_aug = max(num_aug, DEDUP_PROBE_NUM_AUG)
  sources = write_arc_tasks(os.path.join(work, 'arc-src'), tasks)
  layout = arc_builder_layout(repo)
  with reference_imports(repo) as load:
    check_dihedral_table(load('common'), report)
  ref_dir, our_dir = os.path.join(work, 'ref-arc'), os.path.join(work, 'ours-arc')
  printed = run_reference_arc(repo, sources, ref_dir, num_aug, seed=42)
  run_ours_arc(sources, layout, our_dir, num_aug, seed)
  report.table += [
    f'reference builder: {line}' for line in printed.splitlines() if 'not full' in line
  ]
  ref, ours = (
    check_arc_folder(ref_dir, report, 'reference'),
    check_arc_folder(our_dir, report, 'ours'),
  )
  compare_arc(ref, ours, expected_arc_pairs(tasks, [ARC_TEST_SUBSET]), report)
  for split in ('train', 'test'):
    a, b = load_split(ref_dir, split), load_split(our_dir, split)
    compare_metadata(a.metadata, b.metadata, report, f'{split}')
    report.examples += a.num_examples
  ref_puzzles = os.path.join(ref_dir, 'test_puzzles.json')
  if os.path.isfile(ref_puzzles):
    a, b = read_json(ref_puzzles), read_json(os.path.join(our_dir, 'test_puzzles.json'))
    for task in sorted(set(a) | set(b)):
      same = task in a and task in b and a[task]['test'] == b[task]['test']
      report.expect('test_puzzles.json', same, task)
  else:
    report.skip('test_puzzles.json: this reference builder does not write one (HRM)')
  report.skip(
    'task order, chosen transforms, variant names/ids and translation offsets: random draws '
    "(the reference's global numpy RNG, ours from the seed); compared instead per task: base "
    'pairs, group sizes, every variant inverting to its base, offsets rule, distinct variants'
  )
  return report
