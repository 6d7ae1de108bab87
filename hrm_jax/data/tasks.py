"""The array sizes each task's data has, without building it: for benchmarks and converters."""

from __future__ import annotations

from typing import Any

from hrm_jax.data import format as data_format
from hrm_jax.data import grids, maze_gen, sudoku


def task_shapes(data_cfg: Any) -> tuple[int, int, int]:
  """(vocab_size, seq_len, num_puzzle_identifiers) of the data `data_cfg` names.

  `data.path` set: read from that folder's test metadata. Otherwise the sizes the task's
  builder writes, with one puzzle id: ARC's ~10^6 ids depend on the build (they do not change
  a step's compute). Raises ValueError for an unknown `data.name`.
  """
  if data_cfg.get('path'):
    meta = data_format.load_split(data_cfg.path, 'test', mmap=True).metadata
    return meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers
  if data_cfg.name == 'sudoku':
    meta = sudoku.metadata(num_groups=1, num_puzzles=1)
    return meta.vocab_size, meta.seq_len, 1
  if data_cfg.name == 'maze':
    return maze_gen.VOCAB_SIZE, data_cfg.maze_size**2, 1
  if data_cfg.name == 'arc':
    return grids.ARC_VOCAB, data_cfg.canvas**2, 1
  raise ValueError(
    f'invalid config: data.name: unknown dataset {data_cfg.name!r}; choose sudoku, maze or arc'
  )
