"""hrm_jax: JAX/Flax latent recursive reasoning models (HRM, TRM)."""
