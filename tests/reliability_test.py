"""Preemption, exact resume, damaged checkpoints, divergence and refusals of the wrong run."""

import os
import re
import shutil
import signal
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrm_jax import checkpoint, evaluate, metric_log, train
from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from tests import helpers


def test_preempted_run_resumes_bit_identically(one_device_main_run, tmp_path):
  workdir = str(tmp_path / 'w')
  r = helpers.run_main(
    *helpers.TINY_MAIN_FLAGS, f'--workdir={workdir}', '--simulate_preemption_at=3'
  )
  assert 'preempted: checkpoint at step 3 saved' in r.stdout, r.stdout
  assert 'train step=4' not in r.stdout
  r = helpers.run_main(*helpers.TINY_MAIN_FLAGS, f'--workdir={workdir}')
  assert 'resumed from step 3' in r.stdout, r.stdout
  # Same records (the open log interval 3..4 was checkpointed too), same bits.
  helpers.assert_same_run(one_device_main_run, workdir, rtol=0.0, atol=0.0)


def _copy(workdir, tmp_path):
  dst = str(tmp_path / 'copy')
  shutil.copytree(workdir, dst)
  return dst


def _damage(workdir: str, step: int) -> None:
  """Truncates the array chunks of the checkpoint at `step`."""
  data = os.path.join(workdir, 'checkpoints', str(step), 'train')
  for d, _, files in os.walk(data):
    for f in files:
      if '/d' in d and not f.endswith('.json'):  # the array chunks
        with open(os.path.join(d, f), 'r+b') as fh:
          fh.truncate(16)


def test_damaged_latest_checkpoint_falls_back_to_the_previous(tiny_run, tmp_path, capsys):
  cfg, workdir, _ = tiny_run
  workdir = _copy(workdir, tmp_path)
  _damage(workdir, 40)
  _, _, state, step, _ = evaluate.load_trained(cfg, workdir)
  assert step == 20 and int(state.step) == 20
  assert f'checkpoint {workdir}/checkpoints/40 is damaged' in capsys.readouterr().err


def test_a_checkpoint_without_its_array_metadata_is_damaged_not_another_model(
  tiny_run, tmp_path, capsys
):
  # Issue 18: with `train/_METADATA` gone, every array was listed as "missing from checkpoint",
  # as if the checkpoint were another model's, and no fallback happened.
  cfg, workdir, _ = tiny_run
  workdir = _copy(workdir, tmp_path)
  os.remove(os.path.join(workdir, 'checkpoints', '40', 'train', '_METADATA'))
  _, _, state, step, _ = evaluate.load_trained(cfg, workdir)
  assert step == 20 and int(state.step) == 20
  err = capsys.readouterr().err
  assert 'checkpoints/40 is damaged' in err and 'no array metadata' in err, err


def test_a_preemption_during_the_restore_is_not_taken_for_damage(tiny_run, tmp_path, monkeypatch):
  # Issue 18 (found by the drill's `sigterm_compiling`): a SIGTERM landing inside orbax's
  # restore was caught as a damaged checkpoint, which training then moved aside.
  import orbax.checkpoint as ocp

  cfg, workdir, _ = tiny_run
  workdir = _copy(workdir, tmp_path)
  mngr = checkpoint.manager(workdir, 3)
  monkeypatch.setattr(checkpoint, 'check_compatible', lambda *a: None)
  for raised in (checkpoint.Preempted('SIGTERM'), RuntimeError('wrapped')):

    def restore(*args, raised=raised, **kwargs):
      if isinstance(raised, checkpoint.Preempted):
        raise raised
      raise raised from checkpoint.Preempted('SIGTERM')  # as a library might wrap it

    monkeypatch.setattr(ocp.CheckpointManager, 'restore', restore)
    with pytest.raises(checkpoint.Preempted):
      checkpoint.restore(mngr, {}, set_aside_damaged=True)
  assert mngr.all_steps() == [20, 40]
  assert not os.path.exists(os.path.join(workdir, 'checkpoints_damaged'))


def test_a_failed_checkpoint_write_is_one_error_and_leaves_no_partial_save(tiny_run, tmp_path):
  # Issue 18: a full disk printed 452 lines and left `<step>.orbax-checkpoint-tmp`. Orbax raises
  # a background write failure at the next save or wait, as whatever its writer raised.
  cfg, workdir, _ = tiny_run
  workdir = _copy(workdir, tmp_path)
  mngr = checkpoint.manager(workdir, 3)
  partial = os.path.join(workdir, 'checkpoints', '44.orbax-checkpoint-tmp-1733')
  os.makedirs(os.path.join(partial, 'train'))
  full = 'RESOURCE_EXHAUSTED: Error writing "carry.z_L/0.0.0" ...: No space left on device'
  with pytest.raises(checkpoint.CheckpointWriteError) as e:
    with checkpoint.write_errors(mngr):
      raise ValueError(full)
  message = str(e.value)
  assert message.startswith('checkpoint at step 44 could not be written (ValueError: RESOURCE_')
  assert (
    'No space left on device' in message and 'the last checkpoint, step 40, is intact' in message
  )
  assert not os.path.exists(partial) and mngr.all_steps() == [20, 40]
  assert isinstance(e.value, OSError)  # cli.USER_ERRORS: one `error:` line, exit 2


def test_checkpoint_of_another_model_is_refused_with_the_differences(tiny_run):
  cfg, workdir, _ = tiny_run
  other = cfg.copy_and_resolve_references()
  other.model.hidden_size = 48
  with pytest.raises(checkpoint.CheckpointMismatch) as e:
    evaluate.load_trained(other, workdir)
  message = str(e.value)
  assert 'does not fit the model of this config' in message
  assert re.search(r'shape state/params/\S+: checkpoint \(\d+, 32\), model \(\d+, 48\)', message)


def test_workdir_of_another_config_is_not_overwritten(tiny_run):
  cfg, workdir, _ = tiny_run
  before = open(os.path.join(workdir, 'metrics.jsonl')).read()
  other = cfg.copy_and_resolve_references()
  other.seed, other.opt.lr = 1, 1e-2
  with pytest.raises(config_lib.ConfigError) as e:
    train.train_and_evaluate(other, workdir)
  assert 'holds a run of another config' in str(e.value)
  assert 'opt.lr: 0.003 -> 0.01' in str(e.value) and 'seed: 0 -> 1' in str(e.value)
  assert open(os.path.join(workdir, 'metrics.jsonl')).read() == before


def test_divergence_stops_with_the_step_and_saves_nothing_after_it(tmp_path):
  cfg = helpers.tiny_config()
  # Adam-atan2 moves every weight by ~lr per step: at 1e30 the activations overflow at once.
  cfg.opt.update(lr=1e30, lr_warmup_steps=0)
  cfg.train.update(steps=6, eval_every=6)
  workdir = str(tmp_path / 'w')
  with pytest.raises(metric_log.Divergence) as e:
    train.train_and_evaluate(cfg, workdir)
  assert 'non-finite loss or gradient at step' in str(e.value)
  assert e.value.step <= 6
  assert checkpoint.manager(workdir, read_only=True).all_steps() == []


class _Writer:
  def __init__(self):
    self.records = []

  def write(self, record):
    self.records.append(record)


def _step_metrics(nonfinite=0.0):
  return dict(
    count=2.0, accuracy=1.0, exact_accuracy=0.0, q_halt_accuracy=1.0, steps=2.0,
    blank_correct=1.0, blank_count=2.0, lm_loss=4.0, q_halt_loss=1.0, q_continue_loss=1.0,
    lr=0.1, grad_norm=3.0, nonfinite=nonfinite,
  )  # fmt: skip


def test_train_log_names_the_first_nonfinite_step():
  log = metric_log.TrainLog(_Writer(), 2, 10, ('lm_loss',), skip_nonfinite=False)
  with pytest.raises(metric_log.Divergence) as e:
    for step in (1, 2, 3):
      log.add(step, _step_metrics(nonfinite=float(step == 2)))
    log.flush()
  assert e.value.step == 2


def test_train_log_interval_survives_a_checkpoint():
  writer_a, writer_b = _Writer(), _Writer()
  a = metric_log.TrainLog(writer_a, 2, 4, ('lm_loss',), skip_nonfinite=False)
  for step in range(1, 5):
    a.add(step, _step_metrics())
  a.flush()
  b1 = metric_log.TrainLog(_Writer(), 2, 4, ('lm_loss',), skip_nonfinite=False)
  for step in (1, 2):
    b1.add(step, _step_metrics())
  b1.flush()
  b = metric_log.TrainLog(writer_b, 2, 4, ('lm_loss',), skip_nonfinite=False)
  b.restore(b1.state())
  for step in (3, 4):
    b.add(step, _step_metrics())
  b.flush()
  drop = lambda r: {k: v for k, v in r.items() if k != 'steps_per_s'}  # noqa: E731
  assert [drop(r) for r in writer_b.records] == [drop(r) for r in writer_a.records]
  assert writer_a.records[0]['lm_loss'] == 4.0 * 4 / (2 * 4) and writer_a.records[0]['step'] == 4


def test_skip_nonfinite_drops_the_step():
  cfg = config_lib.resolve(helpers.tiny_config(), 1.0)
  cfg.train.skip_nonfinite = True
  graphdef, state = ts.init_state(cfg, 11, 81, 4)
  carry = ts.init_carry(graphdef, state, 4, 81)
  # A NaN weight makes the loss and the gradient NaN.
  params = jax.tree.map(lambda x: x, state.params)
  params['lm_head']['kernel'] = params['lm_head']['kernel'].at[0, 0].set(jnp.nan)
  state = state.replace(params=params)
  batch = dict(
    inputs=jnp.ones((4, 81), jnp.int32),
    labels=jnp.full((4, 81), 2, jnp.int32),
    puzzle_identifiers=jnp.zeros((4,), jnp.int32),
  )
  new_state, new_carry, metrics = ts.jit_train_step(graphdef, cfg)(state, carry, batch)
  assert float(metrics['nonfinite']) == 1.0 and float(metrics['lm_loss']) == 0.0
  assert int(new_state.step) == 1
  # Adam-atan2's count is the weights' lr clock: it advances with the step (the table's clock),
  # or every later step would use the lr of the step before.
  assert int(new_state.opt_state.count) == 1
  unchanged = new_state.replace(step=state.step, opt_state=new_state.opt_state._replace(count=0))
  chex.assert_trees_all_equal(unchanged, state)
  np.testing.assert_array_equal(new_carry.steps, 0)  # a taken step would have made them 1


def test_fault_injection_drill_loses_nothing(tmp_path):
  # One SIGKILL, then every fault of issue 18 in turn on the same run (see the tool's doc): a
  # second process (one `error:` line, exit 2), SIGTERM while training (checkpoint at the next
  # step, exit 0), while restoring and while compiling, a damaged latest checkpoint and a full
  # disk; the run still ends bit-identical to an uninterrupted one.
  from hrm_jax.tools import fault_injection

  r = subprocess.run(
    [
      *helpers.main_command()[:2],
      'hrm_jax.tools.fault_injection',
      '--kills=1',
      '--steps=60',
      f'--workdir={tmp_path}',
    ],
    cwd=helpers.ROOT,
    env=helpers.main_env(),
    capture_output=True,
    text=True,
    timeout=400,
  )
  out = dict(line.split(': ', 1) for line in r.stdout.splitlines() if ': ' in line)
  assert r.returncode == 0, r.stdout + r.stderr
  assert out['kills'] == '1' and out['resumes'] == '1', out
  assert out['params_identical'] == 'true' and out['metrics_identical'] == 'true'
  assert out['steps_lost_beyond_checkpoint'] == '0'
  skipped = not fault_injection.mount_namespace_available()  # no tmpfs for the full disk
  n = len(fault_injection.FAULTS)
  assert out['faults'] == (f'{n - 1}/{n} (1 skipped)' if skipped else f'{n}/{n}'), out
  for name in fault_injection.FAULTS:
    want = 'skipped' if skipped and name == 'full_disk' else 'ok'
    assert out[f'fault_{name}'].startswith(want), out


def _with_test_split(tiny_run, tmp_path, change: str) -> str:
  """A copy of the tiny run's dataset whose test split is changed: 'seq_len' (one cell fewer),
  'vocab' (one more token) or 'empty' (no examples)."""
  import dataclasses

  from hrm_jax import tasks
  from hrm_jax.data import format as data_format

  cfg, workdir, _ = tiny_run
  src = tasks.prepare_data(cfg, workdir)
  dst = str(tmp_path / 'data')
  shutil.copytree(src, dst)
  test = data_format.load_split(src, 'test', mmap=True)
  arrays = dict(
    inputs=np.asarray(test.inputs),
    labels=np.asarray(test.labels),
    puzzle_identifiers=test.puzzle_identifiers,
    puzzle_indices=test.puzzle_indices,
    group_indices=test.group_indices,
  )
  meta = test.metadata
  if change == 'seq_len':
    meta = dataclasses.replace(meta, seq_len=meta.seq_len - 1)
    arrays.update(inputs=arrays['inputs'][:, :-1], labels=arrays['labels'][:, :-1])
  elif change == 'vocab':
    meta = dataclasses.replace(meta, vocab_size=meta.vocab_size + 1)
  else:
    L = meta.seq_len
    arrays = dict(
      inputs=np.zeros((0, L), np.uint8),
      labels=np.zeros((0, L), np.uint8),
      puzzle_identifiers=np.zeros(0, np.int32),
      puzzle_indices=np.zeros(1, np.int32),
      group_indices=np.zeros(1, np.int32),
    )
    meta = dataclasses.replace(meta, total_groups=0, total_puzzles=0)
  shutil.rmtree(os.path.join(dst, 'test'))
  data_format.write_split(dst, 'test', meta, **arrays)
  return dst


@pytest.mark.parametrize(
  'change, message',
  [('seq_len', 'vocab_size/seq_len'), ('vocab', 'vocab_size/seq_len'), ('empty', 'no examples')],
)
def test_training_checks_the_test_split_before_anything_compiles(
  tiny_run, tmp_path, change, message
):
  # Issue 18: a test split of another shape crashed after training, or evaluated out-of-range ids.
  from hrm_jax.data.format import DatasetError

  cfg = tiny_run[0].copy_and_resolve_references()
  cfg.data.path = _with_test_split(tiny_run, tmp_path, change)
  workdir = tmp_path / 'w'
  with pytest.raises(DatasetError, match=message):
    train.train_and_evaluate(cfg, str(workdir))
  assert not (workdir / 'checkpoints').exists()


def test_a_failing_evaluation_keeps_the_training_before_it(tmp_path, monkeypatch):
  # Issue 18: the checkpoint of an evaluation step is written before the evaluation runs.
  cfg = helpers.tiny_config()
  cfg.train.update(steps=4, eval_every=2)

  def broken(*args, **kwargs):
    raise RuntimeError('evaluation failed')

  monkeypatch.setattr(evaluate, 'run_eval', broken)
  with pytest.raises(RuntimeError, match='evaluation failed'):
    train.train_and_evaluate(cfg, str(tmp_path))
  assert checkpoint.manager(str(tmp_path), 3).all_steps() == [2]


def test_a_refused_run_writes_no_run_files(tiny_run, tmp_path):
  # Issue 18: with config.json gone, a run of another model was refused by the checkpoint but
  # left its config.json behind, so the original command was refused next.
  cfg, workdir, _ = tiny_run
  workdir = _copy(workdir, tmp_path)
  for name in ('config.json', 'train_metadata.json'):
    os.remove(os.path.join(workdir, name))
  other = cfg.copy_and_resolve_references()
  other.model.hidden_size = 48
  with pytest.raises(checkpoint.CheckpointMismatch):
    train.train_and_evaluate(other, workdir)
  assert not os.path.exists(os.path.join(workdir, 'config.json'))
  assert not os.path.exists(os.path.join(workdir, 'train_metadata.json'))


def test_sigterm_before_training_starts_stops_cleanly(tmp_path, monkeypatch, capsys):
  # Issue 18: a SIGTERM during the data build or compilation used to kill the run with exit
  # 143 and no message. Now it stops at once (nothing new to save), says so, and returns.
  from hrm_jax import tasks

  prepare = tasks.prepare_data

  def prepare_then_signal(cfg, workdir):
    out = prepare(cfg, workdir)
    os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread's handler
    return out

  monkeypatch.setattr(tasks, 'prepare_data', prepare_then_signal)
  previous = signal.getsignal(signal.SIGTERM)
  assert train.train_and_evaluate(helpers.tiny_config(), str(tmp_path)) == {}
  assert 'received SIGTERM before training started' in capsys.readouterr().out
  assert checkpoint.manager(str(tmp_path), 3).all_steps() == []
  assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_a_damaged_latest_checkpoint_is_set_aside_and_saved_again(tiny_run, tmp_path, capsys):
  # Issue 18: the damaged step folder stayed, orbax then declined every save up to it, and each
  # rerun redid the same steps. Now it is moved (not deleted) and the step is saved again.
  cfg, workdir, _ = tiny_run
  workdir = _copy(workdir, tmp_path)
  _damage(workdir, 40)
  train.train_and_evaluate(cfg, workdir)
  err = capsys.readouterr().err
  moved = os.path.join(workdir, 'checkpoints_damaged', '40')
  assert f'checkpoint {workdir}/checkpoints/40 is damaged' in err and f'moved to {moved}' in err
  # The message names the array and the file, without TensorStore's spec dump.
  named = r'Error \w+ "(state|carry)\.[\w.]+/[.\w]+" in OCDBT database at local file'
  assert re.search(named, err), err
  assert 'TensorStore' not in err and "'driver'" not in err
  assert os.path.isdir(moved) and 'NOT saved' not in err
  assert checkpoint.manager(workdir, read_only=True).all_steps() == [20, 40]
  _, _, state, step, _ = evaluate.load_trained(cfg, workdir)
  assert step == 40 and int(state.step) == 40


def test_one_run_per_workdir(tmp_path):
  # Issue 18: two runs on one workdir both started, doubled metrics.jsonl and crashed on the
  # checkpoint collision. The second now stops at once naming the first; a lock left by a
  # killed process does not block the next run.
  import json
  import socket

  from hrm_jax import workdir as workdir_lib

  workdir = str(tmp_path / 'w')
  lock = workdir_lib.acquire_lock(workdir)
  with pytest.raises(workdir_lib.WorkdirInUse, match=rf'in use by another run \(pid {os.getpid()}'):
    train.train_and_evaluate(helpers.tiny_config(), workdir)
  assert os.listdir(workdir) == ['run.lock']  # the refused run wrote nothing
  workdir_lib.release_lock(lock)
  assert not os.path.exists(workdir)  # nothing else was written: the folder goes too
  # A stale lock: its process is gone.
  dead = subprocess.run(
    [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True
  ).stdout.strip()
  os.makedirs(workdir)
  with open(workdir_lib.lock_path(workdir), 'w') as f:
    json.dump(dict(pid=int(dead), host=socket.gethostname(), since='then'), f)
  lock = workdir_lib.acquire_lock(workdir)
  with open(workdir_lib.lock_path(workdir)) as f:
    assert json.load(f)['pid'] == os.getpid()
  workdir_lib.release_lock(lock)
  assert os.path.isdir(workdir) and not os.listdir(workdir)  # an existing folder is kept


def test_a_read_only_workdir_is_evaluated_and_training_refused_in_one_line(
  one_device_main_run, tmp_path
):
  # Issue 18: `--mode=eval` could not evaluate a read-only checkpoint, and training on it ended
  # in a traceback. Here the workdir is bound read-only in a private mount namespace (chmod
  # would not stop root).
  import shlex

  workdir = _copy(one_device_main_run, tmp_path)
  before = sorted(os.listdir(workdir))
  w = shlex.quote(workdir)
  main = shlex.join(helpers.main_command(*helpers.TINY_MAIN_FLAGS, f'--workdir={workdir}'))
  r = helpers.run_in_mount_namespace(
    f"""
    mount --bind {w} {w} && mount -o remount,bind,ro {w} || exit 99
    {main} --mode=eval; echo "rc_eval=$?"
    echo "---" >&2
    {main}; echo "rc_train=$?"
    """
  )
  assert r.returncode == 0, r.stdout + r.stderr
  eval_err, train_err = r.stderr.split('---\n')
  assert 'rc_eval=0' in r.stdout and 'eval step=' in r.stdout, r.stdout + r.stderr
  assert eval_err.strip().startswith('warning: results not written to'), eval_err
  assert 'Read-only file system' in eval_err and 'Traceback' not in eval_err
  assert 'rc_train=2' in r.stdout and 'Traceback' not in train_err, train_err
  assert train_err.strip() == (
    f'error: [Errno 30] {workdir} is not writable (Read-only file system): training writes '
    'its checkpoints and metrics there (--mode=eval can evaluate a read-only workdir)'
  )
  assert sorted(os.listdir(workdir)) == before  # nothing was written


def test_a_signal_while_training_is_announced_by_the_loop_not_the_handler(capsys):
  # The handler runs between any two bytecodes of the main thread, also inside a print to
  # stdout: printing from it can raise "reentrant call" on the stream. It only records the
  # signal; the loop's `requested` says so once, naming the step it checkpoints.
  with checkpoint.Preemption() as preemption:
    preemption.start_training()
    assert not preemption.requested(3)
    os.kill(os.getpid(), signal.SIGTERM)
    assert capsys.readouterr().out == ''
    assert preemption.requested(4) and preemption.requested(5)
  assert capsys.readouterr().out == 'received SIGTERM: checkpointing at step 4\n'


def test_a_signal_inside_an_asyncio_callback_still_stops_the_run():
  # Found by the drill under load: orbax restores through an asyncio loop on the main thread.
  # A SIGTERM that landed in one of its callbacks raised `Preempted` there, asyncio logged and
  # swallowed it ("Exception in callback gather.<locals>._done_callback"), and the restore
  # never finished: the run hung. asyncio lets only KeyboardInterrupt and SystemExit through.
  import asyncio

  async def restore_like():
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.05)

  with checkpoint.Preemption():
    with pytest.raises(checkpoint.Preempted, match='SIGTERM'):
      asyncio.run(restore_like())


def test_a_signal_dropped_by_python_stops_the_run_when_training_starts(monkeypatch):
  # The same drill found a SIGTERM landing in JAX's gc callback, where Python drops exceptions
  # (printing "Exception ignored in" and a traceback): the run went on to compile and train.
  class Finalized:
    def __del__(self):
      os.kill(os.getpid(), signal.SIGTERM)

  dropped = []
  hook = dropped.append  # what Python would print
  monkeypatch.setattr(sys, 'unraisablehook', hook)
  with checkpoint.Preemption() as preemption:
    Finalized()  # its __del__ runs here, and the handler's exception is dropped
    with pytest.raises(checkpoint.Preempted, match='SIGTERM'):
      preemption.start_training()
  assert sys.unraisablehook is hook
  assert dropped == []  # not printed
