"""Registers the three builders with TFDS (importing them does): ``tfds build
--imports=hrm_jax.data.tfds.builders sudoku_extreme/cpu``, ``tfds.builder('sudoku_extreme')``."""

from hrm_jax.data.tfds.arc_agi import Builder as ArcAgi
from hrm_jax.data.tfds.maze_hard import Builder as MazeHard
from hrm_jax.data.tfds.sudoku_extreme import Builder as SudokuExtreme

BUILDERS = {'sudoku_extreme': SudokuExtreme, 'maze_hard': MazeHard, 'arc_agi': ArcAgi}
