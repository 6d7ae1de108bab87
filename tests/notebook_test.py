"""The Colab tour notebook runs top to bottom headless, at its tiny setting."""

import math
import os
import re

import nbformat
from nbclient import NotebookClient

from tests import helpers

NOTEBOOK = os.path.join(helpers.ROOT, 'experiments', 'notebooks', 'hrm_jax_tour.ipynb')


def test_tour_notebook_executes(tmp_path, monkeypatch):
  workdir = tmp_path / 'tour'
  # The kernel inherits this environment: a 20-step run of a hidden-32 model.
  for k, v in dict(
    HRM_TOUR_STEPS='20',
    HRM_TOUR_TINY='1',
    HRM_TOUR_WORKDIR=str(workdir),
    JAX_PLATFORMS='cpu',
  ).items():
    monkeypatch.setenv(k, v)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = NotebookClient(
    nb,
    timeout=240,
    kernel_name='python3',
    resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}},
  )
  client.execute()

  text = '\n'.join(
    out.get('text', '')
    for cell in nb.cells
    if cell.cell_type == 'code'
    for out in cell.get('outputs', [])
    if out.get('output_type') == 'stream'
  )
  assert 'loaded step 20' in text
  for name in ('pr_h', 'pr_l', 'pr_h_random', 'pr_l_random', 'residual_baseline_l_last'):
    match = re.search(rf'^{name}: (\S+)$', text, re.M)
    assert match and math.isfinite(float(match.group(1))), name
  images = [
    out
    for cell in nb.cells
    if cell.cell_type == 'code'
    for out in cell.get('outputs', [])
    if 'image/png' in out.get('data', {})
  ]
  assert len(images) == 6
  for png in (
    'sudoku_segments',
    'solve',
    'residuals',
    'participation',
    'scaling',
    'training_curves',
  ):
    data = (workdir / 'analysis' / f'{png}.png').read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000, png
