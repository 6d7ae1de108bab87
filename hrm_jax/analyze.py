"""`python -m hrm_jax.analyze`: the documented name of the analysis command
(`hrm_jax.analysis.analyze`)."""

from hrm_jax.analysis import analyze

if __name__ == '__main__':
  analyze.cli()
