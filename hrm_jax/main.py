r"""Entry point: `python -m hrm_jax.main --config=experiments/sudoku.py[:preset] --workdir=DIR`.

Every config field can be overridden, e.g. `--config.train.global_batch_size=32`;
`--steps=N` sets the number of training steps; `--mode=eval` evaluates the latest checkpoint
in --workdir (on `--eval_data=DIR`'s test split when given).
"""

import jax
from absl import flags, logging
from ml_collections import config_flags

from hrm_jax import cli as cli_lib
from hrm_jax import evaluate, sharding, train

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
  flags.mark_flags_as_required(['config', 'workdir'])


def main(argv) -> None:
  del argv
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
    train.train_and_evaluate(cfg, FLAGS.workdir, FLAGS.simulate_preemption_at)
  else:
    evaluate.evaluate_checkpoint(cfg, FLAGS.workdir, FLAGS.eval_data)


def cli() -> None:
  cli_lib.run(main, define_flags)


if __name__ == '__main__':
  cli()
