"""The paper preset (27,275,266 parameters, bf16) trains and evaluates on CPU with a small batch.

About 45 s on 2 cores (most of it compiling the 27M-parameter step); data are generated.
"""

from hrm_jax import train
from tests import helpers


def test_paper_preset_trains_with_a_small_batch(tmp_path):
  cfg = helpers.load_config('experiments/sudoku.py')
  cfg.data.update(source='generate', num_train=100, num_test=8, num_aug=1)
  cfg.train.update(global_batch_size=4, steps=2, eval_every=2, log_every=1)
  cfg.eval.update(batch_size=4, max_examples=4)
  metrics = train.train_and_evaluate(cfg, str(tmp_path))
  assert metrics['count'] == 4
  assert metrics['steps'] == 16
