"""The training loop: data, mesh, init/restore, the jitted step, evaluation, checkpoints, logs.

Everything here is importable from a notebook: `train_and_evaluate(cfg, workdir)` and
`evaluate_checkpoint(cfg, workdir, eval_data)`.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import time
from typing import Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from hrm_jax import checkpoint, evaluators, losses
from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.data import arc, loader, maze, sudoku
from hrm_jax.data import format as data_format

DATA_BUILDERS = {'sudoku': sudoku.prepare, 'maze': maze.prepare, 'arc': arc.prepare}
# Training metrics shown on the progress line (metrics.jsonl gets all of them).
TRAIN_SHOWN = (
  'lm_loss',
  'accuracy',
  'exact_accuracy',
  'blank_accuracy',
  'steps',
  'lr',
  'steps_per_s',
)


def prepare_data(cfg: ml_collections.ConfigDict, workdir: str) -> str:
  """Resolves `cfg.data` to a dataset folder in the reference format, building it if needed."""
  if cfg.data.path:
    return cfg.data.path  # validated by the load_split calls that follow
  if cfg.data.name not in DATA_BUILDERS:
    raise config_lib.ConfigError(
      f'invalid config: data.name: unknown dataset {cfg.data.name!r}; '
      f'choose one of {sorted(DATA_BUILDERS)} or set data.path'
    )
  return DATA_BUILDERS[cfg.data.name](cfg.data, workdir)


class Mesh:
  """The device mesh (one `data` axis over every device of every host) and its shardings.

  Parameters, optimizer state and the puzzle table are replicated; the batch and the ACT carry
  are split along their leading (batch) axis. We use `jit` with `NamedSharding` rather than
  `pmap`: one code path for 1 CPU, fake CPU devices, a GPU box or a TPU pod, and global arrays
  whose semantics (sums over the global batch, §5.4) do not depend on the device count.
  """

  def __init__(self):
    # Auto axes: XLA propagates shardings from the annotated inputs (recent JAX defaults to
    # Explicit axes, whose typed shardings would need annotating every gather in the model).
    self.mesh = jax.make_mesh(
      (jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,)
    )
    self.replicated = NamedSharding(self.mesh, P())
    self.batch = NamedSharding(self.mesh, P('data'))

  def global_batch(self, local: dict) -> dict:
    """Host-local numpy batch slices -> global jax arrays sharded on `data`."""
    return {
      k: jax.make_array_from_process_local_data(self.batch, np.asarray(v)) for k, v in local.items()
    }

  def carry_sharding(self, carry):
    """The ACT carry's shardings: every field split on its leading (batch) axis."""
    return jax.tree.map(lambda _: self.batch, carry)

  def state_sharding(self, state):
    """The TrainState's shardings: everything replicated."""
    return jax.tree.map(lambda _: self.replicated, state)


def _log(workdir: str, record: dict) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
      f.write(json.dumps(record) + '\n')


def _fmt(d: dict) -> str:
  return ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in d.items())


def make_eval_fn(cfg, graphdef, mesh: Mesh):
  """Jitted `eval_step` (M_max = eval.halt_max_steps) with replicated weights, sharded batch."""
  fn = functools.partial(
    ts.eval_step,
    graphdef=graphdef,
    cfg=ml_collections.FrozenConfigDict(cfg),
    M_max=cfg.eval.halt_max_steps,
  )
  return jax.jit(fn, in_shardings=(mesh.replicated, mesh.replicated, mesh.replicated, mesh.batch))


def _to_host(x: jax.Array) -> np.ndarray:
  """The whole of a global array as numpy on every process (evaluators see global batches)."""
  if jax.process_count() == 1:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def run_eval(
  cfg,
  eval_fn,
  state: ts.TrainState,
  split: data_format.Split,
  mesh: Mesh,
  evaluator: Optional[evaluators.Evaluator] = None,
) -> dict[str, float]:
  """Evaluates `state` on the whole test split (or eval.max_examples of it); returns mean
  metrics, plus the `evaluator`'s results (maze validity, ARC pass@K) when given. The weights
  are `ts.eval_params(state)`: the EMA average when kept (§4.5)."""
  params = ts.eval_params(state)
  batch_size = cfg.eval.batch_size
  batches = loader.eval_batches(split, batch_size, jax.process_index(), jax.process_count())
  if cfg.eval.max_examples:
    batches = itertools.islice(batches, math.ceil(cfg.eval.max_examples / batch_size))
  if evaluator is not None:
    evaluator.begin()
  sums, previous = None, None
  for batch in batches:  # sums stay on device: one host transfer per evaluation
    global_batch = mesh.global_batch(batch)
    metrics, preds, q_halt = eval_fn(params, state.buffers, state.puzzle_emb, global_batch)
    sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    if evaluator is not None:
      # Scored one batch late, so the host decodes batch i while the device runs batch i + 1.
      if previous is not None:
        evaluator.update(*previous)
      host_batch = (
        batch if jax.process_count() == 1 else {k: _to_host(v) for k, v in global_batch.items()}
      )
      previous = (host_batch, _to_host(preds), _to_host(q_halt))
  if previous is not None:
    evaluator.update(*previous)
  result = losses.normalize_metrics(jax.device_get(sums))
  if evaluator is not None:
    result.update(evaluator.result())
  return result


def _report_eval(
  workdir: str,
  step: int,
  metrics: dict,
  M_max: int,
  evaluator: Optional[evaluators.Evaluator] = None,
) -> None:
  """Prints the contract's `eval step=...` line (with the evaluator's headline figures),
  appends the metrics to metrics.jsonl and writes the evaluator's files to eval/step_<N>/."""
  shown = dict(
    step=step,
    exact_accuracy=metrics['exact_accuracy'],
    accuracy=metrics['accuracy'],
    blank_accuracy=metrics['blank_accuracy'],
    steps=metrics['steps'],
  )
  if evaluator is not None:
    shown.update({k: metrics[k] for k in evaluator.shown})
    if jax.process_index() == 0:
      evaluator.write(os.path.join(workdir, 'eval', f'step_{step}'))
  print('eval ' + _fmt(shown), flush=True)
  _log(workdir, dict(step=step, split='eval', M_max=M_max, **metrics))


def _setup(
  cfg: ml_collections.ConfigDict, meta: data_format.Metadata, steps_per_epoch: float = 1.0
):
  """Resolves the (validated) config and builds the initial (graphdef, state) for `meta`."""
  cfg = config_lib.resolve(cfg, steps_per_epoch)
  graphdef, state = ts.init_state(cfg, meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers)
  return cfg, graphdef, state


def _place(mesh: Mesh, graphdef, state: ts.TrainState, batch_size: int, seq_len: int):
  """(state, all-halted carry) placed on the mesh: the target that restores are read into."""
  carry = ts.init_carry(graphdef, state, batch_size, seq_len)
  return (
    jax.device_put(state, mesh.state_sharding(state)),
    jax.device_put(carry, mesh.carry_sharding(carry)),
  )


def _train_metadata_path(workdir: str) -> str:
  return os.path.join(workdir, 'train_metadata.json')


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains `cfg` in `workdir` with periodic evaluation and checkpoints; resumes if possible.

  Returns the final evaluation metrics.
  """
  config_lib.validate(cfg, jax.device_count())  # fail before building data or compiling
  data_dir = prepare_data(cfg, workdir)
  # Memory-mapped: ARC with 1000 augmentations is ~4M examples, several GB as int32.
  train_split = data_format.load_split(data_dir, 'train', mmap=True)
  test_split = data_format.load_split(data_dir, 'test', mmap=True)
  evaluator = evaluators.make(cfg, data_dir)
  os.makedirs(workdir, exist_ok=True)
  cfg, graphdef, state = _setup(
    cfg, train_split.metadata, loader.steps_per_epoch(train_split, cfg.train.global_batch_size)
  )
  if jax.process_index() == 0:
    # Kept so that --mode=eval can rebuild the model without the training data.
    with open(_train_metadata_path(workdir), 'w') as f:
      f.write(train_split.metadata.to_json())
  t = cfg.train
  mesh = Mesh()
  print(
    f'devices={jax.device_count()} processes={jax.process_count()} '
    f'params={ts.count_params(state.params)} total_steps={t.total_steps} data={data_dir}',
    flush=True,
  )

  state, carry = _place(mesh, graphdef, state, t.global_batch_size, train_split.metadata.seq_len)
  mngr = checkpoint.manager(workdir, cfg.ckpt.max_to_keep)
  start = 0
  if mngr.latest_step() is not None:
    start, restored = checkpoint.restore(mngr, {'state': state, 'carry': carry})
    state, carry = restored['state'], restored['carry']
    print(f'resumed from step {start}', flush=True)
  else:
    _log(workdir, dict(step=0, split='meta', num_params=ts.count_params(state.params)))

  step_fn = ts.jit_train_step(
    graphdef,
    cfg,
    in_shardings=(mesh.state_sharding(state), mesh.carry_sharding(carry), mesh.batch),
    out_shardings=(mesh.state_sharding(state), mesh.carry_sharding(carry), mesh.replicated),
    donate_argnums=(0, 1),
  )
  eval_fn = make_eval_fn(cfg, graphdef, mesh)
  epochs_per_iter = max(
    1, math.ceil(t.eval_every / loader.steps_per_epoch(train_split, t.global_batch_size))
  )
  batches: Iterator[dict] = loader.train_batches(
    train_split,
    t.global_batch_size,
    cfg.seed,
    epochs_per_iter,
    jax.process_index(),
    jax.process_count(),
    skip_batches=start,
  )  # data order is a pure function of the step
  ckpt_every = cfg.ckpt.every_steps or t.eval_every
  pending: list = []
  tick, tick_step = time.time(), start
  eval_metrics: dict = {}
  for step in range(start + 1, t.total_steps + 1):
    state, carry, metrics = step_fn(state, carry, mesh.global_batch(next(batches)))
    pending.append(metrics)
    if step % t.log_every == 0 or step == t.total_steps:
      # The only host sync of the loop: once per log interval, after dispatching the step.
      fetched = jax.device_get(pending)
      pending = []
      lr = float(fetched[-1]['lr'])
      sums = jax.tree.map(lambda *xs: float(np.sum(xs)), *fetched)
      sums.pop('lr')
      m = losses.normalize_metrics(sums, t.global_batch_size * t.log_every)
      if not all(math.isfinite(v) for v in m.values()):
        raise FloatingPointError(f'non-finite training metrics at step {step}: {m}')
      now = time.time()
      m.update(lr=lr, steps_per_s=(step - tick_step) / (now - tick))
      tick, tick_step = now, step
      print('train ' + _fmt(dict(step=step, **{k: m[k] for k in TRAIN_SHOWN})), flush=True)
      _log(workdir, dict(step=step, split='train', **m))
    if step % t.eval_every == 0 or step == t.total_steps:
      eval_metrics = run_eval(cfg, eval_fn, state, test_split, mesh, evaluator)
      _report_eval(workdir, step, eval_metrics, cfg.eval.halt_max_steps, evaluator)
    if step % ckpt_every == 0 or step == t.total_steps:
      checkpoint.save(mngr, step, {'state': state, 'carry': carry})
  mngr.wait_until_finished()
  mngr.close()
  if not eval_metrics and start >= t.total_steps:
    print(f'already trained to step {start}; evaluating', flush=True)
    eval_metrics = run_eval(cfg, eval_fn, state, test_split, mesh, evaluator)
    _report_eval(workdir, start, eval_metrics, cfg.eval.halt_max_steps, evaluator)
  return eval_metrics


def evaluate_checkpoint(
  cfg: ml_collections.ConfigDict, workdir: str, eval_data: Optional[str] = None
) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir` on the test split of `eval_data`.

  `eval_data` is any dataset folder in the reference format (default: the config's data).
  Its vocabulary and sequence length must match the data the checkpoint was trained on.
  """
  config_lib.validate(cfg, jax.device_count())
  mngr = checkpoint.manager(workdir, read_only=True)
  if mngr.latest_step() is None or not os.path.exists(_train_metadata_path(workdir)):
    raise FileNotFoundError(
      f'no checkpoint in {os.path.join(workdir, "checkpoints")}; '
      'train first or pass the right --workdir'
    )
  with open(_train_metadata_path(workdir)) as f:
    meta = data_format.Metadata.from_json(f.read())
  data_dir = eval_data or prepare_data(cfg, workdir)
  test_split = data_format.load_split(data_dir, 'test', mmap=True)
  evaluator = evaluators.make(cfg, data_dir)
  tm = test_split.metadata
  if (tm.vocab_size, tm.seq_len) != (meta.vocab_size, meta.seq_len):
    raise data_format.DatasetError(
      f'{data_dir}: vocab_size/seq_len {tm.vocab_size}/{tm.seq_len} differ from the '
      f"checkpoint's training data {meta.vocab_size}/{meta.seq_len}"
    )
  if tm.num_puzzle_identifiers > meta.num_puzzle_identifiers:
    raise data_format.DatasetError(
      f"{data_dir}: {tm.num_puzzle_identifiers} puzzle identifiers, but the checkpoint's "
      f'puzzle-embedding table has {meta.num_puzzle_identifiers} rows'
    )
  cfg, graphdef, state = _setup(cfg, meta)
  mesh = Mesh()
  state, carry = _place(mesh, graphdef, state, cfg.train.global_batch_size, meta.seq_len)
  step, restored = checkpoint.restore(mngr, {'state': state, 'carry': carry})
  state = restored['state']
  eval_fn = make_eval_fn(cfg, graphdef, mesh)
  metrics = run_eval(cfg, eval_fn, state, test_split, mesh, evaluator)
  _report_eval(workdir, step, metrics, cfg.eval.halt_max_steps, evaluator)
  return metrics
