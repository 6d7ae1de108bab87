"""HRM's side of the ARC scoring comparison (`scoring`): its variant names (`<id>` for the
identity, else `<id>_t<tid>_<colour map>`) and a transcription of the pass@K rule of its
`arc_eval.ipynb`, with the notebook lines it follows (`scoring` looks for them in the checkout's
notebook)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from hrm_jax.data import grids
from hrm_jax.tools.data_parity.common import SCORING_KS, read_json


def hrm_name(name: str) -> str:
  """A variant name in HRM's scheme: ``<id>`` for the identity, else ``<id>_t<tid>_<map>``."""
  task_id, tid, colour_map = grids.parse_variant_name(name)
  if tid == 0 and np.array_equal(colour_map, np.arange(10)):
    return task_id
  return f'{task_id}_t{tid}_{"".join(map(str, colour_map))}'


def with_hrm_names(data_dir: str, out_dir: str) -> str:
  """A copy of what ``ArcEvaluator`` reads from ``data_dir`` (identifiers.json,
  test_puzzles.json, test/dataset.json), the variants renamed by ``hrm_name``."""
  os.makedirs(os.path.join(out_dir, 'test'), exist_ok=True)
  for name in ('test_puzzles.json', os.path.join('test', 'dataset.json')):
    shutil.copy(os.path.join(data_dir, name), os.path.join(out_dir, name))
  names = [hrm_name(n) for n in read_json(os.path.join(data_dir, 'identifiers.json'))]
  with open(os.path.join(out_dir, 'identifiers.json'), 'w') as f:
    json.dump(names, f)
  return out_dir


def hrm_notebook_pass_at_k(
  identifiers: Sequence[str],
  rows: Mapping[str, np.ndarray],
  ks: Sequence[int] = SCORING_KS,
  inverse_dihedral: Callable[[np.ndarray, int], np.ndarray] = grids.inverse_dihedral,
) -> dict[int, float]:
  """REFERENCE TRANSCRIPTION, not hrm_jax's rule: pass@K as HRM's ``arc_eval.ipynb`` computes
  it (its ``test()`` cell, with ``load_identifiers_and_preds``, ``inverse_aug``, ``grid_hash``
  and ``crop``), transcribed step by step on ``rows`` (as ``scoring_rows``; ``preds`` stands
  for the notebook's ``logits.argmax(-1)``) with ``identifiers`` in HRM's naming. Returns {K:
  fraction of tasks whose test inputs are *all* solved within the top K}.

  ``inverse_dihedral`` is the reference's ``inverse_dihedral_transform`` when a checkout is at
  hand. The one change: ``grid_hash`` hashes int64 bytes; the notebook hashes whatever dtype
  its arrays have (int64 from numba's crop and from the argsort colour map).
  """
  pad_puzzle_identifier = 0

  def inverse_aug(name, grid):
    if '_' not in name:
      return grid
    trans_id, perm = name.split('_')[-2:]
    trans_id = int(trans_id[1:])  # Remove "t" letter
    inv_perm = np.argsort(list(perm))
    return inv_perm[inverse_dihedral(grid, trans_id)]

  def grid_hash(grid):
    return hash((np.ascontiguousarray(grid, np.int64).tobytes(), grid.shape))

  def crop(grid):
    # Find maximum-sized rectangle without any EOS token inside.
    grid = grid.reshape(30, 30)
    max_area = 0
    max_size = (0, 0)
    nr, nc = grid.shape
    num_c = nc
    for num_r in range(1, nr + 1):
      # Scan for maximum c
      for c in range(1, num_c + 1):
        x = grid[num_r - 1, c - 1]
        if (x < 2) | (x > 11):
          num_c = c - 1
          break
      area = num_r * num_c
      if area > max_area:
        max_area = area
        max_size = (num_r, num_c)
    return grid[: max_size[0], : max_size[1]] - 2

  # Remove paddings
  mask = rows['puzzle_identifiers'] != pad_puzzle_identifier
  all_preds = {k: v[mask] for k, v in rows.items()}

  # Get puzzles and corresponding answers
  puzzle_labels = {}
  for identifier, input, label in zip(
    all_preds['puzzle_identifiers'], all_preds['inputs'], all_preds['labels']
  ):
    name = identifiers[identifier]
    if '_' not in name:  # Not-augmented
      puzzle_labels.setdefault(name, {})
      input_hash, label_hash = grid_hash(crop(input)), grid_hash(crop(label))
      assert input_hash not in puzzle_labels[name]
      puzzle_labels[name][input_hash] = label_hash

  # The notebook applies torch's float32 sigmoid to the q_halt logits.
  qs = 1 / (1 + np.exp(-all_preds['q_halt_logits'].astype(np.float32)))
  pred_answers = {}
  for identifier, input, pred, q in zip(
    all_preds['puzzle_identifiers'], all_preds['inputs'], all_preds['preds'], qs
  ):
    name = identifiers[identifier]
    orig_name = name.split('_')[0]
    input_hash = grid_hash(inverse_aug(name, crop(input)))
    assert input_hash in puzzle_labels[orig_name]
    pred_hash = grid_hash(inverse_aug(name, crop(pred)))
    pred_answers.setdefault(orig_name, {})
    pred_answers[orig_name].setdefault(input_hash, [])
    pred_answers[orig_name][input_hash].append((pred_hash, q.item()))

  correct = [0 for _ in range(len(ks))]
  for name, tests in puzzle_labels.items():
    num_test_correct = [0 for _ in range(len(ks))]
    for input_hash, label_hash in tests.items():
      p = pred_answers[name][input_hash]
      p_map = {}
      for h, q in p:
        p_map.setdefault(h, [0, 0])
        p_map[h][0] += 1
        p_map[h][1] += q
      for h, stats in p_map.items():
        stats[1] /= stats[0]
      p_map = sorted(p_map.items(), key=lambda kv: kv[1], reverse=True)
      for i, k in enumerate(ks):
        ok = False
        for h, stats in p_map[:k]:
          ok |= h == label_hash
        num_test_correct[i] += ok
    for i in range(len(ks)):
      correct[i] += num_test_correct[i] == len(tests)
  return {k: correct[i] / len(puzzle_labels) for i, k in enumerate(ks)}


# Lines of arc_eval.ipynb whose rule the transcription above follows: the ranking, the mean q
# and the all-test-inputs credit.
NOTEBOOK_RULE_LINES = (
  'p_map = sorted(p_map.items(), key=lambda kv: kv[1], reverse=True)',
  'stats[1] /= stats[0]',
  'correct[i] += num_test_correct[i] == len(tests)',
  'if "_" not in name:   # Not-augmented',
  'trans_id, perm = name.split("_")[-2:]',
  'print (f"{k}-shot: {correct[i] / len(puzzle_labels) * 100:.2f}%")',
)
