"""`maze_hard`: Maze-Hard (and generated mazes) as a TFDS dataset."""

from hrm_jax.data.tfds.maze_hard.maze_hard_dataset_builder import Builder

__all__ = ['Builder']
