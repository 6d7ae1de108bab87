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
