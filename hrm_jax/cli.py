"""What every command-line entry point shares: flags defined only when run as a command, quiet
library logs, and bad input reported as one `error:` line with exit code 2, no traceback.

An entry point module defines its flags in a function and ends with

  def cli():
    cli_lib.run(main, define_flags)

  if __name__ == '__main__':
    cli()

so that importing it (from a notebook, a test or another entry point) defines no flags.
"""

from __future__ import annotations

import logging as py_logging
import os
import sys
from typing import Callable, NoReturn, Sequence

from absl import app, flags, logging

from hrm_jax import checkpoint, metric_log
from hrm_jax import workdir as workdir_lib
from hrm_jax.config import ConfigError
from hrm_jax.data.format import DatasetError

# Exceptions that mean bad input from the user (a config value, a file, a checkpoint), not a
# bug: reported as one line. OSError covers a missing or unreadable path.
USER_ERRORS: tuple[type[BaseException], ...] = (
  ConfigError,
  DatasetError,
  OSError,
  checkpoint.CheckpointMismatch,
  metric_log.Divergence,
  workdir_lib.WorkdirInUse,
)


def error(message: object) -> NoReturn:
  """Prints `error: <message>` to stderr and exits with code 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


def flag_error_message(e: BaseException) -> str:
  """The one-line message for an exception raised while parsing flags.

  Read from the exception chain, not from absl's text: an unknown `--config.<field>` is the
  KeyError of ConfigDict (it carries the "Did you mean" hint); an error raised inside a config
  file reaches absl wrapped twice (by ml_collections, which adds a traceback to the text, and
  by absl), so its root cause is reported; absl's own errors name the flag and the value.
  """
  chain = checkpoint.exception_chain(e)
  key = next((x for x in chain if isinstance(x, KeyError)), None)
  if isinstance(e, (AttributeError, KeyError)) and key is not None and key.args:
    return 'unknown field ' + ' '.join(str(key.args[0]).split())
  root = chain[-1]
  text = f'{type(root).__name__}: {root}' if len(chain) > 2 else str(e)
  return ' '.join(text.split())


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's flag parsing, with a bad flag or config reported as `error: invalid config: ...`."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    error(f'invalid config: {flag_error_message(e)}')


def _check_config_file() -> None:
  """One `error:` line for a `--config` file that does not exist (ml_collections reports it in
  several lines, the path repeated)."""
  if 'config' not in flags.FLAGS or not flags.FLAGS['config'].present:
    return
  path = str(getattr(flags.FLAGS['config'], 'config_filename', '') or '').split(':')[0]
  if path and not os.path.isfile(path):
    error(f'--config: {path}: no such file')


class _DropOrbax(py_logging.Filter):
  """Drops orbax's log records: every failure of a save or restore also reaches us as an
  exception, which is reported once, as one line; its background threads log the same failure
  several times with tracebacks."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return f'{os.sep}orbax{os.sep}' not in record.pathname or record.levelno >= py_logging.CRITICAL


class _DropUnretrieved(py_logging.Filter):
  """Drops asyncio's "Task/Future exception was never retrieved" about orbax's tasks: a failed
  restore leaves sibling tasks whose errors orbax never awaits (the first one is reported)."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return 'exception was never retrieved' not in record.getMessage()


def _unraisable_noise(unraisable) -> bool:
  """Errors raised where nobody can catch them, after orbax's work ended: TensorStore calling
  back into an asyncio loop that orbax closed after a failed restore, orbax's coroutines
  finalized with their error (the first error of the restore is reported) or collected at
  interpreter exit."""
  e, obj = unraisable.exc_value, unraisable.object
  code = getattr(obj, 'cr_code', None)
  return (
    (isinstance(e, RuntimeError) and str(e) == 'Event loop is closed')
    or (isinstance(e, ImportError) and 'shutting down' in str(e))
    or (code is not None and f'{os.sep}orbax{os.sep}' in code.co_filename)
  )


def quiet_library_noise() -> None:
  """Keeps the background noise of orbax, asyncio and TensorStore away from the user (see the
  filters above); `--verbosity=0` (or higher) brings orbax's logs back."""
  from absl import logging as absl_logging

  absl_logging.get_absl_handler().addFilter(_DropOrbax())
  py_logging.getLogger('asyncio').addFilter(_DropUnretrieved())
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _unraisable_noise(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook


def compilation_cache_dir() -> str:
  """Where JAX keeps compiled programs between runs: `$HRM_JAX_COMPILATION_CACHE` ('' turns
  the cache off), default `~/.cache/hrm_jax/jax_cache/<machine key>`. The key (a hash of the
  CPU model and instruction-set flags and the jax version) keeps machines that share a home
  folder, e.g. on a cluster, from loading each other's CPU code."""
  import hashlib
  import platform

  import jax

  if 'HRM_JAX_COMPILATION_CACHE' in os.environ:
    return os.environ['HRM_JAX_COMPILATION_CACHE']
  cpu = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = ''.join(sorted({ln for ln in f if ln.startswith(('model name', 'flags'))}))
  except OSError:
    pass
  key = hashlib.sha1(f'{cpu}|{platform.machine()}|{jax.__version__}'.encode()).hexdigest()[:12]
  return os.path.expanduser(os.path.join('~', '.cache', 'hrm_jax', 'jax_cache', key))


def enable_compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache (`compilation_cache_dir`), unless the user
  set `jax_compilation_cache_dir` already: a resumed or repeated run loads its compiled train
  and eval steps instead of compiling them again."""
  import jax

  path = compilation_cache_dir()
  if not path or jax.config.jax_compilation_cache_dir:
    return
  jax.config.update('jax_compilation_cache_dir', path)
  # Cache every program that took a while to compile (the default, 1 s, skips the eval step
  # of small models); tiny ones are not worth a disk read.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.2)


def run(
  main: Callable[[Sequence[str]], object],
  define_flags: Callable[[], None],
  errors: tuple[type[BaseException], ...] = (),
) -> None:
  """Defines the entry point's flags and runs `main` under absl, with library INFO logs off
  (orbax logs every checkpoint step; `--verbosity` turns them back on) and the USER_ERRORS,
  plus the entry point's own `errors`, reported by `error`."""
  define_flags()

  def guarded(argv):
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
      quiet_library_noise()
    _check_config_file()
    enable_compilation_cache()
    try:
      main(argv)
    except USER_ERRORS + errors as e:
      error(e)

  app.run(guarded, flags_parser=parse_flags)
