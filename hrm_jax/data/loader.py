"""The batch sampler of spec §6.2: seeded train batches and padded, in-order eval batches.

Training order is a pure function of (seed, iteration index): nothing but the arguments is needed
to resume, so it needs no checkpointed iterator state (``skip_batches`` jumps ahead cheaply).

Packing (§6.2): an iteration walks ``epochs_per_iter`` concatenated permutations of the groups; for
each group one puzzle (variant) is drawn uniformly and a random subset, without replacement, of
that puzzle's examples is appended, as many as fit in the batch, so all examples taken from one
variant sit next to each other. An iteration's final incomplete batch is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from hrm_jax.data.format import IGNORE_LABEL_ID, Split

Batch = dict[str, np.ndarray]


def _iteration_rng(seed: int, iteration: int) -> np.random.Generator:
  # As the reference: Philox(seed=seed + iters), its counter being 1 on the first iteration. With
  # the draws below in the reference's order, group order and variant picks match it exactly,
  # so one-example datasets (Sudoku, Maze) get its batches bit for bit.
  return np.random.Generator(np.random.Philox(seed=seed + iteration + 1))


def _iteration_picks(
  split: Split, seed: int, iteration: int, epochs_per_iter: int
) -> tuple[np.random.Generator, np.ndarray]:
  """(the iteration's generator, the puzzle picked for each group visit [epochs·groups])."""
  rng = _iteration_rng(seed, iteration)
  groups = split.group_indices
  order = np.concatenate([rng.permutation(split.num_groups) for _ in range(epochs_per_iter)])
  # One vectorised draw gives the same numbers as the reference's one-per-group draws (the
  # within-puzzle subsets below come after them, so they cannot shift these).
  return rng, rng.integers(groups[order], groups[order + 1])


def iteration_batches(
  split: Split, global_batch_size: int, seed: int, iteration: int, epochs_per_iter: int
) -> int:
  """How many full batches iteration `iteration` yields (`train_batches`), without gathering.

  Each batch takes whole variants in pick order, the last one cut to fit, until it holds
  global_batch_size examples; what is left of an iteration is dropped (§6.2).
  """
  _, picks = _iteration_picks(split, seed, iteration, epochs_per_iter)
  counts = np.diff(split.puzzle_indices)[picks]
  if (counts == 1).all():
    return len(picks) // global_batch_size
  ends = np.cumsum(counts)  # a batch starting after pick s ends at the first pick reaching +B
  batches, before = 0, 0
  while True:
    j = int(np.searchsorted(ends, before + global_batch_size))
    if j == len(ends):
      return batches
    batches, before = batches + 1, int(ends[j])


def _iteration_plan(
  split: Split, global_batch_size: int, seed: int, iteration: int, epochs_per_iter: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (example_idx [B], puzzle_idx [B]) for each full batch of one iteration (§6.2)."""
  rng, picks = _iteration_picks(split, seed, iteration, epochs_per_iter)
  puzzles = split.puzzle_indices
  starts, counts = puzzles[picks].astype(np.int64), (puzzles[picks + 1] - puzzles[picks])
  if (counts == 1).all():  # Sudoku, Maze: one example per variant, no subset to draw
    full = len(picks) // global_batch_size * global_batch_size
    for b in range(0, full, global_batch_size):
      yield starts[b : b + global_batch_size], picks[b : b + global_batch_size]
    return
  examples, owners, size = [], [], 0
  for p, start, count in zip(picks, starts, counts):
    take = min(int(count), global_batch_size - size)
    # The reference draws this subset from the unseeded global numpy RNG (spec §11a #10);
    # drawing it from the iteration's generator makes every batch reproducible.
    chosen = rng.choice(int(count), take, replace=False) if count > 1 else np.zeros(take, np.int64)
    examples.append(start + chosen)
    owners.append(np.full(take, p, np.int64))
    size += take
    if size == global_batch_size:
      yield np.concatenate(examples), np.concatenate(owners)
      examples, owners, size = [], [], 0


def _gather(split: Split, example_idx: np.ndarray, puzzle_idx: np.ndarray) -> Batch:
  inputs, labels = split.take(example_idx)
  return {
    'inputs': inputs,
    'labels': labels,
    'puzzle_identifiers': split.puzzle_identifiers[puzzle_idx].astype(np.int32),
  }


def _local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
  if global_batch_size < 1:
    raise ValueError(f'global_batch_size must be >= 1, got {global_batch_size}')
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, process_count={process_count})')
  if global_batch_size % process_count:
    raise ValueError(
      f'global_batch_size {global_batch_size} is not divisible by process_count {process_count}'
    )
  return global_batch_size // process_count


def train_batches(
  split: Split,
  global_batch_size: int,
  seed: int,
  epochs_per_iter: int = 1,
  process_index: int = 0,
  process_count: int = 1,
  start_iteration: int = 0,
  skip_batches: int = 0,
) -> Iterator[Batch]:
  """Infinite stream of this process's training batches (§6.2).

  Each batch is ``{'inputs': int32 [b, L], 'labels': int32 [b, L] (-100 = ignored),
  'puzzle_identifiers': int32 [b]}`` with b = global_batch_size // process_count: rows
  [process_index·b, (process_index+1)·b) of the global batch. Iteration i (from
  ``start_iteration``) is drawn from a Philox generator keyed by (seed, i). ``skip_batches``
  drops that many global batches from the start without gathering them, so resuming at step s is
  ``train_batches(..., skip_batches=s)``.

  Raises ValueError (at call time) if the batch does not split evenly across processes or one
  iteration cannot fill a single batch.
  """
  local = _local_batch_size(global_batch_size, process_index, process_count)
  if epochs_per_iter < 1:
    raise ValueError(f'epochs_per_iter must be >= 1, got {epochs_per_iter}')
  # The most examples one iteration can supply: the largest variant of every group, each epoch.
  sizes = np.diff(split.puzzle_indices)
  largest = (
    np.maximum.reduceat(sizes, split.group_indices[:-1])
    if split.num_groups
    else np.zeros(0, np.int64)
  )
  capacity = epochs_per_iter * int(largest.sum())
  if capacity < global_batch_size:
    raise ValueError(
      f'one iteration ({epochs_per_iter} epoch(s) of {split.num_groups} groups, at '
      f'most {capacity} examples) cannot fill a batch of {global_batch_size}'
    )
  rows = slice(process_index * local, (process_index + 1) * local)
  return _train_stream(
    split, global_batch_size, seed, epochs_per_iter, rows, start_iteration, skip_batches
  )


def _train_stream(
  split: Split,
  global_batch_size: int,
  seed: int,
  epochs_per_iter: int,
  rows: slice,
  iteration: int,
  skip: int,
) -> Iterator[Batch]:
  while True:
    produced = 0
    for example_idx, puzzle_idx in _iteration_plan(
      split, global_batch_size, seed, iteration, epochs_per_iter
    ):
      produced += 1
      if skip > 0:
        skip -= 1
        continue
      yield _gather(split, example_idx[rows], puzzle_idx[rows])
    if produced == 0:  # the variants drawn were too small this time
      raise ValueError(f'iteration {iteration} could not fill a batch of {global_batch_size}')
    iteration += 1


def eval_batches(
  split: Split, global_batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[Batch]:
  """Yields this process's slice of every test batch, examples in file order (§6.2).

  Batches have the train layout with b = global_batch_size // process_count rows. The last global
  batch is padded to full size with inputs = pad_id, labels = -100 and puzzle_identifiers =
  blank_identifier_id, so a padded row carries no loss or metric. The puzzle id of example n is
  that of the puzzle p with puzzle_indices[p] <= n < puzzle_indices[p + 1].
  """
  local = _local_batch_size(global_batch_size, process_index, process_count)
  meta = split.metadata
  for start in range(0, split.num_examples, global_batch_size):
    lo = min(start + process_index * local, split.num_examples)
    hi = min(start + (process_index + 1) * local, split.num_examples)
    example_idx = np.arange(lo, hi)
    puzzle_idx = np.searchsorted(split.puzzle_indices, example_idx, side='right') - 1
    batch = _gather(split, example_idx, puzzle_idx)
    pad = local - (hi - lo)
    if pad:
      values = {
        'inputs': meta.pad_id,
        'labels': IGNORE_LABEL_ID,
        'puzzle_identifiers': meta.blank_identifier_id,
      }
      batch = {
        k: np.concatenate([v, np.full((pad,) + v.shape[1:], values[k], np.int32)])
        for k, v in batch.items()
      }
    yield batch


def num_eval_batches(split: Split, global_batch_size: int) -> int:
  """Number of batches ``eval_batches`` yields: ceil(N / global_batch_size)."""
  return -(-split.num_examples // global_batch_size)


def steps_per_epoch(split: Split, global_batch_size: int) -> float:
  """total_groups · mean_puzzle_examples / global_batch_size (§5.5).

  The reference's total steps are S_total = floor(epochs · steps_per_epoch).
  """
  meta = split.metadata
  return meta.total_groups * meta.mean_puzzle_examples / global_batch_size
