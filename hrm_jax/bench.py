"""`python -m hrm_jax.bench`: the documented name of `hrm_jax.tools.bench`."""

from absl import flags

from hrm_jax import cli as cli_lib
from hrm_jax.tools import bench


def _define_flags() -> None:
  bench.define_flags()
  flags.adopt_module_key_flags(bench)  # --help lists the benchmark's flags


if __name__ == '__main__':
  __doc__ = bench.__doc__  # --help prints the benchmark's usage
  cli_lib.run(bench.main, _define_flags)
