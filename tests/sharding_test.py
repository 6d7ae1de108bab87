"""Data parallelism over 8 fake CPU devices matches one device (spec §5.4 loss semantics).

The same seed and global batch must give the same losses, metrics and parameters whatever the
device count: the loss is a sum over the global batch divided by its size, and XLA inserts the
cross-device reductions. Only the summation order differs, hence a float32-rounding tolerance.
The 8-device run also shards the puzzle-embedding table along its rows.
"""

from hrm_jax import sharding
from tests import helpers


def test_table_rows_padding():
  assert sharding.table_rows(1001, 8, shard=False) == 1001
  assert sharding.table_rows(1001, 8, shard=True) == 1024
  assert sharding.table_rows(1025, 1, shard=True) == 2048
  assert sharding.table_rows(10, 6, shard=True) == 3072  # lcm(1024, 6)


def test_eight_devices_match_one(one_device_main_run, tmp_path):
  workdir = str(tmp_path / 'eight')
  r = helpers.run_main(
    *helpers.TINY_MAIN_FLAGS,
    '--config.mesh.shard_puzzle_emb=True',
    f'--workdir={workdir}',
    devices=8,
  )
  assert 'devices=8 processes=1' in r.stdout
  helpers.assert_same_run(one_device_main_run, workdir, rtol=1e-4, atol=1e-5)
