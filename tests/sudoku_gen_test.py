"""Tests of hrm_jax.data.sudoku_gen: the bitmask solver and the puzzle generator."""

import numpy as np
import pytest

from hrm_jax.data import sudoku_gen
from tests import helpers


def test_generated_puzzles_unique_and_in_range(puzzles):
  q, s, ratings = puzzles
  assert q.shape == s.shape == (24, 81) and q.dtype == np.int8 and ratings.shape == (24,)
  blanks = (q == 0).sum(1)
  assert blanks.min() >= 35 and blanks.max() <= 55
  helpers.check_sudoku_pairs(q, s)
  for k in range(24):
    assert sudoku_gen.count_solutions(q[k]) == 1
    solution, dead_ends = sudoku_gen.solve(q[k])
    np.testing.assert_array_equal(solution, s[k])
    assert dead_ends == ratings[k] >= 0


def test_generator_deterministic_across_workers(puzzles):
  again = sudoku_gen.generate_puzzles(24, np.random.default_rng(0), 35, 55)
  for a, b in zip(puzzles, again):
    np.testing.assert_array_equal(a, b)
  one = sudoku_gen.generate_puzzles(130, np.random.default_rng(4), 20, 30, num_workers=1)
  two = sudoku_gen.generate_puzzles(130, np.random.default_rng(4), 20, 30, num_workers=2)
  for a, b in zip(one, two):
    np.testing.assert_array_equal(a, b)


def test_difficulty_knob_keeps_only_puzzles_that_need_search():
  q, s, ratings = sudoku_gen.generate_puzzles(
    6, np.random.default_rng(1), 50, 64, num_workers=1, min_dead_ends=2
  )
  assert ratings.min() >= 2
  helpers.check_sudoku_pairs(q, s)
  for k in range(6):
    solution, dead_ends = sudoku_gen.solve(q[k])
    np.testing.assert_array_equal(solution, s[k])
    assert dead_ends == ratings[k] and sudoku_gen.count_solutions(q[k]) == 1
  # Five blanks never need search: the knob cannot be met, and says which fields to change.
  with pytest.raises(ValueError, match='lower min_blanks or min_dead_ends'):
    sudoku_gen.generate_puzzles(1, np.random.default_rng(0), 0, 5, num_workers=1, min_dead_ends=1)


def test_solver_counts_multiple_solutions(puzzles):
  q = puzzles[0][0].copy()
  assert sudoku_gen.count_solutions(np.zeros(81, np.int8)) == 2
  clash = q.copy()
  clash[:2] = 5
  assert sudoku_gen.count_solutions(clash) == 0 and sudoku_gen.solve(clash)[0] is None
