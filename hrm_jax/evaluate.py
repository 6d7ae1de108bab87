"""Evaluation: the jitted rollout to M_max over a test split, its report, and evaluating or
loading a trained workdir.

`run_eval` is what the training loop calls at each evaluation; `evaluate_checkpoint` is
`--mode=eval`; `load_trained` restores a workdir's latest checkpoint for evaluation, analysis
and export.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
import tempfile
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from hrm_jax import checkpoint, losses, metric_log, progress, sharding, tasks
from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax import workdir as workdir_lib
from hrm_jax.data import build as data_build
from hrm_jax.data import format as data_format
from hrm_jax.data import loader
from hrm_jax.evaluators import Evaluator


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
  evaluator: Optional[Evaluator] = None,
  sample: Optional[dict] = None,
) -> dict[str, float]:
  """Evaluates `state` on the whole test split (or eval.max_examples of it); returns mean
  metrics, plus the `evaluator`'s results (maze validity, ARC pass@K) when given. The weights
  are `ts.eval_params(state)`: the EMA average when kept (§4.5). A `sample` dict is filled with
  the first test example's `inputs`, `labels` [L] and `preds` [L] (numpy), for pictures."""
  params = ts.eval_params(state)
  batch_size = cfg.eval.batch_size
  batches = loader.eval_batches(split, batch_size, jax.process_index(), jax.process_count())
  total = math.ceil(split.num_examples / batch_size)
  if cfg.eval.max_examples:
    total = min(total, math.ceil(cfg.eval.max_examples / batch_size))
    batches = itertools.islice(batches, total)
  if evaluator is not None:
    evaluator.begin()
  sums, previous = None, None
  shown = progress.Progress('evaluating: batch', total, enabled=jax.process_index() == 0)
  for i, batch in enumerate(batches):  # sums stay on device: one host transfer per evaluation
    shown.update(i + 1)
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


def print_eval_line(step: int, metrics: dict[str, float], evaluator: Optional[Evaluator]) -> None:
  """Prints the contract's `eval step=...` line, with the evaluator's headline figures."""
  shown = dict(
    step=step,
    exact_accuracy=metrics['exact_accuracy'],
    accuracy=metrics['accuracy'],
    blank_accuracy=metrics['blank_accuracy'],
    steps=metrics['steps'],
  )
  if evaluator is not None:
    shown.update({k: metrics[k] for k in evaluator.shown})
  print('eval ' + metric_log.fmt(shown), flush=True)


def write_eval(
  writer: metric_log.Writer,
  files_dir: str,
  step: int,
  metrics: dict[str, float],
  M_max: int,
  evaluator: Optional[Evaluator] = None,
  sample: Optional[dict] = None,
  task: str = '',
  extra: Optional[dict] = None,
) -> None:
  """Writes an evaluation's record (metrics.jsonl with the `extra` fields, TensorBoard) and the
  evaluator's files to `files_dir`. With a `sample` (see run_eval) of `task` and TensorBoard
  on, also the task's picture `<files_dir>/prediction.png`, shown as `eval/prediction`."""
  if evaluator is not None and jax.process_index() == 0:
    evaluator.write(files_dir)
  writer.write(dict(step=step, split='eval', M_max=M_max, **(extra or {}), **metrics))
  if sample and writer.tb is not None and task:
    from matplotlib import image  # only pictures need matplotlib

    with tempfile.TemporaryDirectory() as tmp:  # drawn locally: files_dir may be a bucket
      png = os.path.join(tmp, 'prediction.png')
      tasks.get(task).draw(png, sample['inputs'], sample['labels'], sample['preds'][None])
      rgb = (image.imread(png)[..., :3] * 255).astype(np.uint8)
      epath.Path(files_dir).mkdir(parents=True, exist_ok=True)
      (epath.Path(files_dir) / 'prediction.png').write_bytes(epath.Path(png).read_bytes())
    writer.image('eval/prediction', step, rgb)


def report(
  writer: metric_log.Writer,
  workdir: str,
  step: int,
  metrics: dict[str, float],
  M_max: int,
  evaluator: Optional[Evaluator] = None,
  **write_args,
) -> None:
  """A training run's evaluation: the `eval step=...` line, then its record and files in
  `<workdir>/eval/step_<N>/` (write_eval, with its `sample` and `task` in `write_args`)."""
  print_eval_line(step, metrics, evaluator)
  files_dir = os.path.join(workdir, 'eval', f'step_{step}')
  write_eval(writer, files_dir, step, metrics, M_max, evaluator, **write_args)


def load_trained(
  cfg: ml_collections.ConfigDict, workdir: str, mesh: Optional[sharding.Mesh] = None
):
  """(resolved cfg, graphdef, state, step, training Metadata) of the latest checkpoint in
  `workdir`, placed on `mesh` (default: all devices): for evaluation, analysis and export."""
  config_lib.validate(cfg, jax.device_count())
  mngr = checkpoint.manager(workdir, read_only=True, directory=cfg.ckpt.get('dir', ''))
  meta = workdir_lib.saved_metadata(workdir)
  if not mngr.all_steps() or meta is None:
    raise FileNotFoundError(
      f'no checkpoint in {os.path.join(workdir, "checkpoints")}; '
      'train first or pass the right --workdir'
    )
  mesh = mesh or sharding.Mesh(shard_puzzle_emb=cfg.mesh.shard_puzzle_emb)
  # The table and carry as saved: a run with a sharded table pads its rows
  # (sharding.table_rows), and the carry has the training batch's rows.
  rows, batch = mesh.table_rows(meta.num_puzzle_identifiers), cfg.train.global_batch_size
  try:
    saved = checkpoint.saved_shapes(mngr, mngr.latest_step())
    rows, batch = saved['state/puzzle_emb'][0], saved['carry/steps'][0]
  except Exception:  # unreadable metadata: restore() below reports (or skips) that checkpoint
    pass
  cfg = config_lib.resolve(cfg, 1.0)
  graphdef, state, carry = ts.init_sharded(cfg, meta.vocab_size, meta.seq_len, rows, batch, mesh)
  step, restored, _ = checkpoint.restore(mngr, {'state': state, 'carry': carry})
  return cfg, graphdef, restored['state'], step, meta


def check_eval_data(data_dir: str, test: data_format.Metadata, train: data_format.Metadata):
  """DatasetError unless a checkpoint trained on `train` data can evaluate `test` data:
  the same vocabulary and sequence length, and no puzzle id beyond its table."""
  if (test.vocab_size, test.seq_len) != (train.vocab_size, train.seq_len):
    raise data_format.DatasetError(
      f'{data_dir}: vocab_size/seq_len {test.vocab_size}/{test.seq_len} differ from the '
      f"checkpoint's training data {train.vocab_size}/{train.seq_len}"
    )
  if test.num_puzzle_identifiers > train.num_puzzle_identifiers:
    raise data_format.DatasetError(
      f"{data_dir}: {test.num_puzzle_identifiers} puzzle identifiers, but the checkpoint's "
      f'puzzle-embedding table has {train.num_puzzle_identifiers} rows'
    )


def eval_mode_dir(workdir: str) -> str:
  """Where `--mode=eval` writes: `<workdir>/evals`, apart from the training run's records (a
  resumed run rewrites those, and another dataset's figures are not the run's)."""
  return os.path.join(workdir, 'evals')


def evaluate_checkpoint(
  cfg: ml_collections.ConfigDict, workdir: str, eval_data: Optional[str] = None
) -> dict[str, float]:
  """Evaluates the latest checkpoint in `workdir` on the test split of `eval_data`.

  `eval_data` is any dataset folder in the reference format (default: the config's data).
  Its vocabulary and sequence length must match the data the checkpoint was trained on.
  Prints the `eval step=...` line; the record (marked with the dataset and M_max) goes to
  `<workdir>/evals/metrics.jsonl` and the evaluator's files to
  `<workdir>/evals/step_<N>-<dataset>-M<M_max>/`. A read-only workdir is evaluated all the
  same, with a warning that nothing was written.
  """
  mesh = sharding.Mesh(shard_puzzle_emb=cfg.mesh.shard_puzzle_emb)
  cfg, graphdef, state, step, meta = load_trained(cfg, workdir, mesh)
  data_dir = data_build.localize(eval_data) if eval_data else tasks.prepare_data(cfg, workdir)
  test_split = tasks.load_split(data_dir, 'test')
  check_eval_data(data_dir, test_split.metadata, meta)
  evaluator = tasks.get(cfg.data.name).evaluator(cfg, data_dir)
  eval_fn = make_eval_fn(cfg, graphdef, mesh)
  metrics = run_eval(cfg, eval_fn, state, test_split, mesh, evaluator)
  out = eval_mode_dir(workdir)
  M_max = cfg.eval.halt_max_steps
  name = os.path.basename(os.path.normpath(data_dir))
  print_eval_line(step, metrics, evaluator)
  try:
    writer = metric_log.Writer(out, tensorboard=False)
    files_dir = os.path.join(out, f'step_{step}-{name}-M{M_max}')
    extra = dict(mode='eval', data=workdir_lib.absolute(eval_data or data_dir))
    write_eval(writer, files_dir, step, metrics, M_max, evaluator, extra=extra)
    writer.close()
  except OSError as e:  # a read-only workdir (a shared or archived run): the line above stands
    print(f'warning: results not written to {out} ({e})', file=sys.stderr, flush=True)
  return metrics
