"""One linter and formatter for the whole tree (ruff, from the test extra; pyproject.toml)."""

import subprocess
import sys

import pytest

from tests import helpers


@pytest.mark.parametrize('args', [['check'], ['format', '--check']])
def test_ruff(args):
  r = subprocess.run(
    [sys.executable, '-m', 'ruff', *args, 'hrm_jax', 'tests', 'experiments'],
    cwd=helpers.ROOT,
    capture_output=True,
    text=True,
  )
  assert r.returncode == 0, r.stdout + r.stderr
