r"""Train-step benchmark: prints `name: value` lines (a script, not a test).

  python -m hrm_jax.bench --config=experiments/sudoku.py:cpu [--config.<field>=<value> ...]
  python -m hrm_jax.bench --config=experiments/sudoku.py --params_only
  python -m hrm_jax.bench --config=experiments/sudoku.py:cpu --memory_sweep

Times one full ACT train step (segment forward, Q-target forward if configured, backward,
Adam-atan2 and sign-SGD) on random valid batches of the task's shape; no dataset is built. With
--memory_sweep it also prints the compiled train step's temporary memory (XLA memory analysis)
for N·T in {4, 16, 64}, which the 1-step gradient keeps flat (and, with
--config.model.gradient=full, which grows with N·T).
"""

import resource
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.data import grids, maze_gen, sudoku

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:preset].', lock_config=True)
_PARAMS_ONLY = flags.DEFINE_bool('params_only', False, 'Print trainable parameters and exit.')
_MEMORY_SWEEP = flags.DEFINE_bool('memory_sweep', False, 'Temp memory for N·T in 4, 16, 64.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed train steps (after one warm-up step).')
flags.mark_flag_as_required('config')


def task_shapes(data_cfg) -> tuple[int, int, int]:
  """(vocab, seq_len, puzzle ids) of the data a config builds: the sizes its builder writes.

  ARC's ~10^6 puzzle ids are left out (one row): the table does not change the step's compute.
  """
  if data_cfg.name == 'sudoku':
    meta = sudoku.metadata(num_groups=1, num_puzzles=1)
    return meta.vocab_size, meta.seq_len, 1
  if data_cfg.name == 'maze':
    return maze_gen.VOCAB_SIZE, data_cfg.maze_size**2, 1
  if data_cfg.name == 'arc':
    return grids.ARC_VOCAB, data_cfg.canvas**2, 1
  raise config_lib.ConfigError(f'bench: unknown data.name {data_cfg.name!r}')


SWEEP = ((2, 2), (4, 4), (8, 8))  # (H_cycles, L_cycles): N·T = 4, 16, 64


def random_batch(
  rng: np.random.Generator, batch_size: int, vocab: int, seq_len: int, num_ids: int
) -> dict:
  """A batch of valid token ids (inputs, labels in [1, vocab)) and puzzle ids, int32."""
  return dict(
    inputs=rng.integers(1, vocab, (batch_size, seq_len), dtype=np.int32),
    labels=rng.integers(1, vocab, (batch_size, seq_len), dtype=np.int32),
    puzzle_identifiers=rng.integers(0, num_ids, (batch_size,), dtype=np.int32),
  )


def _compiled_step(cfg, shapes):
  vocab, seq_len, num_ids = shapes
  graphdef, state = ts.init_state(cfg, vocab, seq_len, num_ids)
  carry = ts.init_carry(graphdef, state, cfg.train.global_batch_size, seq_len)
  step = ts.jit_train_step(graphdef, cfg, donate_argnums=(0, 1))
  return step, state, carry


def train_step_temp_mb(cfg, shapes) -> float:
  """Temporary (activation + workspace) memory of the compiled train step, in MiB."""
  step, state, carry = _compiled_step(cfg, shapes)
  batch = random_batch(np.random.default_rng(0), cfg.train.global_batch_size, *shapes)
  analysis = step.lower(state, carry, batch).compile().memory_analysis()
  return analysis.temp_size_in_bytes / 2**20


def main(argv):
  del argv
  cfg = config_lib.resolve(_CONFIG.value, 1.0)
  config_lib.validate(cfg, jax.device_count())
  shapes = task_shapes(cfg.data)
  step, state, carry = _compiled_step(cfg, shapes)  # jit compiles lazily, at the first call
  print(f'params: {ts.count_params(state.params)}')
  if _PARAMS_ONLY.value:
    return
  B = cfg.train.global_batch_size
  rng = np.random.default_rng(0)
  t0 = time.perf_counter()
  state, carry, m = step(state, carry, random_batch(rng, B, *shapes))
  jax.block_until_ready(m)
  print(f'compile_and_first_step_s: {time.perf_counter() - t0:.2f}')
  batches = [random_batch(rng, B, *shapes) for _ in range(_STEPS.value)]
  t0 = time.perf_counter()
  for batch in batches:
    state, carry, m = step(state, carry, batch)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / _STEPS.value
  print(f'batch: {B}')
  print(f'step_ms: {dt * 1e3:.1f}')
  print(f'examples_per_s: {B / dt:.2f}')
  print(f'peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}')
  if _MEMORY_SWEEP.value:
    for N, T in SWEEP:
      c = ml_collections.ConfigDict(cfg.to_dict())
      c.model.update(H_cycles=N, L_cycles=T)
      print(f'train_step_temp_mb_nt{N * T}: {train_step_temp_mb(c, shapes):.1f}')


if __name__ == '__main__':
  app.run(main)
