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
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from hrm_jax import checkpoint, evaluators, losses, metric_log, sharding
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


def make_eval_fn(cfg, graphdef, mesh: sharding.Mesh):
  """Jitted `eval_step` (M_max = eval.halt_max_steps) with replicated weights, sharded batch."""
  fn = functools.partial(
    ts.eval_step,
    graphdef=graphdef,
    cfg=ml_collections.FrozenConfigDict(cfg),
    M_max=cfg.eval.halt_max_steps,
  )
  return jax.jit(fn, in_shardings=(mesh.replicated, mesh.replicated, mesh.table, mesh.batch))


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
  mesh: sharding.Mesh,
  evaluator: Optional[evaluators.Evaluator] = None,
  sample: Optional[dict] = None,
) -> dict[str, float]:
  """Evaluates `state` on the whole test split (or eval.max_examples of it); returns mean
  metrics, plus the `evaluator`'s results (maze validity, ARC pass@K) when given. The weights
  are `ts.eval_params(state)`: the EMA average when kept (§4.5). A `sample` dict is filled with
  the first test example's `inputs`, `labels` [L] and `preds` [L] (numpy), for pictures."""
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
    if sample is not None and not sample:
      first = _to_host(preds)[0]
      sample.update(inputs=np.asarray(batch['inputs'][0]), labels=np.asarray(batch['labels'][0]))
      sample['preds'] = first
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
  writer: metric_log.Writer,
  workdir: str,
  step: int,
  metrics: dict,
  M_max: int,
  evaluator: Optional[evaluators.Evaluator] = None,
  sample: Optional[dict] = None,
  task: str = '',
) -> None:
  """Prints the contract's `eval step=...` line (with the evaluator's headline figures),
  writes the metrics (metrics.jsonl, TensorBoard) and the evaluator's files to eval/step_<N>/.
  With a `sample` (see run_eval) of a `task` that has a picture, also eval/step_<N>/
  prediction.png, shown in TensorBoard as `eval/prediction`."""
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
  print('eval ' + metric_log.fmt(shown), flush=True)
  writer.write(dict(step=step, split='eval', M_max=M_max, **metrics))
  if sample and writer.tb is not None and task in ('sudoku', 'maze', 'arc'):
    from matplotlib import image  # plots imports matplotlib; only pictures need it

    from hrm_jax import plots

    png = os.path.join(workdir, 'eval', f'step_{step}', 'prediction.png')
    plots.predictions(png, task, sample['inputs'], sample['labels'], sample['preds'][None])
    rgb = (image.imread(png)[..., :3] * 255).astype(np.uint8)
    writer.image('eval/prediction', step, rgb)


def _setup(
  cfg: ml_collections.ConfigDict,
  meta: data_format.Metadata,
  table_rows: int,
  steps_per_epoch: float = 1.0,
):
  """Resolves the (validated) config and builds the initial (graphdef, state) for `meta`,
  with a puzzle table of `table_rows` rows (padded beyond the ids when it is sharded)."""
  cfg = config_lib.resolve(cfg, steps_per_epoch)
  graphdef, state = ts.init_state(cfg, meta.vocab_size, meta.seq_len, table_rows)
  return cfg, graphdef, state


def _place(mesh: sharding.Mesh, graphdef, state: ts.TrainState, batch_size: int, seq_len: int):
  """(state, all-halted carry) placed on the mesh: the target that restores are read into."""
  carry = ts.init_carry(graphdef, state, batch_size, seq_len)
  return (
    jax.device_put(state, mesh.state_sharding(state)),
    jax.device_put(carry, mesh.carry_sharding(carry)),
  )


def _train_metadata_path(workdir: str) -> str:
  return os.path.join(workdir, 'train_metadata.json')


def _config_path(workdir: str) -> str:
  return os.path.join(workdir, 'config.json')


def saved_config(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config a run saved in `<workdir>/config.json` (resolved), or None when there is none."""
  path = _config_path(workdir)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def write_run_files(
  workdir: str, cfg: ml_collections.ConfigDict, meta: data_format.Metadata
) -> None:
  """Writes `<workdir>/config.json` (the run's config: reruns and the analysis commands read
  it) and `train_metadata.json` (the training data's sizes: --mode=eval rebuilds the model
  without the data), on process 0."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(_config_path(workdir), 'w') as f:
    f.write(cfg.to_json_best_effort(indent=2))
  with open(_train_metadata_path(workdir), 'w') as f:
    f.write(meta.to_json())


def _check_workdir(cfg: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses a workdir that holds a run of another config (config.json written by an earlier
  run); a rerun may change only config_lib.RESUMABLE_FIELDS (length, evaluation, logging...)."""
  saved = saved_config(workdir)
  if saved is None:
    return
  diffs = config_lib.run_differences(saved.to_dict(), cfg)
  if diffs:
    raise config_lib.ConfigError(
      f'invalid config: {workdir} holds a run of another config; not overwriting it. '
      'Use a new --workdir, or the saved config. Differences (saved -> now):\n  '
      + '\n  '.join(diffs)
    )


def _restore_train(mngr, state, carry) -> tuple[int, ts.TrainState, object, dict]:
  """(step, state, carry, meta) of the latest usable checkpoint, or step 0 with the inputs."""
  if not mngr.all_steps():
    return 0, state, carry, {}
  step, restored, meta = checkpoint.restore(mngr, {'state': state, 'carry': carry})
  print(f'resumed from step {step}', flush=True)
  return step, restored['state'], restored['carry'], meta


def train_and_evaluate(
  cfg: ml_collections.ConfigDict, workdir: str, simulate_preemption_at: Optional[int] = None
) -> dict[str, float]:
  """Trains `cfg` in `workdir` with periodic evaluation and checkpoints; resumes if possible.

  Re-running on the same workdir continues from the latest checkpoint, and the resumed run's
  records and parameters are those of an uninterrupted one. SIGTERM/SIGINT checkpoint at the
  next step and return. A non-finite loss or gradient raises metric_log.Divergence (the last
  checkpoint before it is kept). `simulate_preemption_at` acts as if a preemption notice
  arrived at that step (for tests and drills). Returns the final evaluation metrics.
  """
  config_lib.validate(cfg, jax.device_count())  # fail before building data or compiling
  _check_workdir(cfg, workdir)
  data_dir = prepare_data(cfg, workdir)
  # Memory-mapped: ARC with 1000 augmentations is ~4M examples, several GB as int32.
  train_split = data_format.load_split(data_dir, 'train', mmap=True)
  test_split = data_format.load_split(data_dir, 'test', mmap=True)
  evaluator = evaluators.make(cfg, data_dir)
  mesh = sharding.Mesh(shard_puzzle_emb=cfg.mesh.shard_puzzle_emb)
  cfg, graphdef, state = _setup(
    cfg,
    train_split.metadata,
    mesh.table_rows(train_split.metadata.num_puzzle_identifiers),
    loader.steps_per_epoch(train_split, cfg.train.global_batch_size),
  )
  write_run_files(workdir, cfg, train_split.metadata)
  t = cfg.train
  print(
    f'devices={jax.device_count()} processes={jax.process_count()} '
    f'params={ts.count_params(state.params)} total_steps={t.total_steps} data={data_dir}',
    flush=True,
  )

  state, carry = _place(mesh, graphdef, state, t.global_batch_size, train_split.metadata.seq_len)
  mngr = checkpoint.manager(workdir, cfg.ckpt.max_to_keep)
  start, state, carry, ckpt_meta = _restore_train(mngr, state, carry)
  writer = metric_log.Writer(workdir, cfg.log.tensorboard)
  writer.truncate(start if start else -1)  # records after the checkpoint are redone
  if start == 0:
    writer.write(dict(step=0, split='meta', num_params=ts.count_params(state.params)))
  log = metric_log.TrainLog(writer, t.global_batch_size, t.log_every, TRAIN_SHOWN, t.skip_nonfinite)
  log.restore(ckpt_meta.get('train_log'))

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
  host_batches = loader.train_batches(
    train_split,
    t.global_batch_size,
    cfg.seed,
    epochs_per_iter,
    jax.process_index(),
    jax.process_count(),
    skip_batches=start,
  )  # data order is a pure function of the step
  batches = sharding.prefetch(host_batches, mesh, cfg.mesh.prefetch)
  ckpt_every = cfg.ckpt.every_steps or t.eval_every

  def save(step: int) -> None:
    log.flush()  # raises Divergence first: a non-finite state is never saved
    checkpoint.save(mngr, step, {'state': state, 'carry': carry}, dict(train_log=log.state()))

  eval_metrics: dict = {}
  step = start
  log.start(start)
  try:
    with checkpoint.Preemption(simulate_at=simulate_preemption_at) as preemption:
      for step in range(start + 1, t.total_steps + 1):
        state, carry, metrics = step_fn(state, carry, next(batches))
        log.add(step, metrics)  # reads step - 1's metrics while this one runs
        if step == t.total_steps:
          log.finish(step)
        if step % t.eval_every == 0 or step == t.total_steps:
          log.flush()
          # A picture only TensorBoard shows; the same on every process (it gathers preds).
          sample = {} if cfg.log.tensorboard else None
          eval_metrics = run_eval(cfg, eval_fn, state, test_split, mesh, evaluator, sample)
          _report_eval(
            writer,
            workdir,
            step,
            eval_metrics,
            cfg.eval.halt_max_steps,
            evaluator,
            sample,
            cfg.data.name,
          )
        stop = preemption.requested(step)
        if stop or step % ckpt_every == 0 or step == t.total_steps:
          save(step)
        if stop:
          print(f'preempted: checkpoint at step {step} saved; rerun to resume', flush=True)
          break
  finally:
    batches.close()  # stops the prefetch thread
    mngr.wait_until_finished()  # an async save in flight completes before we return or raise
    mngr.close()
  if not eval_metrics and start >= t.total_steps:
    print(f'already trained to step {start}; evaluating', flush=True)
    eval_metrics = run_eval(cfg, eval_fn, state, test_split, mesh, evaluator)
    _report_eval(writer, workdir, start, eval_metrics, cfg.eval.halt_max_steps, evaluator)
  writer.close()
  return eval_metrics


def load_trained(
  cfg: ml_collections.ConfigDict, workdir: str, mesh: Optional[sharding.Mesh] = None
):
  """(resolved cfg, graphdef, state, step, training Metadata) of the latest checkpoint in
  `workdir`, placed on `mesh` (default: all devices): for evaluation, analysis and export."""
  config_lib.validate(cfg, jax.device_count())
  mngr = checkpoint.manager(workdir, read_only=True)
  if not mngr.all_steps() or not os.path.exists(_train_metadata_path(workdir)):
    raise FileNotFoundError(
      f'no checkpoint in {os.path.join(workdir, "checkpoints")}; '
      'train first or pass the right --workdir'
    )
  with open(_train_metadata_path(workdir)) as f:
    meta = data_format.Metadata.from_json(f.read(), source=_train_metadata_path(workdir))
  mesh = mesh or sharding.Mesh(shard_puzzle_emb=cfg.mesh.shard_puzzle_emb)
  # The table and carry as saved: a run with a sharded table pads its rows
  # (sharding.table_rows), and the carry has the training batch's rows.
  rows, batch = mesh.table_rows(meta.num_puzzle_identifiers), cfg.train.global_batch_size
  try:
    saved = checkpoint.saved_shapes(mngr, mngr.latest_step())
    rows, batch = saved['state/puzzle_emb'][0], saved['carry/steps'][0]
  except Exception:  # unreadable metadata: restore() below reports (or skips) that checkpoint
    pass
  cfg, graphdef, state = _setup(cfg, meta, rows)
  state, carry = _place(mesh, graphdef, state, batch, meta.seq_len)
  step, restored, _ = checkpoint.restore(mngr, {'state': state, 'carry': carry})
  return cfg, graphdef, restored['state'], step, meta


def evaluate_checkpoint(
  cfg: ml_collections.ConfigDict, workdir: str, eval_data: Optional[str] = None
) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir` on the test split of `eval_data`.

  `eval_data` is any dataset folder in the reference format (default: the config's data).
  Its vocabulary and sequence length must match the data the checkpoint was trained on.
  """
  mesh = sharding.Mesh(shard_puzzle_emb=cfg.mesh.shard_puzzle_emb)
  cfg, graphdef, state, step, meta = load_trained(cfg, workdir, mesh)
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
  eval_fn = make_eval_fn(cfg, graphdef, mesh)
  metrics = run_eval(cfg, eval_fn, state, test_split, mesh, evaluator)
  writer = metric_log.Writer(workdir, cfg.log.tensorboard)
  _report_eval(writer, workdir, step, metrics, cfg.eval.halt_max_steps, evaluator)
  writer.close()
  return metrics
