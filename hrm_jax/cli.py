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


def _chain(e: BaseException) -> list[BaseException]:
  """`e` and the exceptions it was raised from or while handling, outermost first."""
  out = [e]
  while (nxt := out[-1].__cause__ or out[-1].__context__) is not None and nxt not in out:
    out.append(nxt)
  return out


def flag_error_message(e: BaseException) -> str:
  """The one-line message for an exception raised while parsing flags.

  Read from the exception chain, not from absl's text: an unknown `--config.<field>` is the
  KeyError of ConfigDict (it carries the "Did you mean" hint); an error raised inside a config
  file reaches absl wrapped twice (by ml_collections, which adds a traceback to the text, and
  by absl), so its root cause is reported; absl's own errors name the flag and the value.
  """
  chain = _chain(e)
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
    _check_config_file()
    try:
      main(argv)
    except USER_ERRORS + errors as e:
      error(e)

  app.run(guarded, flags_parser=parse_flags)
