"""Looking inside trained models: segment- and step-level rollouts (`rollout`), forward
residuals, participation ratios and inference-time scaling (`measures`), figures (`plots`),
and the `python -m hrm_jax.analysis` command (`analyze`)."""
