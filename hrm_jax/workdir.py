"""The run files of a workdir: `config.json` (the run's resolved config) and
`train_metadata.json` (its training data's sizes).

Reruns compare their config with the saved one; `--mode=eval`, the analysis commands and the
converter rebuild the model from these files without the training data.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import jax
import ml_collections

from hrm_jax import config as config_lib
from hrm_jax.data import format as data_format


def config_path(workdir: str) -> str:
  return os.path.join(workdir, 'config.json')


def metadata_path(workdir: str) -> str:
  return os.path.join(workdir, 'train_metadata.json')


def saved_config(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config a run saved in `<workdir>/config.json` (resolved), or None when there is none."""
  path = config_path(workdir)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def saved_metadata(workdir: str) -> Optional[data_format.Metadata]:
  """The training data's Metadata a run saved in `<workdir>/train_metadata.json`, or None."""
  path = metadata_path(workdir)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return data_format.Metadata.from_json(f.read(), source=path)


def write_run_files(
  workdir: str, cfg: ml_collections.ConfigDict, meta: data_format.Metadata
) -> None:
  """Writes `<workdir>/config.json` and `train_metadata.json`, on process 0."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(config_path(workdir), 'w') as f:
    f.write(cfg.to_json_best_effort(indent=2))
  with open(metadata_path(workdir), 'w') as f:
    f.write(meta.to_json())


def check_config(cfg: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses (ConfigError) a workdir that holds a run of another config; a rerun may change
  only `config.RESUMABLE_FIELDS` (length, evaluation, logging...)."""
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


class WorkdirInUse(RuntimeError):
  """Another live run holds the workdir's lock."""


def lock_path(workdir: str) -> str:
  return os.path.join(workdir, 'run.lock')


def _holder(path: str) -> Optional[dict]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None  # gone meanwhile, or half-written by a killed process: not a live holder


def _alive(holder: dict) -> bool:
  """Whether the lock's process still runs. Only a process on this host can be checked; one on
  another host counts as alive (remove the lock file by hand if that run is gone)."""
  import socket

  if holder.get('host') != socket.gethostname():
    return True
  try:
    os.kill(int(holder['pid']), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, KeyError, ValueError, TypeError):
    return True
  return True


def acquire_lock(workdir: str) -> Optional[tuple[str, bool]]:
  """Makes this run the only one on `workdir` (process 0 holds the lock for all hosts).

  Creates `<workdir>/run.lock` atomically with this process's pid, host and start time; a lock
  whose process is gone (same host, pid not running) is taken over. Raises WorkdirInUse naming
  the other run. Returns (lock path, whether the workdir was created) for `release_lock`, or
  None on other processes.
  """
  import socket
  import time

  if jax.process_index() != 0:
    return None
  created = not os.path.exists(workdir)
  path = lock_path(workdir)
  me = dict(pid=os.getpid(), host=socket.gethostname(), since=time.strftime('%Y-%m-%d %H:%M:%S'))
  for _ in range(2):
    try:
      os.makedirs(workdir, exist_ok=True)
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = _holder(path)
      if holder is not None and _alive(holder):
        raise WorkdirInUse(
          f'{workdir} is in use by another run (pid {holder.get("pid")} on '
          f'{holder.get("host")} since {holder.get("since")}); one run per workdir. If that '
          f'run is gone, remove {path}'
        ) from None
      os.remove(path)  # stale: its process was killed
      continue
    except OSError as e:  # read-only, no permission, full: before anything else is done
      raise OSError(
        e.errno,
        f'{workdir} is not writable ({e.strerror}): training writes its checkpoints and '
        'metrics there (--mode=eval can evaluate a read-only workdir)',
      ) from None
    with os.fdopen(fd, 'w') as f:
      json.dump(me, f)
    return path, created
  raise WorkdirInUse(f'{path}: could not take the lock (another run is starting?)')


def release_lock(lock: Optional[tuple[str, bool]]) -> None:
  """Removes the lock `acquire_lock` returned, and the workdir it created if nothing else was
  written there (a refused run leaves no trace); a no-op for None."""
  if lock is None:
    return
  path, created = lock
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
  if created:
    try:
      os.rmdir(os.path.dirname(path))
    except OSError:
      pass  # the run wrote files: keep them
