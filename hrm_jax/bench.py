"""`python -m hrm_jax.bench`: the documented name of `hrm_jax.tools.bench`."""

from hrm_jax.tools import bench

if __name__ == '__main__':
  bench.cli()
