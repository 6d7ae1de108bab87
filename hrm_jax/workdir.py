"""The run files of a workdir: `config.json` (the run's resolved config) and
`train_metadata.json` (its training data's sizes).

Reruns compare their config with the saved one; `--mode=eval`, the analysis commands and the
converter rebuild the model from these files without the training data.

A workdir is any path `etils.epath` reads and writes (what orbax uses): a local folder or a
bucket (`gs://bucket/run`, with gcsfs installed), so every file goes through `epath.Path`.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import jax
import ml_collections
from etils import epath

from hrm_jax import config as config_lib
from hrm_jax.data import format as data_format


def config_path(workdir: str) -> str:
  return os.path.join(workdir, 'config.json')


def metadata_path(workdir: str) -> str:
  return os.path.join(workdir, 'train_metadata.json')


def is_local(path: str) -> bool:
  """Whether `path` is on this machine's file system (not `gs://...` or another scheme)."""
  return '://' not in str(path) or str(path).startswith('file://')


def absolute(path: str) -> str:
  """`path` made absolute when local; a bucket path as it is (os.path.abspath would turn
  `gs://b/run` into `<cwd>/gs:/b/run`)."""
  return os.path.abspath(path) if is_local(path) else str(path)


def saved_config(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config a run saved in `<workdir>/config.json` (resolved), or None when there is none."""
  path = epath.Path(config_path(workdir))
  if not path.exists():
    return None
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def saved_metadata(workdir: str) -> Optional[data_format.Metadata]:
  """The training data's Metadata a run saved in `<workdir>/train_metadata.json`, or None."""
  path = epath.Path(metadata_path(workdir))
  if not path.exists():
    return None
  return data_format.Metadata.from_json(path.read_text(), source=str(path))


def write_run_files(
  workdir: str, cfg: ml_collections.ConfigDict, meta: data_format.Metadata
) -> None:
  """Writes `<workdir>/config.json` and `train_metadata.json`, on process 0."""
  if jax.process_index() != 0:
    return
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  epath.Path(config_path(workdir)).write_text(cfg.to_json_best_effort(indent=2))
  epath.Path(metadata_path(workdir)).write_text(meta.to_json())


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
    return json.loads(epath.Path(path).read_text())
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


def _create_exclusive(path: str, text: str) -> None:
  """Writes `text` to a new file at `path`; FileExistsError if it exists.

  Local: O_EXCL, atomic. A bucket: a create-only write where the file system has one (gcsfs:
  `ifGenerationMatch=0`, atomic on GCS), then read back, so that of two runs racing on a
  store without it, the one whose text was overwritten sees it and stops.
  """
  if is_local(path):
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    return
  import fsspec

  if epath.Path(path).exists():
    raise FileExistsError(path)
  fs, fs_path = fsspec.core.url_to_fs(path)
  try:
    fs.pipe_file(fs_path, text.encode(), mode='create')
  except TypeError:  # a file system without create-only writes
    fs.pipe_file(fs_path, text.encode())
  except Exception as e:  # GCS answers 412 (precondition failed) when it exists
    if epath.Path(path).exists():
      raise FileExistsError(path) from e
    raise
  if epath.Path(path).read_text() != text:
    raise FileExistsError(path)


def acquire_lock(workdir: str) -> Optional[tuple[str, bool]]:
  """Makes this run the only one on `workdir` (process 0 holds the lock for all hosts).

  Creates `<workdir>/run.lock` (atomically on a local disk and on GCS, see _create_exclusive)
  with this process's pid, host and start time; a lock whose process is gone (same host, pid
  not running) is taken over. Raises WorkdirInUse naming the other run. Returns (lock path,
  whether the workdir was created) for `release_lock`, or None on other processes.
  """
  import socket
  import time

  if jax.process_index() != 0:
    return None
  created = not epath.Path(workdir).exists()
  path = lock_path(workdir)
  me = dict(pid=os.getpid(), host=socket.gethostname(), since=time.strftime('%Y-%m-%d %H:%M:%S'))
  for _ in range(2):
    try:
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)
      _create_exclusive(path, json.dumps(me))
    except FileExistsError:
      holder = _holder(path)
      if holder is not None and _alive(holder):
        raise WorkdirInUse(
          f'{workdir} is in use by another run (pid {holder.get("pid")} on '
          f'{holder.get("host")} since {holder.get("since")}); one run per workdir. If that '
          f'run is gone, remove {path}'
        ) from None
      epath.Path(path).unlink(missing_ok=True)  # stale: its process was killed
      continue
    except OSError as e:  # read-only, no permission, full: before anything else is done
      raise OSError(
        e.errno,
        f'{workdir} is not writable ({e.strerror}): training writes its checkpoints and '
        'metrics there (--mode=eval can evaluate a read-only workdir)',
      ) from None
    return path, created
  raise WorkdirInUse(f'{path}: could not take the lock (another run is starting?)')


def release_lock(lock: Optional[tuple[str, bool]]) -> None:
  """Removes the lock `acquire_lock` returned, and the workdir it created if nothing else was
  written there (a refused run leaves no trace); a no-op for None."""
  if lock is None:
    return
  path, created = lock
  epath.Path(path).unlink(missing_ok=True)
  if created:
    try:
      parent = epath.Path(path).parent
      if not any(parent.iterdir()):
        parent.rmdir()
    except OSError:
      pass  # the run wrote files: keep them
