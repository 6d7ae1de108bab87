r"""Entry point: `python -m hrm_jax.main --config=experiments/sudoku.py[:preset] --workdir=DIR`.

Every config field can be overridden, e.g. `--config.train.global_batch_size=32`;
`--steps=N` sets the number of training steps; `--mode=eval` evaluates the latest checkpoint
in --workdir (on `--eval_data=DIR`'s test split when given).
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from hrm_jax import checkpoint, metric_log, sharding, train
from hrm_jax import config as config_lib
from hrm_jax.data.format import DatasetError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file[:preset].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and data.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'Train (and evaluate) or eval.')
_STEPS = flags.DEFINE_integer('steps', None, 'Total training steps (sets config.train.steps).')
_EVAL_DATA = flags.DEFINE_string(
  'eval_data', None, '--mode=eval: dataset folder whose test split to evaluate.'
)
_DISTRIBUTED = flags.DEFINE_bool(
  'distributed', False, 'Call jax.distributed.initialize() (multi-host TPU/GPU).'
)
# Left unset on TPU VMs and SLURM/MPI clusters, where JAX finds the cluster by itself.
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the cluster.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, in [0, num_processes).')
_SIMULATE_PREEMPTION_AT = flags.DEFINE_integer(
  'simulate_preemption_at', None, 'Drill: act on a preemption notice at this step.'
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save step at INFO
  if _DISTRIBUTED.value:
    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  cfg = _CONFIG.value
  if _STEPS.value is not None:
    cfg.train.steps = _STEPS.value
  logging.info(
    'process %d/%d, devices: %s', jax.process_index(), jax.process_count(), jax.devices()
  )
  try:
    if _MODE.value == 'train':
      train.train_and_evaluate(cfg, _WORKDIR.value, _SIMULATE_PREEMPTION_AT.value)
    else:
      train.evaluate_checkpoint(cfg, _WORKDIR.value, _EVAL_DATA.value)
  except (
    config_lib.ConfigError,
    DatasetError,
    FileNotFoundError,
    checkpoint.CheckpointMismatch,
    metric_log.Divergence,
  ) as e:
    # Bad input from the user: one message naming the field, file or line; no traceback.
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv):
  """absl's parsing, with bad --config values reported as one `error:` line, exit code 2."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, flags.Error) as e:
    while isinstance(e, (AttributeError, KeyError)) and e.args and isinstance(e.args[0], Exception):
      e = e.args[0]  # ConfigDict wraps the KeyError that names the unknown field
    text = str(e.args[0]) if isinstance(e, (AttributeError, KeyError)) and e.args else str(e)
    if 'Traceback' in text:  # an exception in the config file: its flag and last line
      lines = [line for line in text.splitlines() if line.strip()]
      text = f'{lines[0].split(": Error whilst")[0]}: {lines[-1].strip()}'
    kind = 'unknown field ' if isinstance(e, (AttributeError, KeyError)) else ''
    print(f'error: invalid config: {kind}{" ".join(text.split())}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
