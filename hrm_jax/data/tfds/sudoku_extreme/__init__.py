"""`sudoku_extreme`: Sudoku-Extreme (and generated Sudokus) as a TFDS dataset."""

from hrm_jax.data.tfds.sudoku_extreme.sudoku_extreme_dataset_builder import Builder

__all__ = ['Builder']
