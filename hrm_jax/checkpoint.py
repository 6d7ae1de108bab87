"""Orbax checkpoints of the complete training state, checked restores, and preemption.

A checkpoint holds two items. `train`: the TrainState (parameters, Adam-atan2 state, EMA, the
puzzle-embedding table, the PRNG key and the step) and the ACT carry (sequences in the middle of
deep supervision are training state). `meta`: JSON, the open interval of the metric log. The data
order is a pure function of (seed, step), so the sampler needs no saved position.

Saves are asynchronous (the device-to-host copy happens in `save`, the writes in a background
thread) and atomic: orbax writes each step to a temporary directory and renames it on commit,
so a kill during a save leaves the previous checkpoint intact and is ignored on restore.

With EMA on (TRM), a checkpoint holds both the raw weights (to resume training exactly) and
their average `ema_params`, which `--mode=eval` and every evaluation use. The reference saves
only the EMA copy as its model file (spec §4.5), so it cannot resume the raw weights.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from hrm_jax import workdir as workdir_lib


class CheckpointMismatch(ValueError):
  """A checkpoint whose arrays do not fit the model the config builds."""


class CheckpointDamaged(ValueError):
  """A checkpoint whose files are missing, truncated or unreadable."""


class CheckpointWriteError(OSError):
  """A checkpoint that could not be written (a full disk, a lost permission); the checkpoints
  committed before it are intact."""


def exception_chain(e: BaseException) -> list[BaseException]:
  """`e` and the exceptions it was raised from or while handling, outermost first."""
  chain = [e]
  while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and nxt not in chain:
    chain.append(nxt)
  return chain


def _root_cause(e: BaseException) -> str:
  """The innermost error of `e`'s chain on one line, without TensorStore's spec dump: for a
  damaged or unwritable array it names the array and the file (`Error reading
  "state.params...kernel/0.0" in OCDBT database at local file "...": ...`)."""
  root = exception_chain(e)[-1]
  text = str(root).split(' [tensorstore_spec')[0].split(' See full TensorStore details')[0]
  text = ' '.join(text.split())
  return f'{type(root).__name__}: {text[:500]}'


def manager(
  workdir: str, max_to_keep: int = 3, read_only: bool = False, directory: str = ''
) -> ocp.CheckpointManager:
  """A CheckpointManager over `directory` (default `<workdir>/checkpoints`, config field
  `ckpt.dir`) keeping the last `max_to_keep` steps."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=None if read_only else max_to_keep,
    create=not read_only,
    read_only=read_only,
    save_interval_steps=0 if read_only else 1,  # what orbax sets (with a warning) when read-only
  )
  with _orbax_warnings_off(read_only):  # "Given directory is read only": asked for, not news
    return ocp.CheckpointManager(
      workdir_lib.absolute(directory or str(epath.Path(workdir) / 'checkpoints')),
      options=options,
      # Named handlers let a fresh (or read-only) manager read item metadata before any restore.
      item_handlers=dict(train=ocp.StandardCheckpointHandler(), meta=ocp.JsonCheckpointHandler()),
    )


@contextlib.contextmanager
def _orbax_warnings_off(off: bool = True):
  """absl WARNING logs off while the block runs (orbax logs through absl)."""
  from absl import logging

  before = logging.get_verbosity()
  if off and before < logging.DEBUG:
    logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(before)


def save(mngr: ocp.CheckpointManager, step: int, tree: Any, meta: Optional[dict] = None) -> bool:
  """Saves `tree` ({'state': TrainState, 'carry': Carry}) and JSON `meta` at `step`, async.

  Every process calls it (each writes its shards); process 0 commits. Returns whether a save
  was started; when orbax declines (it never saves a step at or below its latest one), says so
  on stderr rather than pretend.
  """
  with write_errors(mngr):  # also reports an earlier async save that failed in the background
    saved = mngr.save(
      step,
      args=ocp.args.Composite(
        train=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta or {})
      ),
    )
  if not saved:
    print(
      f'warning: checkpoint at step {step} NOT saved: {mngr.directory} already holds steps '
      f'{sorted(mngr.all_steps())}',
      file=sys.stderr,
      flush=True,
    )
  return bool(saved)


def _partial_saves(mngr: ocp.CheckpointManager) -> list[epath.Path]:
  """Orbax's temporary folders of saves that never committed (`<step>.orbax-checkpoint-tmp*`)."""
  return sorted(epath.Path(str(mngr.directory)).glob('*.orbax-checkpoint-tmp*'))


def remove_partial_saves(mngr: ocp.CheckpointManager) -> list[str]:
  """Removes the saves that never committed, on process 0; returns the folder names it removed.

  Call it only while holding the workdir lock (no other run saves there). A run killed while it
  saved leaves one, and orbax keeps it until that step is saved again: room a full disk lacks.
  Orbax's own `cleanup_tmp_directories` does this on a thread nothing waits for (it failed at
  interpreter exit with "cannot schedule new futures after shutdown")."""
  removed = []
  for p in _partial_saves(mngr) if jax.process_index() == 0 else []:
    try:
      p.rmtree()
      removed.append(p.name)
    except OSError:
      pass  # orbax ignores temporary folders on restore, and replaces them on save
  return removed


@contextlib.contextmanager
def write_errors(mngr: ocp.CheckpointManager):
  """Turns a failed checkpoint write (orbax raises it at the next save or wait, from its
  background thread, as ValueError, OSError or a TensorStore error) into CheckpointWriteError:
  the partial folders are removed (on process 0) and the message names the cause, the step
  and the last committed checkpoint, which is intact."""
  try:
    yield
  except CheckpointWriteError:
    raise
  except Exception as e:
    partial = [p.name for p in _partial_saves(mngr)]
    remove_partial_saves(mngr)
    steps = sorted(mngr.all_steps())
    failed = ', '.join(p.split('.')[0] for p in partial) or '?'
    raise CheckpointWriteError(
      f'checkpoint at step {failed} could not be written ({_root_cause(e)}); '
      + ('removed the partial save; ' if partial else '')
      + (f'the last checkpoint, step {steps[-1]}, is intact: ' if steps else 'no checkpoint yet: ')
      + 'fix the cause (free space, permissions) and rerun to resume'
    ) from e


def finish(mngr: ocp.CheckpointManager) -> None:
  """Waits for the save in flight to commit and closes `mngr`; a failed save raises
  CheckpointWriteError."""
  try:
    with write_errors(mngr):
      mngr.wait_until_finished()
  finally:
    try:
      mngr.close()
    except Exception:  # the failure of a save: raised by the wait above
      pass


def set_aside(mngr: ocp.CheckpointManager, step: int) -> str:
  """Moves the folder of `step` out of the manager's directory, to `<workdir>/checkpoints_damaged/
  <step>` (`<step>.1`, ... if taken), and returns where: nothing is deleted, and the step no
  longer blocks saves up to it. Works on any path orbax can write (local or a bucket)."""
  from etils import epath

  src = epath.Path(str(mngr.directory)) / str(step)
  dest_dir = epath.Path(str(mngr.directory)).parent / 'checkpoints_damaged'
  dest_dir.mkdir(parents=True, exist_ok=True)
  dest, n = dest_dir / str(step), 0
  while dest.exists():
    n += 1
    dest = dest_dir / f'{step}.{n}'
  src.rename(dest)
  return str(dest)


def _shapes(tree) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape) for path, leaf in flat
  }


def saved_shapes(mngr: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
  """{'state/params/...': shape} of every array saved at `step`, read from its metadata."""
  return _shapes(mngr.item_metadata(step)['train'])


def check_compatible(mngr: ocp.CheckpointManager, step: int, target: Any) -> None:
  """Raises CheckpointMismatch listing every array that is missing, extra or mis-shaped
  between the checkpoint at `step` and `target` (a checkpoint of another model config)."""
  saved = saved_shapes(mngr, step)
  if not saved:  # its metadata file (`train/_METADATA`) is gone: nothing says what it holds
    raise CheckpointDamaged(f'no array metadata in {mngr.directory}/{step}/train')
  wanted = _shapes(target)

  def order(keys):  # the weights first: optimizer moments and EMA repeat their differences
    return sorted(keys, key=lambda k: (not k.startswith('state/params/'), k))

  problems = [f'missing from checkpoint: {k} {wanted[k]}' for k in order(wanted.keys() - saved)]
  problems += [f'not in this model: {k} {saved[k]}' for k in order(saved.keys() - wanted)]
  problems += [
    f'shape {k}: checkpoint {saved[k]}, model {wanted[k]}'
    for k in order(saved.keys() & wanted.keys())
    if saved[k] != wanted[k]
  ]
  if problems:
    shown = problems[:20] + ([f'... and {len(problems) - 20} more'] if len(problems) > 20 else [])
    raise CheckpointMismatch(
      f'checkpoint {mngr.directory}/{step} does not fit the model of this config '
      f'({len(problems)} differences):\n  ' + '\n  '.join(shown)
    )


def restore(
  mngr: ocp.CheckpointManager,
  target: Any,
  step: Optional[int] = None,
  set_aside_damaged: bool = False,
) -> tuple[int, Any, dict]:
  """Restores the latest (or given) step into the structure, dtypes and shardings of `target`.

  Returns (step, tree, meta). A checkpoint that does not fit `target` raises CheckpointMismatch;
  a damaged one (files missing or truncated) is reported and, when no step was asked for, the
  previous one is tried; with `set_aside_damaged` (training) the damaged step is moved aside
  (`set_aside`), so that training can save that step again. Raises FileNotFoundError when the
  workdir holds no usable checkpoint.
  """
  steps = sorted(mngr.all_steps(), reverse=True) if step is None else [step]
  if not steps:
    raise FileNotFoundError(f'no checkpoint under {mngr.directory}')
  errors = []
  for s in steps:
    try:
      check_compatible(mngr, s, target)
      restored = mngr.restore(
        s,
        args=ocp.args.Composite(
          train=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
        ),
      )
      return s, restored['train'], dict(restored['meta'] or {})
    except CheckpointMismatch:
      raise
    except Exception as e:  # damaged: orbax raises many kinds (ValueError, OSError, tensorstore)
      if any(
        isinstance(x, Preempted) for x in exception_chain(e)
      ):  # a library wrapped it: not damage
        raise Preempted(str(e)) from e
      msg = f'checkpoint {mngr.directory}/{s} is damaged ({_root_cause(e)})'
      if step is None and set_aside_damaged:
        if jax.process_index() == 0:
          msg += f'; moved to {set_aside(mngr, s)}'
        multihost_utils.sync_global_devices(f'set aside checkpoint {s}')
        mngr.reload()
      print(f'warning: {msg}', file=sys.stderr, flush=True)
      errors.append(msg)
  raise FileNotFoundError('no usable checkpoint: ' + '; '.join(errors))


class Preempted(KeyboardInterrupt):
  """A preemption notice (SIGTERM/SIGINT) arrived before the training loop started.

  A KeyboardInterrupt, since it is raised the same way, by the signal handler wherever the main
  thread is (often inside orbax or JAX). Libraries let that one through: `except Exception`
  does not take it for a failure of their own (e.g. a restore interrupted by it for a damaged
  checkpoint), and asyncio, which orbax runs its restores on, re-raises it from its callbacks,
  where any other BaseException is logged and dropped, leaving the restore waiting forever."""


class Preemption:
  """Turns SIGTERM/SIGINT into a checkpoint at the next step boundary and a clean exit.

  Before `start_training()` (data build, restore, compilation) there is nothing new to save:
  the handler raises `Preempted` at once, which the caller reports and treats as a clean stop.
  Where Python drops that exception (a gc callback, a `__del__`), `start_training()` raises it.

  One process: a signal handler sets a flag that `requested(step)` reports. Several processes
  (TPU pods, GPU clusters): JAX's preemption service receives SIGTERM on any host and agrees
  on one step at which every host returns True, so all save the same step together. Use as a
  context manager around the training loop (the previous handlers are put back on exit).
  """

  def __init__(self, simulate_at: Optional[int] = None):
    self.signal: Optional[int] = None
    self.simulate_at = simulate_at  # a drill: as if a notice arrived at this step
    self.training = False  # from `start_training()` on, checkpoint at a step
    self._previous: dict = {}
    self._unraisablehook = None
    self._announced = False

  def start_training(self) -> None:
    """Called as the training loop starts: from here a notice checkpoints at the next step.

    Raises `Preempted` if a notice arrived before and its exception was dropped on the way."""
    if self.signal is not None and not self.training:
      raise Preempted(signal.Signals(self.signal).name)
    self.training = True

  def _unraisable(self, unraisable) -> None:
    # A Preempted raised inside a gc callback or a `__del__` cannot propagate; Python would
    # print its traceback. The flag it set stands, and `start_training` raises it again.
    if not isinstance(unraisable.exc_value, Preempted):
      self._unraisablehook(unraisable)

  def _handle(self, signum, frame):
    del frame
    if self.signal is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: stop now
    self.signal = signum
    if not self.training:
      raise Preempted(signal.Signals(signum).name)
    # No print here: a signal that lands while the loop itself writes to stdout would make the
    # handler's write a reentrant call on the same buffered stream (RuntimeError). `requested`
    # says it, from the loop.

  def __enter__(self) -> 'Preemption':
    if jax.process_count() == 1:
      for s in (signal.SIGTERM, signal.SIGINT):
        self._previous[s] = signal.signal(s, self._handle)
      self._unraisablehook, sys.unraisablehook = sys.unraisablehook, self._unraisable
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    if self._unraisablehook is not None:
      sys.unraisablehook = self._unraisablehook

  def requested(self, step: int) -> bool:
    """True when the run should checkpoint at `step` and stop (call it at every step)."""
    if step == self.simulate_at:
      return True
    if jax.process_count() > 1:
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # jax_enable_preemption_service off: no notices to act on
        return False
    if self.signal is None:
      return False
    if not self._announced:
      self._announced = True
      name = signal.Signals(self.signal).name
      print(f'received {name}: checkpointing at step {step}', flush=True)
    return True
