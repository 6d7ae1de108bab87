"""`python -m hrm_jax.analysis`: the analysis command (`hrm_jax.analysis.analyze`)."""

from hrm_jax.analysis import analyze

if __name__ == '__main__':
  analyze.cli()
