"""ARC evaluation (hrm_jax.evaluators.arc): voting, pass@K under both rules, submission, merge.

Every test builds a tiny dataset folder by hand (canvas 10, seq_len 100): task 'aaa' with one test
input, 'bbb' with two, 'ccc' with one whose output is unknown; each task has five variants.
"""

import json
import os
import pickle

import numpy as np
import pytest

from hrm_jax.data import grids
from hrm_jax.data.format import DatasetError, Metadata
from hrm_jax.evaluators import arc as arc_eval

CANVAS = 10
TIDS = (0, 1, 4, 6, 7)  # five variants per task; the first keeps the identity colour map


def _grid(rng, h, w):
  return rng.integers(0, 10, size=(h, w)).astype(np.uint8)


def _colour_map(rng):
  return np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)


class Data:
  """The folder plus the truth: tests[task] = [(input, output or None)], variants[task]."""

  def __init__(self, root, rng):
    self.dir = str(root)
    self.tests = {
      'aaa': [(_grid(rng, 3, 4), _grid(rng, 2, 5))],
      'bbb': [(_grid(rng, 5, 2), _grid(rng, 4, 4)), (_grid(rng, 6, 7), _grid(rng, 10, 10))],
      'ccc': [(_grid(rng, 2, 2), None)],
    }
    names = ['<blank>']
    self.variants = {}  # task -> [(puzzle id, tid, colour map)]
    for task in self.tests:
      self.variants[task] = []
      for i, tid in enumerate(TIDS):
        cmap = np.arange(10, dtype=np.uint8) if i == 0 else _colour_map(rng)
        self.variants[task].append((len(names), tid, cmap))
        names.append(grids.variant_name(task, tid, cmap))
    puzzles = {
      task: {
        'train': [{'input': [[1]], 'output': [[2]]}],
        'test': [
          {'input': i.tolist(), **({} if o is None else {'output': o.tolist()})} for i, o in pairs
        ],
      }
      for task, pairs in self.tests.items()
    }
    os.makedirs(os.path.join(self.dir, 'test'))
    with open(os.path.join(self.dir, 'identifiers.json'), 'w') as f:
      json.dump(names, f)
    with open(os.path.join(self.dir, 'test_puzzles.json'), 'w') as f:
      json.dump(puzzles, f)
    meta = Metadata(
      pad_id=0,
      ignore_label_id=0,
      blank_identifier_id=0,
      vocab_size=grids.ARC_VOCAB,
      seq_len=CANVAS * CANVAS,
      num_puzzle_identifiers=len(names),
      total_groups=len(self.tests),
      mean_puzzle_examples=4 / 3,
      sets=['all'],
      total_puzzles=len(names) - 1,
    )
    with open(os.path.join(self.dir, 'test', 'dataset.json'), 'w') as f:
      f.write(meta.to_json())

  def rows(self, predict, tasks=None):
    """(inputs, preds, q_halt, ids) with one row per (task, test input, variant).

    predict(task, test index, variant index) -> (grid in the task's own colours/orientation,
    q_halt logit), or None to give that variant no row.
    """
    inputs, preds, qs, ids = [], [], [], []
    for task in tasks or self.tests:
      for j, (inp, _) in enumerate(self.tests[task]):
        for v, (pid, tid, cmap) in enumerate(self.variants[task]):
          p = predict(task, j, v)
          if p is None:
            continue
          grid, q = p
          inputs.append(grids.encode_grid(grids.augment_grid(inp, tid, cmap), canvas=CANVAS))
          if grid is None:  # an empty crop: all PAD
            preds.append(np.zeros(CANVAS * CANVAS, np.uint8))
          else:
            preds.append(grids.encode_grid(grids.augment_grid(grid, tid, cmap), canvas=CANVAS))
          qs.append(q)
          ids.append(pid)
    return np.stack(inputs), np.stack(preds), np.array(qs, np.float32), np.array(ids, np.int32)

  def truth(self, task, j):
    out = self.tests[task][j][1]
    return out if out is not None else np.zeros((1, 3), np.uint8)


@pytest.fixture
def data(tmp_path):
  return Data(tmp_path / 'arc', np.random.default_rng(0))


def _oracle(data):
  return lambda task, j, v: (data.truth(task, j), 0.0)


def _evaluate(data, predict, **kwargs):
  ev = arc_eval.ArcEvaluator(data.dir, **kwargs)
  ev.begin()
  ev.add_votes(*data.rows(predict))
  return ev


def _wrong(grid):
  """A grid of the same shape that differs from `grid` in one cell."""
  g = np.array(grid)
  g[0, 0] = (g[0, 0] + 1) % 10
  return g


# -------------------------------------------------------------------------------------------
# Pure functions


def test_vote_ranks_by_count_then_mean_q_then_hash():
  ranked = arc_eval.vote([('a', 0.9), ('b', 0.1), ('b', 0.2), ('c', 0.5), ('d', 0.5)])
  assert [h for h, _, _ in ranked] == ['b', 'a', 'c', 'd']
  assert ranked[0] == ('b', 2, pytest.approx(0.15))
  assert ranked[1][1:] == (1, 0.9)
  assert arc_eval.vote([]) == []


def test_pass_at_k_and_credit_rules():
  ks = (1, 2, 5)
  np.testing.assert_array_equal(arc_eval.pass_at_k(['x', 'y'], 'y', ks), [False, True, True])
  np.testing.assert_array_equal(arc_eval.pass_at_k(['x', 'y'], 'z', ks), [False] * 3)
  np.testing.assert_array_equal(arc_eval.pass_at_k([], 'z', ks), [False] * 3)
  solved = np.array([[True, True, True], [False, True, True], [False, False, True]])
  np.testing.assert_array_equal(arc_eval.task_credit(solved, 'all'), [0, 0, 1])
  np.testing.assert_allclose(arc_eval.task_credit(solved, 'frac'), [1 / 3, 2 / 3, 1])
  with pytest.raises(ValueError, match='rule'):
    arc_eval.task_credit(solved, 'any')


def test_sigmoid_is_stable():
  x = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0, np.nan])
  np.testing.assert_allclose(
    arc_eval.sigmoid(x), [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1.0, 0.0]
  )


# -------------------------------------------------------------------------------------------
# Grid transforms round-trip exactly


def test_every_dihedral_and_colour_map_inverts_exactly():
  rng = np.random.default_rng(1)
  for tid in range(grids.NUM_DIHEDRAL):
    for _ in range(4):
      g = _grid(rng, *rng.choice(np.arange(1, CANVAS + 1), size=2, replace=False))
      cmap = _colour_map(rng)
      aug = grids.augment_grid(g, tid, cmap)
      np.testing.assert_array_equal(grids.unaugment_grid(aug, tid, cmap), g)
      # Through the canvas and the variant name too, as the evaluator sees a row.
      task, t, m = grids.parse_variant_name(grids.variant_name('task', tid, cmap))
      back = grids.unaugment_grid(grids.crop(grids.encode_grid(aug, canvas=CANVAS), CANVAS), t, m)
      np.testing.assert_array_equal(back, g)


def test_variant_names_of_both_reference_builders_parse():
  cmap = np.array([0, 3, 1, 2, 9, 8, 7, 6, 5, 4], np.uint8)
  for name in ('a1b2c3d4|||t5|||0312987654', 'a1b2c3d4_t5_0312987654'):
    task, tid, m = grids.parse_variant_name(name)
    assert (task, tid) == ('a1b2c3d4', 5)
    np.testing.assert_array_equal(m, cmap)
  assert grids.parse_variant_name('Above_Below1')[:2] == ('Above_Below1', 0)  # a bare id
  with pytest.raises(ValueError, match='not an ARC variant name'):
    grids.parse_variant_name('x|||t9|||0123456789')


@pytest.mark.parametrize('canvas', [CANVAS, grids.CANVAS])
def test_crop_inverts_encode_for_every_shape(canvas):
  rng = np.random.default_rng(2)
  for h in range(1, canvas + 1):
    for w in range(1, canvas + 1):
      g = _grid(rng, h, w)
      np.testing.assert_array_equal(grids.crop(grids.encode_grid(g, canvas=canvas), canvas), g)


# -------------------------------------------------------------------------------------------
# The evaluator


def test_oracle_scores_one_and_submits_the_outputs(data):
  ev = _evaluate(data, _oracle(data))
  r = ev.result()
  for k in arc_eval.PASS_KS:
    assert r[f'arc/pass@{k}_all'] == 1.0 and r[f'arc/pass@{k}_frac'] == 1.0
  assert r['arc/tasks'] == 2 and r['arc/tasks_unscored'] == 1
  assert r['arc/test_inputs'] == 4 and r['arc/missing_predictions'] == 0
  assert r['arc/candidates_mean'] == 1.0 and r['arc/votes'] == 4 * len(TIDS)
  sub = ev.submission()
  assert list(sub) == ['aaa', 'bbb', 'ccc']
  for task, pairs in data.tests.items():
    assert len(sub[task]) == len(pairs)
    for entry, j in zip(sub[task], range(len(pairs))):
      assert entry['attempt_1'] == data.truth(task, j).tolist()
      assert entry['attempt_2'] == entry['attempt_1']  # one candidate only


def test_majority_vote_decides_pass_at_1(data):
  a = _wrong(data.truth('aaa', 0))

  def predict(task, j, v):
    if task == 'aaa':
      return (a, 5.0) if v < 3 else (data.truth(task, j), 5.0)  # 3 wrong, 2 right
    return data.truth(task, j), 0.0

  ev = _evaluate(data, predict)
  r = ev.result()
  assert r['arc/pass@1_all'] == 0.5 and r['arc/pass@1_frac'] == 0.5
  assert r['arc/pass@2_all'] == 1.0 and r['arc/pass@2_frac'] == 1.0
  ranked = ev.ranked()['aaa'][0]
  assert [c for _, c, _ in ranked] == [3, 2]
  entry = ev.submission()['aaa'][0]
  assert entry == {'attempt_1': a.tolist(), 'attempt_2': data.truth('aaa', 0).tolist()}


@pytest.mark.parametrize('right_q', [-2.0, 2.0])
def test_equal_counts_are_broken_by_mean_q(data, right_q):
  def predict(task, j, v):
    if task == 'aaa' and v < 4:
      wrong = v < 2
      return (_wrong(data.truth(task, j)), 0.0) if wrong else (data.truth(task, j), right_q)
    if task == 'aaa':
      return None  # 2 vs 2 votes
    return data.truth(task, j), 0.0

  r = _evaluate(data, predict).result()
  expected = 1.0 if right_q > 0 else 0.5
  assert r['arc/pass@1_all'] == expected and r['arc/pass@2_all'] == 1.0


def test_all_and_frac_rules_differ_on_partly_solved_task(data):
  def predict(task, j, v):
    if task == 'bbb' and j == 1:
      return _wrong(data.truth(task, j)), 0.0
    return data.truth(task, j), 0.0

  r = _evaluate(data, predict).result()
  # aaa solved (1), bbb one of two: all -> 0, frac -> 0.5.
  assert r['arc/pass@1_all'] == 0.5
  assert r['arc/pass@1_frac'] == 0.75
  assert r['arc/pass@1000_all'] == 0.5


def test_unknown_outputs_are_not_scored(data):
  def predict(task, j, v):
    return (_wrong(data.truth(task, j)) if task == 'ccc' else data.truth(task, j)), 0.0

  r = _evaluate(data, predict).result()
  assert r['arc/pass@1_all'] == 1.0 and r['arc/tasks'] == 2 and r['arc/tasks_unscored'] == 1


def test_padding_rows_are_ignored(data):
  inputs, preds, q, ids = data.rows(_oracle(data))
  pad = np.full((3, CANVAS * CANVAS), 7, np.uint8)  # garbage that would match no test input
  padded = (
    np.concatenate([inputs, pad]),
    np.concatenate([preds, pad]),
    np.concatenate([q, [9.0, 9.0, 9.0]]),
    np.concatenate([ids, [0, 0, 0]]),
  )
  ev = arc_eval.ArcEvaluator(data.dir)
  ev.begin()
  ev.add_votes(*padded)
  assert ev.result() == _evaluate(data, _oracle(data)).result()


def test_missing_test_input_gets_fallback_entry(data):
  def predict(task, j, v):
    return None if task == 'bbb' and j == 0 else (data.truth(task, j), 0.0)

  ev = _evaluate(data, predict)
  r = ev.result()
  assert r['arc/missing_predictions'] == 1
  assert r['arc/pass@1_all'] == 0.5 and r['arc/pass@1_frac'] == 0.75
  sub = ev.submission()['bbb']
  assert len(sub) == 2
  assert sub[0] == {'attempt_1': [[0]], 'attempt_2': [[0]]}
  assert sub[1]['attempt_1'] == data.truth('bbb', 1).tolist()  # still aligned


def test_empty_crop_is_a_wrong_candidate(data):
  def predict(task, j, v):
    if task == 'aaa':
      return (None, 3.0) if v < 3 else (data.truth(task, j), 0.0)
    return data.truth(task, j), 0.0

  ev = _evaluate(data, predict)
  r = ev.result()
  assert r['arc/pass@1_all'] == 0.5 and r['arc/pass@2_all'] == 1.0
  # The empty grid is no valid attempt, so the submission falls to the next candidate.
  assert ev.submission()['aaa'][0]['attempt_1'] == data.truth('aaa', 0).tolist()


def test_out_of_range_prediction_tokens_do_not_raise(data):
  inputs, preds, q, ids = data.rows(_oracle(data))
  preds = preds.astype(np.int32)
  preds[:, 0] = 99
  ev = arc_eval.ArcEvaluator(data.dir)
  ev.add_votes(inputs, preds, q, ids)
  assert ev.result()['arc/pass@1000_all'] == 0.0


def test_aggregate_controls_votes_across_rounds(data):
  right = _oracle(data)

  def wrong(task, j, v):
    return _wrong(data.truth(task, j)), 0.0

  for aggregate, expect_pass1, expect_pass2 in ((False, 0.0, 0.0), (True, 1.0, 1.0)):
    ev = arc_eval.ArcEvaluator(data.dir, aggregate=aggregate)
    ev.begin()
    ev.add_votes(*data.rows(right))
    ev.add_votes(*data.rows(right))
    assert ev.result()['arc/pass@1_all'] == 1.0
    ev.begin()
    ev.add_votes(*data.rows(wrong))
    r = ev.result()
    # Pooled: 10 right votes beat 5 wrong ones; per round only the wrong ones exist.
    assert r['arc/pass@1_all'] == expect_pass1 and r['arc/pass@2_all'] == expect_pass2
    assert r['arc/candidates_mean'] == (2.0 if aggregate else 1.0)


def test_state_merge_equals_single_evaluator(data):
  rng = np.random.default_rng(3)

  def predict(task, j, v):
    g = data.truth(task, j) if rng.random() < 0.5 else _wrong(data.truth(task, j))
    return g, float(rng.normal())

  rows = data.rows(predict)
  single = arc_eval.ArcEvaluator(data.dir)
  single.add_votes(*rows)
  n = len(rows[0])
  hosts = [arc_eval.ArcEvaluator(data.dir) for _ in range(3)]
  for i, host in enumerate(hosts):
    sl = slice(i * n // 3, (i + 1) * n // 3)
    host.add_votes(*(a[sl] for a in rows))
  states = [pickle.loads(pickle.dumps(h.state())) for h in hosts]
  hosts[0].merge(states)  # own state included: skipped, not counted twice
  hosts[0].merge(states[1:])  # merging again replaces, does not add
  assert hosts[0].result() == single.result()
  assert hosts[0].submission() == single.submission()
  assert hosts[0].ranked() == single.ranked()
  assert hosts[1].result()['arc/votes'] < single.result()['arc/votes']  # unmerged host


def test_write_submission(data, tmp_path):
  ev = _evaluate(data, _oracle(data))
  path = str(tmp_path / 'submission.json')
  ev.write_submission(path)
  with open(path) as f:
    assert json.load(f) == ev.submission()


def test_submission_k(data):
  def predict(task, j, v):
    g = data.truth(task, j).copy()
    g[0, 0] = (int(g[0, 0]) + v % 3) % 10  # three candidates per test input
    return g, 0.0

  ev = _evaluate(data, predict, submission_k=3, pass_ks=(1, 3))
  entry = ev.submission()['aaa'][0]
  assert sorted(entry) == ['attempt_1', 'attempt_2', 'attempt_3']
  assert len({json.dumps(g) for g in entry.values()}) == 3
  assert set(ev.result()) >= {'arc/pass@1_all', 'arc/pass@3_frac'}
  assert ev.result()['arc/pass@3_all'] == 1.0


def test_input_matching_no_test_input_names_the_variant(data):
  inputs, preds, q, ids = data.rows(_oracle(data), tasks=['aaa'])
  ids = ids.copy()
  ids[0] = data.variants['bbb'][2][0]  # aaa's input under a bbb variant id
  ev = arc_eval.ArcEvaluator(data.dir)
  with pytest.raises(ValueError, match=r'bbb\|\|\|t4'):
    ev.add_votes(inputs, preds, q, ids)


def test_bad_shapes_raise(data):
  inputs, preds, q, ids = data.rows(_oracle(data))
  ev = arc_eval.ArcEvaluator(data.dir)
  with pytest.raises(ValueError, match='expected inputs'):
    ev.add_votes(inputs[:, :50], preds[:, :50], q, ids)
  with pytest.raises(ValueError, match='expected inputs'):
    ev.add_votes(inputs, preds, q[:-1], ids)


@pytest.mark.parametrize(
  'missing', ['identifiers.json', 'test_puzzles.json', os.path.join('test', 'dataset.json')]
)
def test_missing_files_raise_dataset_error(data, missing):
  os.remove(os.path.join(data.dir, missing))
  with pytest.raises(DatasetError, match=os.path.basename(missing)):
    arc_eval.ArcEvaluator(data.dir)


def test_malformed_test_puzzles_raise_dataset_error(data):
  with open(os.path.join(data.dir, 'test_puzzles.json'), 'w') as f:
    json.dump({'aaa': {'test': [{'input': [[1, 2], [3]]}]}}, f)
  with pytest.raises(DatasetError, match="task 'aaa' test 0"):
    arc_eval.ArcEvaluator(data.dir)
