"""`python -m hrm_jax.tools.data_parity`: the command's flags and entry point; run as a command,
its usage text (what absl's --help prints: the docstring of `__main__`) is the package's."""

from __future__ import annotations

import os
import sys

from hrm_jax.tools import data_parity


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  from absl import flags

  flags.DEFINE_string('repo', None, 'Checkout of the reference repo (HRM or TRM).')
  flags.DEFINE_enum('task', None, list(data_parity.TASKS), 'What to compare.')
  flags.DEFINE_integer('num_aug', 4, 'Augmented variants per puzzle (sudoku, arc).')
  flags.DEFINE_integer('seed', 0, 'Seed of the written inputs and of our builders.')
  flags.DEFINE_string('workdir', None, 'Folder for the inputs and built datasets (kept).')
  flags.DEFINE_bool(
    'arc_dedup_probe',
    True,
    'arc: add a task whose variants a dedup by grid set (instead of by (input, output) pair, as '
    'the references) would merge, with num_aug 200 so that its group size shows the rule '
    '(docs/pytorch.md).',
  )
  flags.mark_flags_as_required(['repo', 'task'])


def main(argv):
  """CLI: prints the report; exit 1 on mismatches, 2 on bad input."""
  del argv
  from absl import flags

  f = flags.FLAGS
  report = data_parity.run_task(f.task, f.repo, f.workdir, f.seed, f.num_aug, f.arc_dedup_probe)
  print(f'task: {f.task}  reference: {os.path.abspath(f.repo)}')
  print(report.render())
  if report.mismatches:
    sys.exit(1)


def cli():
  """The `python -m hrm_jax.tools.data_parity` entry point (see the package docstring)."""
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags, errors=(data_parity.ParityError,))


if __name__ == '__main__':
  __doc__ = data_parity.__doc__
  cli()
