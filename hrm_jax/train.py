"""The training loop: data, mesh, state, the jitted step, periodic evaluation, checkpoints, logs.

Importable from a notebook: `train_and_evaluate(cfg, workdir)`. Evaluation itself lives in
`evaluate.py`, the run files in `workdir.py`, the step in `train_step.py`.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import jax
import ml_collections

from hrm_jax import checkpoint, evaluate, metric_log, sharding, tasks
from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax import workdir as workdir_lib
from hrm_jax.data import format as data_format
from hrm_jax.data import loader

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


class Profile:
  """A JAX profiler trace of training steps A..B (1-based, inclusive) into `<workdir>/profile`,
  for TensorBoard's profile plugin or Perfetto; a run resumed past A traces from its first
  step. jax.profiler writes bucket paths (gs://) itself."""

  def __init__(self, steps: Optional[tuple[int, int]], workdir: str, start: int):
    a, self.last = steps or (0, -1)
    self.first = max(a, start + 1)  # the first step this process runs is start + 1
    self.dir = f'{str(workdir).rstrip("/")}/profile'
    self.on, self.ran = False, 0

  @staticmethod
  def check(steps: Optional[tuple[int, int]]) -> None:
    """Raises ConfigError unless `steps` is None or (A, B) with 1 <= A <= B."""
    if steps is not None and not (len(steps) == 2 and 1 <= steps[0] <= steps[1]):
      raise config_lib.ConfigError(f'profile_steps: want A:B with 1 <= A <= B, got {steps}')

  def before(self, step: int) -> None:
    """Starts the trace before step `first`."""
    if step == self.first and self.first <= self.last:
      jax.profiler.start_trace(self.dir)
      self.on = True

  def after(self, step: int, outputs) -> None:
    """Stops the trace once step `last` has run (its `outputs` computed)."""
    self.ran = step
    if self.on and step == self.last:
      jax.block_until_ready(outputs)
      self.stop()

  def stop(self) -> None:
    """Ends a trace in progress and says where it went."""
    if self.on:
      self.on = False
      jax.profiler.stop_trace()
      print(f'profile of steps {self.first}..{self.ran} written to {self.dir}', flush=True)


def _restore_train(mngr, state, carry) -> tuple[int, ts.TrainState, object, dict]:
  """(step, state, carry, meta) of the latest usable checkpoint, or step 0 with the inputs."""
  if not mngr.all_steps():
    return 0, state, carry, {}
  step, restored, meta = checkpoint.restore(
    mngr, {'state': state, 'carry': carry}, set_aside_damaged=True
  )
  print(f'resumed from step {step}', flush=True)
  return step, restored['state'], restored['carry'], meta


def run_length(cfg: ml_collections.ConfigDict, split, epochs_per_iter: int) -> int:
  """The last step of the run: train.total_steps, or fewer when the data run out first.

  With train.steps set the loop runs exactly that many. A run given in epochs is, as in the
  references' loop, epochs // epochs_per_iter iterations, each ending at its last full batch
  (§6.2), capped at S_total = train.total_steps: Sudoku and Maze 1k at 20k epochs stop at
  10 × 2604 = 26,040 steps although the lr schedule is laid out over S_total = 26,041.
  """
  t = cfg.train
  if t.steps:
    return t.total_steps
  iterations = max(1, t.epochs // epochs_per_iter)
  batches = 0
  for i in range(iterations):
    batches += loader.iteration_batches(split, t.global_batch_size, cfg.seed, i, epochs_per_iter)
    if batches >= t.total_steps:
      return t.total_steps
  return batches


def train_and_evaluate(
  cfg: ml_collections.ConfigDict,
  workdir: str,
  simulate_preemption_at: Optional[int] = None,
  profile_steps: Optional[tuple[int, int]] = None,
) -> dict[str, float]:
  """Trains `cfg` in `workdir` with periodic evaluation and checkpoints; resumes if possible.

  Re-running on the same workdir continues from the latest checkpoint, and the resumed run's
  records and parameters are those of an uninterrupted one. SIGTERM/SIGINT checkpoint at the
  next step and return. A non-finite loss or gradient raises metric_log.Divergence (the last
  checkpoint before it is kept). `simulate_preemption_at` acts as if a preemption notice
  arrived at that step (for tests and drills). `profile_steps` (A, B) writes a JAX profiler
  trace of steps A..B to `<workdir>/profile` (see `Profile`). Returns the final evaluation metrics.
  """
  config_lib.validate(cfg, jax.device_count())  # fail before writing or building anything
  Profile.check(profile_steps)
  with checkpoint.Preemption(simulate_at=simulate_preemption_at) as preemption:
    lock = None
    try:
      lock = workdir_lib.acquire_lock(workdir)  # one run per workdir
      return _train_and_evaluate(cfg, workdir, preemption, profile_steps)
    except checkpoint.Preempted as e:
      # Data build, restore or compilation: nothing beyond the last checkpoint to save.
      print(
        f'received {e} before training started: stopped, nothing new to checkpoint; '
        'rerun to resume',
        flush=True,
      )
      return {}
    finally:
      workdir_lib.release_lock(lock)


def _train_and_evaluate(
  cfg: ml_collections.ConfigDict,
  workdir: str,
  preemption: checkpoint.Preemption,
  profile_steps: Optional[tuple[int, int]] = None,
) -> dict[str, float]:
  """`train_and_evaluate` under the caller's preemption handler and workdir lock."""
  workdir_lib.check_config(cfg, workdir)
  data_dir = tasks.prepare_data(cfg, workdir)
  # Memory-mapped: ARC with 1000 augmentations is ~4M examples, several GB as int32.
  train_split = tasks.load_split(data_dir, 'train')
  test_split = tasks.load_split(data_dir, 'test')
  evaluator = tasks.get(cfg.data.name).evaluator(cfg, data_dir)
  meta = train_split.metadata
  # Before anything compiles: an evaluation that cannot run would fail after training.
  evaluate.check_eval_data(data_dir, test_split.metadata, meta)
  if test_split.num_examples == 0:
    raise data_format.DatasetError(f'{data_dir}: the test split has no examples to evaluate on')
  mesh = sharding.Mesh(shard_puzzle_emb=cfg.mesh.shard_puzzle_emb)
  cfg = config_lib.resolve(cfg, loader.steps_per_epoch(train_split, cfg.train.global_batch_size))
  t = cfg.train
  epochs_per_iter = max(
    1, math.ceil(t.eval_every / loader.steps_per_epoch(train_split, t.global_batch_size))
  )
  last_step = run_length(cfg, train_split, epochs_per_iter)
  graphdef, state, carry = ts.init_sharded(
    cfg,
    meta.vocab_size,
    meta.seq_len,
    mesh.table_rows(meta.num_puzzle_identifiers),
    t.global_batch_size,
    mesh,
  )
  print(
    f'devices={jax.device_count()} processes={jax.process_count()} '
    f'params={ts.count_params(state.params)} total_steps={t.total_steps} '
    + (f'last_step={last_step} ' if last_step != t.total_steps else '')
    + f'data={data_dir}',
    flush=True,
  )

  mngr = checkpoint.manager(workdir, cfg.ckpt.max_to_keep, directory=cfg.ckpt.dir)
  start, state, carry, ckpt_meta = _restore_train(mngr, state, carry)
  # Only now, with every check passed (a checkpoint of another model is refused by the restore):
  # a refused run must leave the workdir as it found it.
  workdir_lib.write_run_files(workdir, cfg, meta)
  # Process 0 has not started a save of its own yet (orbax's primary host makes a save's
  # folder), so every partial save here is a killed run's.
  for name in checkpoint.remove_partial_saves(mngr):
    print(f'removed {name}: the partial save of an interrupted run', flush=True)
  writer = metric_log.Writer(workdir, cfg.log.tensorboard, metric_log.wandb_settings(cfg))
  writer.truncate(start if start else -1)  # records after the checkpoint are redone
  if start == 0:
    writer.write(dict(step=0, split='meta', num_params=ts.count_params(state.params)))
  log = metric_log.TrainLog(writer, t.global_batch_size, t.log_every, TRAIN_SHOWN, t.skip_nonfinite)
  log.restore(ckpt_meta.get('train_log'))
  log.total = last_step

  step_fn = ts.jit_train_step(
    graphdef,
    cfg,
    in_shardings=(mesh.state_sharding(state), mesh.carry_sharding(carry), mesh.batch),
    out_shardings=(mesh.state_sharding(state), mesh.carry_sharding(carry), mesh.replicated),
    donate_argnums=(0, 1),
  )
  eval_fn = evaluate.make_eval_fn(cfg, graphdef, mesh)
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

  def save(step: int) -> bool:
    log.flush()  # raises Divergence first: a non-finite state is never saved
    return checkpoint.save(
      mngr, step, {'state': state, 'carry': carry}, dict(train_log=log.state())
    )

  eval_metrics: dict = {}
  step = start
  log.start(start)
  profile = Profile(profile_steps, workdir, start)
  try:
    preemption.start_training()
    if start < last_step:
      print(f'compiling the train step (steps {start + 1}..{last_step} follow)', flush=True)
    for step in range(start + 1, last_step + 1):
      t0 = time.time()
      profile.before(step)
      state, carry, metrics = step_fn(state, carry, next(batches))
      profile.after(step, (state, carry, metrics))
      if step == start + 1:  # the first call compiled (or loaded it from the cache)
        print(f'compiled in {time.time() - t0:.1f} s; training', flush=True)
      log.add(step, metrics)  # reads step - 1's metrics while this one runs
      if step == last_step:
        log.finish(step)
      stop = preemption.requested(step)
      saved = False
      if stop or step % ckpt_every == 0 or step == last_step:
        saved = save(step)  # before the evaluation: a failing evaluation loses no training
      if step % t.eval_every == 0 or step == last_step:
        log.flush()
        # A picture only TensorBoard shows; the same on every process (it gathers preds).
        sample = {} if cfg.log.tensorboard else None
        eval_metrics = evaluate.run_eval(cfg, eval_fn, state, test_split, mesh, evaluator, sample)
        evaluate.report(
          writer,
          workdir,
          step,
          eval_metrics,
          cfg.eval.halt_max_steps,
          evaluator,
          sample=sample,
          task=cfg.data.name,
        )
      if stop:
        done = 'saved' if saved else 'NOT saved (see the warning)'
        print(f'preempted: checkpoint at step {step} {done}; rerun to resume', flush=True)
        break
    if not eval_metrics and start >= last_step:
      print(f'already trained to step {start}; evaluating', flush=True)
      eval_metrics = evaluate.run_eval(cfg, eval_fn, state, test_split, mesh, evaluator)
      if writer.has(start, 'eval'):  # rerun of a finished run: the log already holds this one
        evaluate.print_eval_line(start, eval_metrics, evaluator)
      else:  # e.g. the evaluation after the last checkpoint failed or was killed
        evaluate.report(writer, workdir, start, eval_metrics, cfg.eval.halt_max_steps, evaluator)
  finally:
    profile.stop()  # a run that ends or fails inside the traced steps
    batches.close()  # stops the prefetch thread
    checkpoint.finish(mngr)  # an async save in flight completes before we return or raise
    # Also when the run fails: an open TensorBoard writer's atexit flush would print tracebacks.
    writer.close()
  return eval_metrics
