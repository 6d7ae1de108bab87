"""Orbax checkpoints of the full training state: TrainState and the ACT carry.

The carry is training state (sequences in the middle of deep supervision live there), so it is
saved and restored with the parameters. Orbax writes each step to a temporary directory and
renames it on commit, so an interrupted save never replaces the previous checkpoint.

With EMA on (TRM), a checkpoint holds both the raw weights (to resume training exactly) and
their average `ema_params`, which `--mode=eval` and every evaluation use. The reference saves
only the EMA copy as its model file (spec §4.5), so it cannot resume the raw weights.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import orbax.checkpoint as ocp


def manager(workdir: str, max_to_keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager over `<workdir>/checkpoints` keeping the last `max_to_keep` steps."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=None if read_only else max_to_keep, create=not read_only, read_only=read_only
  )
  return ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options
  )


def save(mngr: ocp.CheckpointManager, step: int, tree: Any) -> None:
  """Saves `tree` (e.g. {'state': TrainState, 'carry': Carry}) at `step`, asynchronously."""
  mngr.save(step, args=ocp.args.StandardSave(tree))


def restore(
  mngr: ocp.CheckpointManager, target: Any, step: Optional[int] = None
) -> tuple[int, Any]:
  """Restores the latest (or given) step into the structure, dtypes and shardings of `target`.

  Returns (step, tree). Raises FileNotFoundError when the workdir holds no checkpoint.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint under {mngr.directory}')
  return step, mngr.restore(step, args=ocp.args.StandardRestore(target))
