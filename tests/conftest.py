"""Shared fixtures: one tiny end-to-end training run reused by several tests.

Tests run on CPU in fp32 with tiny models (hidden ≤ 64) so the suite fits CI's 2 cores, with
jax_numpy_rank_promotion='raise'.
"""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Implicit rank promotion (e.g. [B] + [B, L]) is an error in every test: broadcasting must be
# written out ([:, None]), in the tests and in the library code they run, in this process and
# in the `python -m hrm_jax...` subprocesses some tests start (they inherit the environment).
os.environ['JAX_NUMPY_RANK_PROMOTION'] = 'raise'

# One persistent compilation cache for the whole session, fresh each session: this process, the
# xdist workers (they inherit the environment set here by the controlling process) and the
# `python -m hrm_jax...` subprocesses (hrm_jax.cli reads the variable) share it, so a program
# that many tests build (the tiny config's train and eval steps) compiles once per session.
# Tests only ever load what this session compiled on this machine. HRM_JAX_COMPILATION_CACHE
# set by the caller wins ('' turns it off).
_OWN_CACHE = ''
if 'HRM_JAX_COMPILATION_CACHE' not in os.environ:
  import tempfile

  _OWN_CACHE = tempfile.mkdtemp(prefix='hrm_jax_test_jit_cache_')
  os.environ['HRM_JAX_COMPILATION_CACHE'] = _OWN_CACHE

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')

from hrm_jax import cli  # noqa: E402
from tests import helpers  # noqa: E402

cli.enable_compilation_cache()  # the commands' own setting, read from the variable above


def pytest_addoption(parser):
  parser.addoption('--runslow', action='store_true', help='run tests marked slow')


def pytest_unconfigure(config):
  if _OWN_CACHE:  # only the process that made it (the controller under xdist)
    import shutil

    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
  if config.getoption('--runslow'):
    return
  skip = pytest.mark.skip(reason='slow (minutes): run with --runslow; CI skips it')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """Trains the tiny config once: returns (config, workdir, final eval metrics, captured log)."""
  from hrm_jax import train

  workdir = str(tmp_path_factory.mktemp('tiny_run'))
  cfg = helpers.tiny_config()
  metrics = train.train_and_evaluate(cfg, workdir)
  return cfg, workdir, metrics


@pytest.fixture(scope='session')
def puzzles():
  """Generated Sudokus: (questions [24, 81], solutions [24, 81], ratings [24]), 35..55 blanks."""
  from hrm_jax.data import sudoku_gen

  return sudoku_gen.generate_puzzles(24, np.random.default_rng(0), 35, 55)


@pytest.fixture(scope='session')
def one_device_main_run(tmp_path_factory):
  """`python -m hrm_jax.main` with helpers.TINY_MAIN_FLAGS on one CPU device: the reference the
  sharded (8 fake devices) and multi-process runs must match. Returns its workdir."""
  workdir = str(tmp_path_factory.mktemp('one_device'))
  helpers.run_main(*helpers.TINY_MAIN_FLAGS, f'--workdir={workdir}', devices=1)
  return workdir
