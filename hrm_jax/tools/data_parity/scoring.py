"""ARC scoring: pass@K of `hrm_jax.evaluators.arc.ArcEvaluator` on one dataset of ours fed
planned predictions (`SCORING_PLAN`): the `all` rule against HRM's notebook (transcribed in
`hrm_notebook`), the `frac` rule against TRM's `evaluators/arc.py` (run), and ours again
reading HRM's variant names (see the package docstring)."""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Optional

import numpy as np

from hrm_jax.data import grids
from hrm_jax.data.format import load_split
from hrm_jax.evaluators import arc as arc_eval
from hrm_jax.tools.data_parity.arc import (
  ARC_TEST_SUBSET,
  arc_tasks,
  decode_canvas,
  run_ours_arc,
  write_arc_tasks,
)
from hrm_jax.tools.data_parity.common import (
  SCORING_KS,
  ParityError,
  Report,
  read_json,
  reference_imports,
)
from hrm_jax.tools.data_parity.hrm_notebook import (
  NOTEBOOK_RULE_LINES,
  hrm_notebook_pass_at_k,
  with_hrm_names,
)

# One plan per evaluation task of `arc_tasks` (in order), one per test input: the prediction of
# each of its 8 variants (1 + 7 augmentations) as (candidate, q_halt logit). 'right' is the true
# output, 'w1'..'w4' distinct wrong grids, 'empty' a prediction with no grid at the top left.
SCORING_PLAN = (
  # 4:4 count tie; the wrong grid's higher mean q ranks the answer second.
  ((('right', -1.0),) * 4 + (('w1', 0.5), ('w1', 1.5), ('w1', 1.0), ('w1', 1.0)),),
  # Two test inputs: the first wins 5:3; the second ranks third (w1 3, then w2 and the answer
  # with 2 each, w2's q higher).
  (
    (('right', 0.5),) * 5 + (('w1', 2.0),) * 3,
    (('w1', 0.0),) * 3 + (('w2', 1.0),) * 2 + (('right', -1.0),) * 2 + (('w3', -2.0),),
  ),
  # Never right: w1 and w2 tie exactly (count and q), an empty prediction, a narrower grid.
  ((('w1', 0.5),) * 2 + (('w2', 0.5),) * 2 + (('w3', 0.0),) * 2 + (('empty', 0.0), ('w4', 0.0)),),
  # 3:3 count tie that the answer's higher q wins.
  ((('right', 2.0),) * 3 + (('w1', -2.0),) * 3 + (('w2', 0.0),) * 2,),
)
SCORING_VARIANTS = 8


def candidate_grid(output: np.ndarray, candidate: str) -> Optional[np.ndarray]:
  """The base-frame grid a plan's ``candidate`` names for a test output [h, w] (h, w >= 2),
  None for 'empty'."""
  y = np.asarray(output, np.uint8)
  if candidate == 'right':
    return y
  if candidate == 'empty':
    return None
  g = y.copy()
  if candidate == 'w1':
    g[0, 0] = (g[0, 0] + 1) % 10
  elif candidate == 'w2':
    g[-1, -1] = (g[-1, -1] + 2) % 10
  elif candidate == 'w3':
    g[:] = (y.max() + 1) % 10
  elif candidate == 'w4':
    g = y[:, :-1]
  else:
    raise ValueError(f'unknown candidate {candidate!r}')
  return g


def scoring_rows(
  data_dir: str, eval_tasks: Mapping[str, dict], rng: np.random.Generator, pad_rows: int = 3
) -> dict[str, np.ndarray]:
  """Model outputs for every test example of ``data_dir`` following ``SCORING_PLAN``.

  Returns {'inputs', 'labels', 'preds': int32 [n, 900], 'q_halt_logits': float32 [n],
  'puzzle_identifiers': int32 [n]}: the test split's rows, then ``pad_rows`` padding rows (blank
  id). Each prediction is the planned grid, augmented by the row's variant, at (0, 0); half of
  them get random tokens in the canvas cells outside the grid and its EOS marks, which cropping
  must ignore.
  """
  split = load_split(data_dir, 'test')
  names = read_json(os.path.join(data_dir, 'identifiers.json'))
  plans = dict(zip(eval_tasks, SCORING_PLAN))
  seen: dict[tuple[str, int], int] = {}
  preds, q = [], []
  for p in range(split.num_puzzles):
    task_id, tid, colour_map = grids.parse_variant_name(names[split.puzzle_identifiers[p]])
    tests = eval_tasks[task_id]['test']
    for e in range(split.puzzle_indices[p], split.puzzle_indices[p + 1]):
      x = grids.unaugment_grid(decode_canvas(split.inputs[e])[0], tid, colour_map)
      j = next(i for i, t in enumerate(tests) if np.array_equal(np.asarray(t['input']), x))
      k = seen[task_id, j] = seen.get((task_id, j), -1) + 1
      candidate, logit = plans[task_id][j][k]
      g = candidate_grid(tests[j]['output'], candidate)
      tokens = np.zeros(grids.CANVAS**2, np.int32)
      if g is not None:
        tokens = grids.encode_grid(grids.augment_grid(g, tid, colour_map)).astype(np.int32)
      if e % 2:
        tokens = np.where(
          tokens == grids.PAD, rng.integers(0, grids.ARC_VOCAB, tokens.shape), tokens
        )
        if g is None:
          tokens[0] = grids.EOS  # an empty prediction must stay empty
      preds.append(tokens)
      q.append(logit)
  counts = {key: v + 1 for key, v in seen.items()}
  want = {(t, j): len(plan) for t, plans_t in plans.items() for j, plan in enumerate(plans_t)}
  if counts != want:
    raise ParityError(f'the scoring dataset does not fit SCORING_PLAN: {counts} vs {want}')
  example_ids = np.repeat(split.puzzle_identifiers, np.diff(split.puzzle_indices))
  pad = np.zeros((pad_rows, split.inputs.shape[1]), np.int32)
  pad_preds = rng.integers(0, grids.ARC_VOCAB, pad.shape)
  return {
    'inputs': np.concatenate([split.inputs, pad]),
    'labels': np.concatenate([split.labels, pad - 100]),
    'preds': np.concatenate([np.stack(preds), pad_preds]).astype(np.int32),
    'q_halt_logits': np.array(q + list(rng.normal(size=pad_rows)), np.float32),
    'puzzle_identifiers': np.concatenate([example_ids, np.zeros(pad_rows, np.int32)]),
  }


def ours_pass_at_k(
  data_dir: str, rows: Mapping[str, np.ndarray], ks: Sequence[int] = SCORING_KS, batch: int = 16
) -> dict[str, dict[int, float]]:
  """{rule ('all' | 'frac'): {K: pass@K}} of ``ArcEvaluator`` fed ``rows`` in batches."""
  ev = arc_eval.ArcEvaluator(data_dir, pass_ks=ks)
  ev.begin()
  for s in range(0, len(rows['inputs']), batch):
    sl = slice(s, s + batch)
    ev.add_votes(
      rows['inputs'][sl],
      rows['preds'][sl],
      rows['q_halt_logits'][sl],
      rows['puzzle_identifiers'][sl],
    )
  result = ev.result()
  return {rule: {k: result[f'arc/pass@{k}_{rule}'] for k in ks} for rule in arc_eval.RULES}


@contextlib.contextmanager
def _one_process_group(module: types.ModuleType, work: str) -> Iterator[str]:
  """Lets TRM's evaluator call ``dist.gather_object`` on CPU: a single-process gloo group, or,
  where that cannot start, a stand-in ``dist`` in ``module`` whose gather returns the object."""
  import torch.distributed as dist

  created = False
  if dist.is_available() and not dist.is_initialized():
    try:
      init = 'file://' + os.path.join(work, 'gloo-store')
      dist.init_process_group('gloo', init_method=init, rank=0, world_size=1)
      created = True
    except (RuntimeError, ValueError):
      pass
  if dist.is_available() and dist.is_initialized():
    try:
      yield 'gloo process group (world size 1)'
    finally:
      if created:
        dist.destroy_process_group()
  else:
    module.dist = types.SimpleNamespace(
      gather_object=lambda obj, out, dst=0, group=None: out.__setitem__(0, obj)
    )
    yield 'stand-in gather_object (no gloo)'


def trm_evaluator_pass_at_k(
  repo: str,
  data_dir: str,
  rows: Mapping[str, np.ndarray],
  work: str,
  ks: Sequence[int] = SCORING_KS,
  batch: int = 16,
) -> tuple[dict[int, float], str]:
  """({K: pass@K}, how torch.distributed was provided) of the checkout's
  ``evaluators/arc.py`` ``ARC`` fed ``rows`` in batches as its ``pretrain.py`` feeds it."""
  import torch

  with reference_imports(repo) as load:
    module, common = load('evaluators.arc'), load('dataset.common')
    meta = common.PuzzleDatasetMetadata(**read_json(os.path.join(data_dir, 'test', 'dataset.json')))
    ev = module.ARC(data_dir, meta, pass_Ks=tuple(ks))
    ev.begin_eval()
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in rows.items()}
    for s in range(0, len(rows['inputs']), batch):
      sl = slice(s, s + batch)
      ev.update_batch(
        {
          'inputs': t['inputs'][sl],
          'puzzle_identifiers': t['puzzle_identifiers'][sl],
          'labels': t['labels'][sl],
        },
        {'preds': t['preds'][sl], 'q_halt_logits': t['q_halt_logits'][sl]},
      )
    with _one_process_group(module, work) as how:
      result = ev.result(None, rank=0, world_size=1)
  return {k: result[f'ARC/pass@{k}'] for k in ks}, how


def compare_scores(
  ours: Mapping[int, float], ref: Mapping[int, float], report: Report, name: str
) -> None:
  """Counts the K whose pass@K differ by more than 1e-12 (float sums in other orders)."""
  for k in ours:
    report.expect(name, abs(ours[k] - ref[k]) <= 1e-12, f'pass@{k}: {ours[k]} vs {ref[k]}')


def parity_arc_scoring(repo: str, work: str, seed: int, num_aug: int) -> Report:
  """ARC scoring: ours vs the HRM notebook rule (transcribed) and TRM's evaluator (run)."""
  del num_aug  # the plan needs 1 + 7 variants
  report = Report()
  rng = np.random.default_rng(seed)
  tasks = arc_tasks(rng, eval_tests=[len(p) for p in SCORING_PLAN])
  data_dir = os.path.join(work, 'scoring')
  sources = write_arc_tasks(os.path.join(work, 'scoring-src'), tasks)
  run_ours_arc(sources, 'combined', data_dir, SCORING_VARIANTS - 1, seed)
  rows = scoring_rows(data_dir, tasks[ARC_TEST_SUBSET], rng)
  report.examples = int((rows['puzzle_identifiers'] != 0).sum())

  scores = {'ours': ours_pass_at_k(data_dir, rows)}
  hrm_dir = with_hrm_names(data_dir, os.path.join(work, 'scoring-hrm-names'))
  scores['ours_hrm_names'] = ours_pass_at_k(hrm_dir, rows)
  names = read_json(os.path.join(hrm_dir, 'identifiers.json'))
  columns = {'ours_all': scores['ours']['all'], 'ours_frac': scores['ours']['frac']}
  with reference_imports(repo) as load:
    inverse = load('common').inverse_dihedral_transform
  columns['hrm_notebook'] = hrm_notebook_pass_at_k(names, rows, inverse_dihedral=inverse)
  compare_scores(
    columns['ours_all'], columns['hrm_notebook'], report, 'all_rule: ours vs hrm_notebook'
  )
  for rule in arc_eval.RULES:
    compare_scores(
      scores['ours'][rule],
      scores['ours_hrm_names'][rule],
      report,
      f'{rule}_rule: ours vs ours (HRM names)',
    )

  notebook = os.path.join(repo, 'arc_eval.ipynb')
  if os.path.isfile(notebook):
    source = '\n'.join(''.join(c['source']) for c in read_json(notebook)['cells'])
    for line in NOTEBOOK_RULE_LINES:
      report.expect('hrm_notebook: transcribed lines in the notebook', line in source, line)
  else:
    report.skip('arc_eval.ipynb is not in this checkout (TRM): its transcription is used as is')
  if os.path.isfile(os.path.join(repo, 'evaluators', 'arc.py')):
    columns['trm_evaluator'], how = trm_evaluator_pass_at_k(repo, data_dir, rows, work)
    compare_scores(
      columns['ours_frac'], columns['trm_evaluator'], report, 'frac_rule: ours vs trm_evaluator'
    )
    report.table.append(f'trm_evaluator ran with: {how}')
  else:
    report.skip('frac rule vs the TRM evaluator: evaluators/arc.py is not in this checkout (HRM)')

  order = [c for c in ('ours_all', 'hrm_notebook', 'ours_frac', 'trm_evaluator') if c in columns]
  report.table.append('K     ' + ''.join(f'{c:>15}' for c in order))
  for k in SCORING_KS:
    report.table.append(f'{k:<6}' + ''.join(f'{columns[c][k]:>15.4f}' for c in order))
  report.skip(
    'exact ties of (count, mean q): the references keep insertion order, ours sorts by grid '
    'hash; the plan has one such tie, between two wrong grids, which no pass@K depends on'
  )
  report.skip(
    "submission.json: the attempts' order within an exact tie differs as above, and the "
    'reference skips test inputs without predictions (docs/departures.md)'
  )
  return report
