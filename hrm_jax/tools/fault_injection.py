r"""Fault injection: SIGKILL a training run at random moments, resume it, compare with a clean run.

  python -m hrm_jax.tools.fault_injection --kills=10 [--seed=S] [--workdir=DIR] [--faults=...]

Trains the `tiny` Sudoku preset (seconds per run on a CPU) twice in subprocesses of
`python -m hrm_jax.main`: once uninterrupted, and once killed with SIGKILL `--kills` times —
at random moments in the first third of the steps left (at the clean run's pace, and by the
logged steps where this run is faster), every other kill aimed at a checkpoint write in
progress (the moment orbax's temporary directory exists) — and rerun with the same command
after each kill. Then the same run meets the `--faults`, in this order:

  second_process    a second run started on the workdir while the first trains (held with
                    SIGSTOP meanwhile): it must stop at once, exit 2, naming the first
  sigterm_training  SIGTERM while training: checkpoint at the next step, exit 0
  sigterm_starting  SIGTERM right after the run printed its `devices=` line (restoring its
                    checkpoint): exit 0 with its message, the checkpoints untouched
  sigterm_compiling SIGTERM right after its `resumed from step N` line (compiling its first
                    step): exit 0, with a checkpoint at step N + 1 (or, when it lands before the
                    loop starts, as sigterm_starting)
  damaged_latest    the latest checkpoint's array files truncated: the rerun sets it aside
                    (`checkpoints_damaged/`) and resumes from the one before
  full_disk         the run moved onto a tmpfs too small for its next checkpoint (in a private
                    mount namespace, `unshare -rm`; skipped where that is not allowed): exit 2
                    with one `error:` line and no partial checkpoint left; the tmpfs is then
                    enlarged and the run resumes there and finishes

Prints

  kills: <int>                          kills delivered
  resumes: <int>                        reruns that resumed from a checkpoint
  kills_during_checkpoint_write: <int>  kills that found orbax's temporary directory present
  faults: <int>/<int>                   faults injected and handled as described / asked for
  fault_<name>: ok|FAILED: why|skipped: why
  params_identical: true|false          final params, EMA, puzzle table and carry bit-identical
  metrics_identical: true|false         metrics.jsonl train/eval records equal (timings aside)
  steps_lost_beyond_checkpoint: <int>   sum over kills and faults of (last usable committed
                                        step - resumed step); a damaged checkpoint is unusable

and exits 1 when anything differs, a fault was not handled, or a step was lost.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
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
  flags.DEFINE_list('faults', list(FAULTS), f'Faults after the kills, a subset of {FAULTS}.')


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMING_KEYS = ('steps_per_s',)
FAULTS = (
  'second_process',
  'sigterm_training',
  'sigterm_starting',
  'sigterm_compiling',
  'damaged_latest',
  'full_disk',
)


def run_overrides(steps: int) -> list[str]:
  """The drill's run: the `tiny` preset for `steps` steps, a checkpoint every 4, eval every 50."""
  return [
    f'--config.train.steps={steps}',
    '--config.train.eval_every=50',
    '--config.train.log_every=5',
    '--config.ckpt.every_steps=4',
  ]


def _env() -> dict:
  return dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'))


def command(workdir: str, steps: int) -> list[str]:
  """argv of the drill's training run on `workdir`."""
  return [
    sys.executable,
    '-m',
    'hrm_jax.main',
    '--config=experiments/sudoku.py:tiny',
    *run_overrides(steps),
    f'--workdir={workdir}',
  ]


def _start(workdir: str, steps: int, log_path: str) -> subprocess.Popen:
  return subprocess.Popen(
    command(workdir, steps),
    cwd=ROOT,
    env=_env(),
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


def _output(log_path: str, offset: int) -> str:
  with open(log_path) as f:
    f.seek(offset)
    return f.read()


def _tail(log_path: str, lines: int = 30) -> str:
  return '\n'.join(_output(log_path, 0).splitlines()[-lines:])


def _logged(log_path: str, offset: int) -> int:
  """The last step the run logged (`train step=N`) after `offset` of its log; 0 if none."""
  steps = re.findall(r'^train step=(\d+)', _output(log_path, offset), re.M)
  return int(steps[-1]) if steps else 0


def _wait_for(proc: subprocess.Popen, log_path: str, offset: int, text: str, deadline: float):
  """Waits until the run prints `text` after `offset` of its log; False if it ended first."""
  while time.time() < deadline:
    if text in _output(log_path, offset):
      return True
    if proc.poll() is not None:
      return text in _output(log_path, offset)
    time.sleep(0.02)
  raise TimeoutError(f'the run did not print {text!r} in time')


def _wait_for_training(proc: subprocess.Popen, log_path: str, offset: int, deadline: float):
  """Waits until the run prints its first `train` line (compiled, stepping); False if it ended."""
  return _wait_for(proc, log_path, offset, 'train step=', deadline)


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


def _signal(proc: subprocess.Popen, *signals: int) -> None:
  for sig in signals:
    os.killpg(proc.pid, sig)


def _resumed(out: str) -> int:
  m = re.search(r'resumed from step (\d+)', out)
  return int(m.group(1)) if m else 0


def _damage(workdir: str, step: int) -> None:
  """Truncates every array file of the checkpoint at `step` to 16 bytes."""
  for d, _, files in os.walk(os.path.join(workdir, 'checkpoints', str(step), 'train')):
    if os.path.basename(d) == 'd':  # ocdbt's data files
      for f in files:
        os.truncate(os.path.join(d, f), 16)


def _damaged(workdir: str) -> list[str]:
  """The checkpoints set aside as damaged."""
  d = os.path.join(workdir, 'checkpoints_damaged')
  return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _du_kib(path: str) -> int:
  total = 0
  for d, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
  return total // 1024 + 1


def mount_namespace_available() -> bool:
  """Whether `unshare -rm` may make a private mount namespace here (a tmpfs without root)."""
  try:
    return subprocess.run(['unshare', '-rm', 'true'], capture_output=True).returncode == 0
  except OSError:
    return False


def _full_disk(faulty: str, root: str, steps: int, deadline: float) -> tuple[str, int]:
  """The `full_disk` fault (see the module doc) on a copy of `faulty`, which the finished run
  then replaces. Returns (result, steps lost)."""
  if not mount_namespace_available():
    return 'skipped: no private mount namespace (unshare -rm) on this machine', 0
  done = committed_steps(faulty)
  if done[-1] >= steps:
    return f'FAILED: the run had finished (step {done[-1]}); give the drill more --steps', 0
  ckpt = _du_kib(os.path.join(faulty, 'checkpoints', str(done[-1])))
  # Room for half of the next checkpoint. A kill's partial save is removed as the run starts:
  # counted in, its room let the next checkpoint fit (CI, with a kill during a write).
  d = os.path.join(faulty, 'checkpoints')
  partial = sum(_du_kib(os.path.join(d, n)) for n in os.listdir(d) if not n.isdigit())
  small = _du_kib(faulty) - partial + ckpt // 2
  mnt, result = os.path.join(root, 'full_disk_mnt'), os.path.join(root, 'full_disk_result')
  shutil.rmtree(result, ignore_errors=True)
  os.makedirs(mnt, exist_ok=True)
  q = shlex.quote
  w, logs = f'{mnt}/w', [os.path.join(root, f'full_disk_{i}.log') for i in (1, 2)]
  script = f"""
    mount -t tmpfs -o size={small}k tmpfs {q(mnt)} && cp -a {q(faulty)} {q(w)} || exit 99
    {shlex.join(command(w, steps))} > {q(logs[0])} 2>&1; echo "rc1=$?"
    echo "after1=$(ls -a {q(w)}/checkpoints | tr '\\n' ' ')"
    mount -o remount,size={small + 20 * ckpt}k {q(mnt)} || exit 98
    {shlex.join(command(w, steps))} > {q(logs[1])} 2>&1; echo "rc2=$?"
    cp -a {q(w)} {q(result)}
  """
  r = subprocess.run(
    ['unshare', '-rm', 'bash', '-c', script],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=max(1, deadline - time.time()),
  )
  got = dict(line.split('=', 1) for line in r.stdout.splitlines() if '=' in line)
  if r.returncode or 'rc1' not in got or 'rc2' not in got:
    return f'FAILED: the namespace script stopped (rc {r.returncode}): {r.stderr.strip()}', 0
  out1, out2 = (_output(p, 0) for p in logs)
  after = [n for n in got['after1'].split() if n not in ('.', '..')]
  committed = sorted(int(n) for n in after if n.isdigit())
  lines = out1.strip().splitlines()
  problems = []
  if got['rc1'] != '2' or 'Traceback' in out1 or not lines[-1].startswith('error: checkpoint'):
    last = lines[-1] if lines else ''
    problems.append(
      f'the full disk did not stop the run with one error line: exit {got["rc1"]}, last line '
      f'{last[:200]!r} (see {logs[0]})'
    )
  if any(not n.isdigit() for n in after):
    problems.append(f'left in checkpoints/: {after}')
  if got['rc2'] != '0' or not os.path.isdir(result):
    problems.append(f'the run did not finish after the disk grew (see {logs[1]})')
  lost = max(0, committed[-1] - _resumed(out2)) if committed else 0
  if problems:
    return 'FAILED: ' + '; '.join(problems), lost
  shutil.rmtree(faulty)
  shutil.move(result, faulty)
  return 'ok', lost


def main(argv):
  del argv
  unknown = set(FLAGS.faults) - set(FAULTS)
  if unknown:
    raise ValueError(f'--faults: unknown {sorted(unknown)}; choose from {FAULTS}')
  rng = random.Random(FLAGS.seed)
  root = FLAGS.workdir or tempfile.mkdtemp(prefix='fault_injection-')
  os.makedirs(root, exist_ok=True)
  clean, faulty = os.path.join(root, 'clean'), os.path.join(root, 'faulty')
  for d in (clean, faulty):
    shutil.rmtree(d, ignore_errors=True)
  for f in ('clean.log', 'faulty.log', 'second.log'):
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
    sys.exit(f'the clean run failed; see {log}:\n{_tail(log)}')
  train_s = time.time() - t_train

  kills, resumes, lost, during_save = 0, 0, 0, 0
  log = os.path.join(root, 'faulty.log')
  last_committed = None
  while True:
    offset = os.path.getsize(log) if os.path.exists(log) else 0
    proc = _start(faulty, steps, log)
    started = _wait_for_training(proc, log, offset, deadline)
    if last_committed is not None:
      resumed = _resumed(_output(log, offset))
      resumes += bool(resumed)
      lost += max(0, last_committed - resumed)
    if kills == FLAGS.kills or not started:
      break
    if kills % 2:  # aim at a checkpoint write: kill while orbax's temporary dir exists
      while proc.poll() is None and not _saving(faulty) and time.time() < deadline:
        time.sleep(0.002)
    else:  # somewhere in the first third of the steps still to do, so later kills find work
      remaining = train_s * (steps - (last_committed or 0)) / steps
      until = time.time() + rng.uniform(0.02, 0.33) * remaining
      # The clean run's pace need not be this one's (a machine loaded differently during the
      # two, as under CI's parallel tests): the third is also counted in logged steps, so the
      # faults after the kills find steps left.
      third = (last_committed or 0) + (steps - (last_committed or 0)) // 3
      while time.time() < until and proc.poll() is None and _logged(log, offset) < third:
        time.sleep(0.005)
    if proc.poll() is not None:
      break  # finished before the kill landed: nothing left to interrupt
    during_save += _saving(faulty)
    _kill(proc)
    kills += 1
    done = committed_steps(faulty)
    last_committed = done[-1] if done else 0

  # The faults, on the run that is now training (each held with SIGSTOP while it is set up).
  results: dict[str, str] = {}
  wanted = [f for f in FAULTS if f in FLAGS.faults]

  def alive(name: str) -> bool:
    if proc.poll() is None:
      return True
    results[name] = 'FAILED: the run had finished; give the drill more --steps'
    return False

  def rerun(expect: str) -> tuple[subprocess.Popen, str, int]:
    offset = os.path.getsize(log)
    p = _start(faulty, steps, log)
    _wait_for(p, log, offset, expect, deadline)
    return p, _output(log, offset), offset

  if 'second_process' in wanted and alive('second_process'):
    _signal(proc, signal.SIGSTOP)
    second_log = os.path.join(root, 'second.log')
    second = _start(faulty, steps, second_log)
    rc = second.wait(timeout=max(1, deadline - time.time()))
    out = _output(second_log, 0)
    ok = rc == 2 and 'in use by another run' in out and 'Traceback' not in out
    results['second_process'] = 'ok' if ok else f'FAILED: exit {rc}, see {second_log}'
    _signal(proc, signal.SIGCONT)
  # The faults below start from a stopped run: SIGTERM stops it cleanly (a fault itself).
  stop_first = set(FAULTS) - {'second_process'}
  if stop_first & set(wanted) and alive('sigterm_training'):  # the fault's name if it fails
    offset = os.path.getsize(log)
    _signal(proc, signal.SIGSTOP, signal.SIGTERM, signal.SIGCONT)
    rc = proc.wait(timeout=max(1, deadline - time.time()))
    saved = re.search(r'preempted: checkpoint at step (\d+) saved', _output(log, offset))
    if 'sigterm_training' in wanted:
      results['sigterm_training'] = 'ok' if rc == 0 and saved else f'FAILED: exit {rc}, see {log}'
  stopped = proc.poll() is not None  # the faults below start from a stopped run

  def sigterm_after(text: str) -> tuple[int, str, list[int]]:
    """Starts the run, SIGTERMs it as soon as it prints `text`; (exit code, output, the
    committed steps before it started)."""
    before = committed_steps(faulty)
    offset = os.path.getsize(log)
    p = _start(faulty, steps, log)
    _wait_for(p, log, offset, text, deadline)
    _signal(p, signal.SIGSTOP, signal.SIGTERM, signal.SIGCONT)
    return p.wait(timeout=max(1, deadline - time.time())), _output(log, offset), before

  if 'sigterm_starting' in wanted and stopped:
    rc, out, before = sigterm_after('devices=')  # restoring from here
    ok = rc == 0 and 'before training started' in out
    ok = ok and committed_steps(faulty) == before and not _damaged(faulty)
    results['sigterm_starting'] = 'ok' if ok else f'FAILED: exit {rc}, see {log}'
  if 'sigterm_compiling' in wanted and stopped:
    rc, out, before = sigterm_after('resumed from step')  # compiling from here
    saved = f'preempted: checkpoint at step {_resumed(out) + 1} saved' in out
    ok = rc == 0 and (saved or 'before training started' in out) and not _damaged(faulty)
    results['sigterm_compiling'] = 'ok' if ok else f'FAILED: exit {rc}, see {log}'
    lost += max(0, before[-1] - _resumed(out))
  if 'damaged_latest' in wanted and stopped:
    done = committed_steps(faulty)
    _damage(faulty, done[-1])
    proc, out, _ = rerun('train step=')
    moved = os.path.join(faulty, 'checkpoints_damaged', str(done[-1]))
    ok = 'is damaged' in out and f'moved to {moved}' in out and os.path.isdir(moved)
    ok = ok and _resumed(out) == done[-2]
    results['damaged_latest'] = 'ok' if ok else f'FAILED: see {log}'
    lost += max(0, done[-2] - _resumed(out))  # the step before the damaged one is the last usable
    if 'full_disk' in wanted and alive('full_disk'):
      _signal(proc, signal.SIGSTOP, signal.SIGTERM, signal.SIGCONT)
      if proc.wait(timeout=max(1, deadline - time.time())) != 0:
        results['full_disk'] = f'FAILED: SIGTERM before it: exit {proc.returncode}, see {log}'
  if 'full_disk' in wanted and stopped and proc.poll() is not None and 'full_disk' not in results:
    results['full_disk'], fault_lost = _full_disk(faulty, root, steps, deadline)
    lost += fault_lost
  final = None  # the rest of the run, when the faults left it stopped
  if proc.poll() is not None and not results.get('full_disk', '').startswith('ok'):
    final = os.path.getsize(log), committed_steps(faulty)
    proc = _start(faulty, steps, log)
  rc = proc.wait(timeout=max(1, deadline - time.time()))
  if rc != 0:  # its last lines name the cause where the log is out of reach (CI)
    sys.exit(f'the faulty run failed (exit {rc}) after {kills} kills; see {log}:\n{_tail(log)}')
  if final is not None and final[1]:
    lost += max(0, final[1][-1] - _resumed(_output(log, final[0])))

  step_a, leaves_a = final_state(clean)
  step_b, leaves_b = final_state(faulty)
  params_identical = step_a == step_b and all(
    a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b)
  )
  metrics_identical = records(clean) == records(faulty)
  handled = sum(r == 'ok' for r in results.values())
  skipped = sum(r.startswith('skipped') for r in results.values())
  print(f'kills: {kills}')
  print(f'resumes: {resumes}')
  print(f'kills_during_checkpoint_write: {during_save}')
  print(f'faults: {handled}/{len(wanted)}' + (f' ({skipped} skipped)' if skipped else ''))
  for name in wanted:
    print(f'fault_{name}: {results.get(name, "FAILED: not reached")}')
  print(f'params_identical: {str(params_identical).lower()}')
  print(f'metrics_identical: {str(metrics_identical).lower()}')
  print(f'steps_lost_beyond_checkpoint: {lost}')
  print(f'workdir: {root}')
  ok = params_identical and metrics_identical and lost == 0 and kills == FLAGS.kills
  ok = ok and handled + skipped == len(wanted)
  sys.exit(0 if ok else 1)


def cli() -> None:
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags)


if __name__ == '__main__':
  cli()
