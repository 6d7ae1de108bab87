"""`python -m hrm_jax.convert_torch`: the documented name of `hrm_jax.tools.convert_torch`."""

from hrm_jax.tools import convert_torch

if __name__ == '__main__':
  convert_torch.cli()
