"""Entry points: every documented command answers --help, importing them defines no flags, and
flag errors become one `error:` line read from the exception chain (hrm_jax.cli)."""

import glob
import importlib
import json
import os
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
  'hrm_jax.bench': 'suite',
  'hrm_jax.convert_torch': 'checkpoint',
  'hrm_jax.tools.bench': 'memory_sweep',
  'hrm_jax.tools.convert_torch': 'checkpoint',
  'hrm_jax.tools.torch_parity': 'train_steps',
  'hrm_jax.tools.data_parity': 'arc_dedup_probe',
  'hrm_jax.tools.torch_bench': 'threads',
  'hrm_jax.tools.fault_injection': 'kills',
  'hrm_jax.tools.ablate': 'minutes',
  'hrm_jax.tools.gemm_peak': 'shapes',
  'hrm_jax.tools.side_by_side': 'hrm_repo',
  'hrm_jax.data.tfds': 'manual_dir',
}


def test_the_docs_name_no_command_outside_this_list():
  docs = [helpers.ROOT + '/README.md', *glob.glob(helpers.ROOT + '/docs/*.md')]
  named = set()
  for path in docs:
    with open(path) as f:
      named |= set(re.findall(r'python -m ((?:hrm_jax)(?:\.\w+)*)', f.read()))
  assert named and named <= set(COMMANDS), sorted(named - set(COMMANDS))


# Runs `python -m NAME --helpfull` for every NAME in argv, each in a process forked from one
# that has imported them all: a fresh interpreter per command would spend most of the test
# importing JAX 16 times. Each child runs the module as __main__ (runpy, as `python -m` does)
# with its own stdout; prints {name: [exit code, output]} as JSON.
_HELP_ALL = """
import contextlib, importlib, io, json, os, runpy, sys
for name in sys.argv[1:]:
  importlib.import_module(name)
result = {}
for name in sys.argv[1:]:
  r, w = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(r)
    code, out = 0, io.StringIO()
    sys.argv = [name, '--helpfull']
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
      try:
        runpy.run_module(name, run_name='__main__', alter_sys=True)
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
      except BaseException:
        import traceback
        traceback.print_exc()
        code = 99
    with os.fdopen(w, 'w') as f:  # writes it all (--helpfull runs to tens of KB)
      f.write(json.dumps([code, out.getvalue()]))
    os._exit(0)
  os.close(w)
  with os.fdopen(r) as f:
    result[name] = json.loads(f.read())
  os.waitpid(pid, 0)
print(json.dumps(result))
"""


def test_every_documented_command_answers_help():
  r = subprocess.run(
    [sys.executable, '-c', _HELP_ALL, *COMMANDS],
    cwd=helpers.ROOT,
    env=helpers.main_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  result = json.loads(r.stdout.splitlines()[-1])
  assert set(result) == set(COMMANDS)
  for name, (code, out) in result.items():
    # absl's help flags print the usage and exit 1.
    assert code == 1 and 'Traceback' not in out, (name, out[-3000:])
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


def test_library_noise_is_dropped_and_everything_else_kept(monkeypatch):
  # Issue 18/19: a damaged checkpoint printed dozens of "Event loop is closed" tracebacks and
  # orbax's coroutines "Exception ignored in"; a full disk, orbax's background-thread logs.
  import logging
  import types

  seen = []
  monkeypatch.setattr(sys, 'unraisablehook', seen.append)
  cli.quiet_library_noise()

  # An orbax coroutine finalized with its error (what `object` holds for those).
  coroutine = types.SimpleNamespace(cr_code=types.SimpleNamespace(co_filename='/s/orbax/y.py'))
  noise = [
    (RuntimeError('Event loop is closed'), None),
    (ImportError('sys.meta_path is None, Python is likely shutting down'), None),
    (Exception('Encountered error while reading array index'), coroutine),
  ]
  kept = (RuntimeError('something else'), object())
  for exc, obj in [*noise, kept]:
    sys.unraisablehook(types.SimpleNamespace(exc_value=exc, object=obj))
  assert [u.exc_value for u in seen] == [kept[0]]

  def record(name, path, level, msg):
    return logging.LogRecord(name, level, path, 1, msg, None, None)

  orbax = cli._DropOrbax()
  assert not orbax.filter(record('absl', '/s/orbax/checkpoint/future.py', logging.ERROR, 'x'))
  assert orbax.filter(record('absl', '/s/orbax/checkpoint/future.py', logging.CRITICAL, 'x'))
  assert orbax.filter(record('absl', '/s/hrm_jax/train.py', logging.ERROR, 'x'))
  unretrieved = cli._DropUnretrieved()
  never = 'Task exception was never retrieved'
  assert not unretrieved.filter(record('asyncio', 'a.py', logging.ERROR, never))
  assert unretrieved.filter(record('asyncio', 'a.py', logging.ERROR, 'other'))
  # The filters are on the handlers they must be on.
  from absl import logging as absl_logging

  handler = absl_logging.get_absl_handler()
  assert any(isinstance(f, cli._DropOrbax) for f in handler.filters)
  assert any(isinstance(f, cli._DropUnretrieved) for f in logging.getLogger('asyncio').filters)
  for f in list(handler.filters):
    if isinstance(f, cli._DropOrbax):
      handler.removeFilter(f)
  for f in list(logging.getLogger('asyncio').filters):
    logging.getLogger('asyncio').removeFilter(f)


def test_the_persistent_compilation_cache_is_on_in_commands(monkeypatch, tmp_path):
  # Issue 19: a resumed or repeated run loads its compiled steps (README: time to first step).
  import jax

  before = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  monkeypatch.delenv('HRM_JAX_COMPILATION_CACHE', raising=False)
  default = cli.compilation_cache_dir()
  assert '/.cache/hrm_jax/jax_cache/' in default and len(os.path.basename(default)) == 12
  try:
    jax.config.update('jax_compilation_cache_dir', None)
    monkeypatch.setenv('HRM_JAX_COMPILATION_CACHE', str(tmp_path))
    cli.enable_compilation_cache()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path)
    jax.config.update('jax_compilation_cache_dir', '/somewhere/else')  # the user's own wins
    cli.enable_compilation_cache()
    assert jax.config.jax_compilation_cache_dir == '/somewhere/else'
    jax.config.update('jax_compilation_cache_dir', None)
    monkeypatch.setenv('HRM_JAX_COMPILATION_CACHE', '')  # off
    cli.enable_compilation_cache()
    assert jax.config.jax_compilation_cache_dir is None
  finally:
    jax.config.update('jax_compilation_cache_dir', before[0])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', before[1])
