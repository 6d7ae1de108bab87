"""Entry points: every documented command answers --help, importing them defines no flags, and
flag errors become one `error:` line read from the exception chain (hrm_jax.cli)."""

import importlib
import re
import subprocess
import sys

import pytest
from absl import flags

from hrm_jax import cli
from tests import helpers

# Every `python -m` command the README and docs name, with a flag its --help must list.
COMMANDS = {
  'hrm_jax.main': 'workdir',
  'hrm_jax.analyze': 'scaling_m',
  'hrm_jax.analysis': 'scaling_m',
  'hrm_jax.solve': 'from_test',
  'hrm_jax.bench': 'memory_sweep',
  'hrm_jax.convert_torch': 'checkpoint',
  'hrm_jax.tools.bench': 'memory_sweep',
  'hrm_jax.tools.convert_torch': 'checkpoint',
  'hrm_jax.tools.torch_parity': 'train_steps',
  'hrm_jax.tools.data_parity': 'arc_dedup_probe',
  'hrm_jax.tools.torch_bench': 'threads',
  'hrm_jax.tools.fault_injection': 'kills',
  'hrm_jax.tools.ablate': 'minutes',
}


def test_every_documented_command_answers_help():
  # All at once: each subprocess spends its seconds importing JAX.
  procs = {
    name: subprocess.Popen(
      [sys.executable, '-m', name, '--helpfull'],
      cwd=helpers.ROOT,
      env=helpers.main_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for name in COMMANDS
  }
  for name, proc in procs.items():
    out, _ = proc.communicate(timeout=300)
    # absl's help flags print the usage and exit 1.
    assert proc.returncode == 1 and 'Traceback' not in out, (name, out[-3000:])
    assert re.search(rf'--(\[no\])?{COMMANDS[name]}:', out), (name, out[-3000:])


def test_importing_entry_points_defines_no_flags():
  before = set(flags.FLAGS)
  for name in COMMANDS:
    importlib.import_module(name)
  assert set(flags.FLAGS) == before


def _chained(*excs):
  """excs[0] with __context__ set to excs[1], which has excs[2] ..., outermost first."""
  for outer, inner in zip(excs, excs[1:]):
    outer.__context__ = inner
  return excs[0]


def test_flag_error_message_reads_the_chain():
  # An error inside a config file: absl's error wraps ml_collections' traceback-laden wrapper.
  root = ValueError("unknown preset 'nope' for experiments/sudoku.py")
  wrapped = _chained(
    flags.IllegalFlagValueError('flag --config=x.py:nope: Error whilst parsing\nTraceback ...'),
    ValueError('Error whilst parsing config file:\n\nTraceback (most recent call last): ...'),
    root,
  )
  assert cli.flag_error_message(wrapped) == f'ValueError: {root}'
  # An unknown --config.<field>: the ConfigDict KeyError with its hint, on one line.
  hint = KeyError('\'hiden_size\'\nDid you mean "hidden_size" instead of "hiden_size"?')
  unknown = _chained(AttributeError(hint), hint, KeyError('hiden_size'))
  assert cli.flag_error_message(unknown) == (
    'unknown field \'hiden_size\' Did you mean "hidden_size" instead of "hiden_size"?'
  )
  # absl's own message names the flag and the value.
  plain = _chained(flags.IllegalFlagValueError('flag --steps=x: invalid literal'), ValueError('x'))
  assert cli.flag_error_message(plain) == 'flag --steps=x: invalid literal'


def test_user_errors_exit_2_with_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    cli.error('data.path: no such folder')
  assert e.value.code == 2
  assert capsys.readouterr().err == 'error: data.path: no such folder\n'
