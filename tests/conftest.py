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

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')

from tests import helpers  # noqa: E402


def pytest_addoption(parser):
  parser.addoption('--runslow', action='store_true', help='run tests marked slow')


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
