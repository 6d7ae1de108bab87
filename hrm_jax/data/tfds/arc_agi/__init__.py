"""`arc_agi`: ARC-AGI-1/2 (with or without ConceptARC) as a TFDS dataset."""

from hrm_jax.data.tfds.arc_agi.arc_agi_dataset_builder import Builder

__all__ = ['Builder']
