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


_CREATE_SHARDED = """
import jax, numpy as np
from hrm_jax import config as config_lib, sharding, train_step as ts
from tests import helpers
cfg = config_lib.resolve(helpers.load_config('experiments/sudoku.py', 'tiny'), 1.0)
mesh = sharding.Mesh(shard_puzzle_emb=True)
rows = mesh.table_rows(3000)
graphdef, state, carry = ts.init_sharded(cfg, 11, 81, rows, 16, mesh)
table = state.puzzle_emb
print('table', table.shape, sorted({s.data.shape for s in table.addressable_shards}))
print('table_spec', table.sharding.spec == jax.sharding.PartitionSpec('data', None))
print('carry_rows', sorted({s.data.shape[0] for s in carry.z_H.addressable_shards}))
ref_graphdef, ref = ts.init_state(cfg, 11, 81, rows)
same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(jax.device_get(state)),
                                                jax.tree.leaves(jax.device_get(ref))))
print('same_values', same, 'same_graph', graphdef == ref_graphdef)
"""


def test_state_is_created_sharded_with_init_state_values():
  import subprocess
  import sys

  r = subprocess.run(
    [sys.executable, '-c', _CREATE_SHARDED],
    cwd=helpers.ROOT,
    env=helpers.main_env(devices=4),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr
  lines = dict(line.split(' ', 1) for line in r.stdout.strip().splitlines())
  # 3000 ids padded to 3072 rows, each of the 4 devices holding a quarter of them.
  assert lines['table'] == '(3072, 32) [(768, 32)]'
  assert lines['table_spec'] == 'True'
  assert lines['carry_rows'] == '[4]'
  assert lines['same_values'] == 'True same_graph True'
