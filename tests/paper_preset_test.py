"""The paper preset (27,275,266 parameters, bf16) runs a real train step on CPU.

Slow (minutes on 2 cores): skipped in CI, run with `pytest --runslow`. The fast suite checks the
same preset's parameter count and config (hrm_test.py).
"""

import pytest

from hrm_jax import train
from tests import helpers


@pytest.mark.slow
def test_paper_preset_trains_with_a_small_batch(tmp_path):
  cfg = helpers.load_config('experiments/sudoku.py')
  cfg.data.update(source='generate', num_train=100, num_test=8, num_aug=1)
  cfg.train.update(global_batch_size=4, steps=2, eval_every=2, log_every=1)
  cfg.eval.update(batch_size=4, max_examples=4)
  metrics = train.train_and_evaluate(cfg, str(tmp_path))
  assert metrics['count'] == 4
  assert metrics['steps'] == 16
