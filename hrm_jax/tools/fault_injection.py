r"""Fault injection: SIGKILL a training run at random moments, resume it, compare with a clean run.

  python -m hrm_jax.tools.fault_injection --kills=10 [--seed=S] [--workdir=DIR]

Trains the `tiny` Sudoku preset (seconds per run on a CPU) twice in subprocesses of
`python -m hrm_jax.main`: once uninterrupted, and once killed with SIGKILL `--kills` times —
at random moments, every other kill aimed at a checkpoint write in progress (the moment orbax's
temporary directory exists) — and rerun with the same command after each kill. Prints

  kills: <int>                          kills delivered
  resumes: <int>                        reruns that resumed from a checkpoint
  kills_during_checkpoint_write: <int>  kills that found orbax's temporary directory present
  params_identical: true|false          final params, EMA, puzzle table and carry bit-identical
  metrics_identical: true|false         metrics.jsonl train/eval records equal (timings aside)
  steps_lost_beyond_checkpoint: <int>   sum over kills of (last committed step - resumed step)

and exits 1 when anything differs or a step was lost.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  flags.DEFINE_integer('kills', 10, 'SIGKILLs to deliver.')
  flags.DEFINE_integer('seed', 0, 'Seed of the kill schedule.')
  flags.DEFINE_string('workdir', None, 'Where the two runs go (default: a temp dir).')
  flags.DEFINE_integer('steps', 400, 'Training steps of the tiny run.')
  flags.DEFINE_integer('timeout', 900, 'Seconds before the whole drill gives up.')


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMING_KEYS = ('steps_per_s',)


def run_overrides(steps: int) -> list[str]:
  """The drill's run: the `tiny` preset for `steps` steps, a checkpoint every 4, eval every 50."""
  return [
    f'--config.train.steps={steps}',
    '--config.train.eval_every=50',
    '--config.train.log_every=5',
    '--config.ckpt.every_steps=4',
  ]


def _start(workdir: str, steps: int, log_path: str) -> subprocess.Popen:
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'))
  return subprocess.Popen(
    [
      sys.executable,
      '-m',
      'hrm_jax.main',
      '--config=experiments/sudoku.py:tiny',
      *run_overrides(steps),
      f'--workdir={workdir}',
    ],
    cwd=ROOT,
    env=env,
    stdout=open(log_path, 'a'),
    stderr=subprocess.STDOUT,
    start_new_session=True,
  )


def committed_steps(workdir: str) -> list[int]:
  """Checkpoint steps whose save has committed (orbax renamed the temporary directory)."""
  d = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def _saving(workdir: str) -> bool:
  d = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(d) and any('tmp' in n for n in os.listdir(d))


def _wait_for_training(proc: subprocess.Popen, log_path: str, offset: int, deadline: float):
  """Waits until the run prints its first `train` line (compiled, stepping); False if it ended."""
  while time.time() < deadline:
    with open(log_path) as f:
      f.seek(offset)
      if 'train step=' in f.read():
        return True
    if proc.poll() is not None:
      return False
    time.sleep(0.02)
  raise TimeoutError('the run did not start training in time')


def _kill(proc: subprocess.Popen) -> None:
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()


def records(workdir: str) -> list[dict]:
  """metrics.jsonl records without timing fields."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def final_state(workdir: str):
  """(step, numpy leaves of the TrainState) of the latest checkpoint in `workdir`."""
  import jax

  from hrm_jax import evaluate
  from hrm_jax import workdir as workdir_lib

  _, _, state, step, _ = evaluate.load_trained(workdir_lib.saved_config(workdir), workdir)
  return step, jax.tree.leaves(jax.device_get(state))


def main(argv):
  del argv
  rng = random.Random(FLAGS.seed)
  root = FLAGS.workdir or tempfile.mkdtemp(prefix='fault_injection-')
  os.makedirs(root, exist_ok=True)
  clean, faulty = os.path.join(root, 'clean'), os.path.join(root, 'faulty')
  for d in (clean, faulty):
    shutil.rmtree(d, ignore_errors=True)
  for f in ('clean.log', 'faulty.log'):
    if os.path.exists(os.path.join(root, f)):
      os.remove(os.path.join(root, f))
  deadline = time.time() + FLAGS.timeout
  steps = FLAGS.steps

  # The uninterrupted run, also timing the stepping phase to place the kills.
  log = os.path.join(root, 'clean.log')
  proc = _start(clean, steps, log)
  _wait_for_training(proc, log, 0, deadline)
  t_train = time.time()
  if proc.wait(timeout=max(1, deadline - time.time())) != 0:
    sys.exit(f'the clean run failed; see {log}')
  train_s = time.time() - t_train

  kills, resumes, lost, during_save = 0, 0, 0, 0
  log = os.path.join(root, 'faulty.log')
  last_committed = None
  while True:
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    proc = _start(faulty, steps, log)
    started = _wait_for_training(proc, log, offset, deadline)
    with open(log) as f:
      f.seek(offset)
      out = f.read()
    m = re.search(r'resumed from step (\d+)', out)
    if last_committed is not None:
      resumed = int(m.group(1)) if m else 0
      resumes += bool(m)
      lost += max(0, last_committed - resumed)
    if kills == FLAGS.kills or not started:
      break
    if kills % 2:  # aim at a checkpoint write: kill while orbax's temporary dir exists
      while proc.poll() is None and not _saving(faulty) and time.time() < deadline:
        time.sleep(0.002)
    else:  # somewhere in the first third of the steps still to do, so later kills find work
      remaining = train_s * (steps - (last_committed or 0)) / steps
      time.sleep(rng.uniform(0.02, 0.33) * remaining)
    if proc.poll() is not None:
      break  # finished before the kill landed: nothing left to interrupt
    during_save += _saving(faulty)
    _kill(proc)
    kills += 1
    done = committed_steps(faulty)
    last_committed = done[-1] if done else 0
  if proc.wait(timeout=max(1, deadline - time.time())) != 0:
    sys.exit(f'the faulty run failed after {kills} kills; see {log}')

  step_a, leaves_a = final_state(clean)
  step_b, leaves_b = final_state(faulty)
  params_identical = step_a == step_b and all(
    a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b)
  )
  metrics_identical = records(clean) == records(faulty)
  print(f'kills: {kills}')
  print(f'resumes: {resumes}')
  print(f'kills_during_checkpoint_write: {during_save}')
  print(f'params_identical: {str(params_identical).lower()}')
  print(f'metrics_identical: {str(metrics_identical).lower()}')
  print(f'steps_lost_beyond_checkpoint: {lost}')
  print(f'workdir: {root}')
  ok = params_identical and metrics_identical and lost == 0 and kills == FLAGS.kills
  sys.exit(0 if ok else 1)


def cli() -> None:
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags)


if __name__ == '__main__':
  cli()
