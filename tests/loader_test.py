"""Tests of hrm_jax.data.loader: the seeded §6.2 train sampler and padded eval batches."""

import itertools

import numpy as np
import pytest

from hrm_jax.data import format as fmt
from hrm_jax.data import loader

L = 3


def _split(examples_per_puzzle, puzzles_per_group):
  """A Split: example n has inputs [n, n, n], labels [n, -100, n]; puzzle p has id p + 1."""
  puzzle_indices = np.concatenate([[0], np.cumsum(examples_per_puzzle)]).astype(np.int32)
  group_indices = np.concatenate([[0], np.cumsum(puzzles_per_group)]).astype(np.int32)
  n, p = int(puzzle_indices[-1]), len(examples_per_puzzle)
  inputs = np.repeat(np.arange(n, dtype=np.int32)[:, None], L, axis=1)
  labels = inputs.copy()
  labels[:, 1] = -100
  meta = fmt.Metadata(
    pad_id=0,
    ignore_label_id=0,
    blank_identifier_id=0,
    vocab_size=n + 1,
    seq_len=L,
    num_puzzle_identifiers=p + 1,
    total_groups=len(puzzles_per_group),
    mean_puzzle_examples=n / p,
    sets=['all'],
  )
  return fmt.Split(
    meta, inputs, labels, np.arange(p, dtype=np.int32) + 1, puzzle_indices, group_indices
  )


def _take(it, k):
  return list(itertools.islice(it, k))


def _group_of(split, puzzle_ids):
  return np.searchsorted(split.group_indices, puzzle_ids - 1, side='right') - 1


def test_shapes_dtypes_and_determinism():
  split = _split([1] * 30, [3] * 10)
  a = _take(loader.train_batches(split, 4, seed=0), 10)
  b = _take(loader.train_batches(split, 4, seed=0), 10)
  c = _take(loader.train_batches(split, 4, seed=1), 10)
  for batch in a:
    assert set(batch) == {'inputs', 'labels', 'puzzle_identifiers'}
    assert batch['inputs'].shape == batch['labels'].shape == (4, L)
    assert batch['puzzle_identifiers'].shape == (4,)
    assert all(v.dtype == np.int32 for v in batch.values())
    assert (batch['labels'][:, 1] == -100).all()
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert any((x['inputs'] != y['inputs']).any() for x, y in zip(a, c))


def test_each_group_once_per_epoch_and_last_batch_dropped():
  split = _split([1] * 36, [3] * 12)  # 12 groups of 3 one-example variants
  batches = _take(loader.train_batches(split, 5, seed=3, epochs_per_iter=2), 4 + 4)
  # 24 group visits per iteration -> 4 full batches of 5, the last 4 visits dropped.
  for it in (batches[:4], batches[4:]):
    ids = np.concatenate([b['puzzle_identifiers'] for b in it])
    counts = np.bincount(_group_of(split, ids), minlength=12)
    assert counts.max() <= 2 and counts.sum() == 20
    # The example is the one of the chosen puzzle.
    np.testing.assert_array_equal(np.concatenate([b['inputs'][:, 0] for b in it]), ids - 1)
  one_epoch = _take(loader.train_batches(split, 4, seed=5), 3)
  ids = np.concatenate([b['puzzle_identifiers'] for b in one_epoch])
  assert sorted(_group_of(split, ids)) == list(range(12))


def test_matches_reference_order_for_one_example_puzzles():
  # The reference seeds iteration i (counted from 1) with Philox(seed + i) and draws the variant
  # of each visited group with rng.integers(group_start, group_end).
  split = _split([1] * 20, [2] * 10)
  batches = _take(loader.train_batches(split, 5, seed=7), 2)
  rng = np.random.Generator(np.random.Philox(seed=8))
  order = rng.permutation(10)
  picks = [rng.integers(split.group_indices[g], split.group_indices[g + 1]) for g in order]
  np.testing.assert_array_equal(np.concatenate([b['inputs'][:, 0] for b in batches]), picks)


def test_resume_by_iteration_or_skip():
  split = _split([1] * 10, [1] * 10)
  stream = _take(loader.train_batches(split, 3, seed=0), 9)  # 3 batches per iteration
  skipped = _take(loader.train_batches(split, 3, seed=0, skip_batches=4), 2)
  later = _take(loader.train_batches(split, 3, seed=0, start_iteration=2), 1)
  np.testing.assert_array_equal(skipped[0]['inputs'], stream[4]['inputs'])
  np.testing.assert_array_equal(skipped[1]['inputs'], stream[5]['inputs'])
  np.testing.assert_array_equal(later[0]['inputs'], stream[6]['inputs'])


def test_process_slices_concatenate_to_global_batch():
  split = _split([2, 1, 3, 1] * 5, [2] * 10)
  full = _take(loader.train_batches(split, 6, seed=2), 4)
  parts = [
    _take(loader.train_batches(split, 6, seed=2, process_index=i, process_count=3), 4)
    for i in range(3)
  ]
  for step, batch in enumerate(full):
    for k in batch:
      np.testing.assert_array_equal(np.concatenate([p[step][k] for p in parts]), batch[k])
      assert parts[0][step][k].shape[0] == 2


def test_multi_example_puzzles_packed_contiguously():
  sizes = [5, 2, 3, 1, 4, 2]
  split = _split(sizes, [2, 1, 3])
  # One epoch per iteration: each puzzle is visited at most once, so appears as one run.
  for batch in _take(loader.train_batches(split, 4, seed=0), 30):
    ids, ex = batch['puzzle_identifiers'], batch['inputs'][:, 0]
    runs = np.split(np.arange(4), np.flatnonzero(np.diff(ids)) + 1)
    seen = set()
    for run in runs:
      p = ids[run[0]] - 1
      assert p not in seen
      seen.add(p)
      assert len(run) <= sizes[p]
      assert len(set(ex[run])) == len(run)  # without replacement
      assert all(split.puzzle_indices[p] <= e < split.puzzle_indices[p + 1] for e in ex[run])


def test_eval_batches_pad_last_batch():
  split = _split([2, 1, 3, 1], [1, 1, 1, 1])  # 7 examples
  batches = list(loader.eval_batches(split, 4))
  assert len(batches) == loader.num_eval_batches(split, 4) == 2
  np.testing.assert_array_equal(
    np.concatenate([b['inputs'][:, 0] for b in batches])[:7], np.arange(7)
  )
  np.testing.assert_array_equal(batches[0]['puzzle_identifiers'], [1, 1, 2, 3])
  last = batches[1]
  np.testing.assert_array_equal(last['puzzle_identifiers'], [3, 3, 4, 0])
  np.testing.assert_array_equal(last['inputs'][3], [0] * L)
  np.testing.assert_array_equal(last['labels'][3], [-100] * L)
  halves = [list(loader.eval_batches(split, 4, i, 2)) for i in range(2)]
  np.testing.assert_array_equal(halves[1][1]['puzzle_identifiers'], [4, 0])
  for k in last:
    np.testing.assert_array_equal(np.concatenate([halves[0][1][k], halves[1][1][k]]), last[k])


def test_errors_and_steps_per_epoch():
  split = _split([1] * 6, [2] * 3)
  with pytest.raises(ValueError, match='not divisible'):
    loader.train_batches(split, 5, seed=0, process_count=2)
  with pytest.raises(ValueError, match='cannot fill'):
    loader.train_batches(split, 4, seed=0)
  assert loader.steps_per_epoch(split, 2) == 1.5


@pytest.mark.parametrize(
  'examples, groups, batch',
  [([1] * 30, [3] * 10, 4), ([1, 3, 2, 5, 1, 4, 2, 2], [2, 3, 1, 2], 5), ([7, 2, 9], [1, 2], 6)],
)
def test_iteration_batches_counts_what_an_iteration_yields(examples, groups, batch):
  split = _split(examples, groups)
  for iteration in range(4):
    for epochs in (1, 3):
      plan = loader._iteration_plan(split, batch, 0, iteration, epochs)
      assert loader.iteration_batches(split, batch, 0, iteration, epochs) == len(list(plan))


def test_run_length_ends_with_the_last_full_batch_of_the_last_iteration():
  # As the references' loop: Sudoku-Extreme 1k (1000 one-example groups), batch 768, 20k epochs
  # in iterations of eval_interval = 2000 epochs: 10 × floor(2e6 / 768) = 26,040 steps, not
  # S_total = floor(20000 · 1000 / 768) = 26,041; TRM's 50k epochs: 10 × 6510 = 65,100 < 65,104.
  from hrm_jax import config as config_lib
  from hrm_jax import train

  split = _split([1] * 1000, [1] * 1000)
  for epochs, interval, want in ((20000, 2000, 26040), (50000, 5000, 65100)):
    cfg = config_lib.base_config()
    cfg.train.update(global_batch_size=768, epochs=epochs, eval_interval=interval)
    cfg = config_lib.resolve(cfg, loader.steps_per_epoch(split, 768))
    assert cfg.train.total_steps == {26040: 26041, 65100: 65104}[want]
    assert train.run_length(cfg, split, interval) == want
  cfg.train.steps = 100  # an explicit step count runs exactly
  assert train.run_length(config_lib.resolve(cfg, 1.0), split, interval) == 100
