r"""Entry point: `python -m hrm_jax.main --config=experiments/sudoku.py[:preset] --workdir=DIR`.

Every config field can be overridden, e.g. `--config.train.global_batch_size=32`;
`--steps=N` sets the number of training steps; `--mode=eval` evaluates the latest checkpoint
in --workdir (on `--eval_data=DIR`'s test split when given); `--profile_steps=A:B` writes a
JAX profiler trace of training steps A..B to <workdir>/profile.
"""

from typing import Optional

import jax
from absl import flags, logging
from ml_collections import config_flags

from hrm_jax import cli as cli_lib
from hrm_jax import evaluate, sharding, train
from hrm_jax.config import ConfigError

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  config_flags.DEFINE_config_file('config', None, 'Config file[:preset].', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and data.')
  flags.DEFINE_enum('mode', 'train', ['train', 'eval'], 'Train (and evaluate) or eval.')
  flags.DEFINE_integer('steps', None, 'Total training steps (sets config.train.steps).')
  flags.DEFINE_string('eval_data', None, '--mode=eval: dataset folder whose test split to use.')
  flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() (multi-host).')
  # Left unset on TPU VMs and SLURM/MPI clusters, where JAX finds the cluster by itself.
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0.')
  flags.DEFINE_integer('num_processes', None, 'Processes in the cluster.')
  flags.DEFINE_integer('process_id', None, 'This process, in [0, num_processes).')
  flags.DEFINE_integer(
    'simulate_preemption_at', None, 'Drill: act on a preemption notice at this step.'
  )
  flags.DEFINE_string(
    'profile_steps', None, 'A:B: a JAX profiler trace of steps A..B in <workdir>/profile.'
  )
  flags.mark_flags_as_required(['config', 'workdir'])


def parse_profile_steps(text: Optional[str]) -> Optional[tuple[int, int]]:
  """(A, B) of `--profile_steps=A:B` (None when not given); ConfigError unless 1 <= A <= B."""
  if text is None:
    return None
  try:
    a, b = (int(x) for x in text.split(':'))
  except ValueError:
    raise ConfigError(f'--profile_steps: want A:B with 1 <= A <= B, got {text!r}') from None
  train.Profile.check((a, b))
  return a, b


def main(argv) -> None:
  del argv
  profile_steps = parse_profile_steps(FLAGS.profile_steps)  # bad input fails before anything
  if FLAGS.distributed:
    sharding.initialize_distributed(
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
  cfg = FLAGS.config
  if FLAGS.steps is not None:
    cfg.train.steps = FLAGS.steps
  logging.info(
    'process %d/%d, devices: %s', jax.process_index(), jax.process_count(), jax.devices()
  )
  if FLAGS.mode == 'train':
    train.train_and_evaluate(cfg, FLAGS.workdir, FLAGS.simulate_preemption_at, profile_steps)
  else:
    evaluate.evaluate_checkpoint(cfg, FLAGS.workdir, FLAGS.eval_data)


def cli() -> None:
  cli_lib.run(main, define_flags)


if __name__ == '__main__':
  cli()
