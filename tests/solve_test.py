"""`python -m hrm_jax.solve`: puzzles read as text, answers checked by the rules, the report."""

import subprocess
import sys

import numpy as np
import pytest

from hrm_jax import solve, tasks
from hrm_jax.analysis import rollout
from tests import helpers

MAZE = '#####\n#S  #\n# # #\n#  G#\n#####\n'


def test_sudoku_text_is_parsed_and_checked_by_the_rules(puzzles):
  sudoku = tasks.get('sudoku')
  q, s, _ = puzzles
  text = ''.join('.' if v == 0 else str(v) for v in q[0])
  tokens = sudoku.parse_puzzle(text)
  np.testing.assert_array_equal(tokens, q[0] + 1)
  # Separators and line breaks are allowed; 0 is a blank as '.' is.
  spaced = '\n'.join(text[9 * r : 9 * r + 9].replace('.', '0') for r in range(9))
  np.testing.assert_array_equal(sudoku.parse_puzzle(spaced), tokens)
  assert sudoku.is_solution(tokens, s[0] + 1)
  wrong = s[0] + 1
  wrong[[0, 1]] = wrong[[1, 0]]  # two cells of a row swapped: a column or box now repeats
  assert not sudoku.is_solution(tokens, wrong)
  given = int(np.flatnonzero(q[0])[0])
  other = (s[1] + 1).copy()
  assert not sudoku.is_solution(tokens, other) or other[given] == tokens[given]
  assert not sudoku.is_solution(tokens, np.ones(81, np.int32))  # blanks are not digits
  with pytest.raises(ValueError, match='81 cells, got 80'):
    sudoku.parse_puzzle(text[:80])
  with pytest.raises(ValueError, match='impossible givens: row 1 repeats'):
    sudoku.parse_puzzle('11' + '.' * 79)
  with pytest.raises(ValueError, match='impossible givens: box 9 repeats'):
    sudoku.parse_puzzle('.' * 60 + '7' + '.' * 9 + '7' + '.' * 10)
  # No digit repeats, yet no solution: row 1 needs a 9 where column 9 already has one.
  with pytest.raises(ValueError, match='impossible givens: the puzzle has no solution'):
    sudoku.parse_puzzle('12345678.' + '........9' + '.' * 63)
  with pytest.raises(ValueError, match=r"got \['x'\]"):
    sudoku.parse_puzzle('x' + '.' * 80)


def test_maze_text_is_parsed_and_any_shortest_path_is_a_solution():
  maze = tasks.get('maze')
  tokens = maze.parse_puzzle(MAZE)
  assert tokens.shape == (25,)

  def path(cells):  # the maze with `cells` marked as the path 'o'
    return np.where(np.isin(np.arange(25), cells), 5, tokens)

  assert maze.is_solution(tokens, path([7, 8, 13]))  # right, right, down: 4 moves to G
  assert maze.is_solution(tokens, path([11, 16, 17]))  # down, down, right: another shortest
  assert not maze.is_solution(tokens, path([7, 8]))  # broken path
  assert not maze.is_solution(tokens, tokens)  # no path at all
  with pytest.raises(ValueError, match='one S and one G'):
    maze.parse_puzzle(MAZE.replace('G', ' '))
  with pytest.raises(ValueError, match='square'):
    maze.parse_puzzle('#S G#\n')
  assert not hasattr(tasks.get('arc'), 'parse_puzzle')  # ARC is not read as text


def test_report_marks_changes_halting_and_verdicts(tiny_run, puzzles):
  cfg, workdir, _ = tiny_run
  loaded = rollout.load(workdir, cfg)
  q, s, _ = puzzles
  inputs = q[0] + 1
  sol = solve.solve(loaded, inputs, M=3)
  assert sol.preds.shape == (3, 81) and sol.q_halt.shape == (3,) and 1 <= sol.halt_at <= 3
  # The verdicts are the rules' verdicts on the model's answers.
  sudoku = tasks.get('sudoku')
  assert sol.solved.tolist() == [sudoku.is_solution(inputs, p) for p in sol.preds]
  # A hand-made two-segment solution: the blanks filled at segment 2, the halt at segment 2.
  made = solve.Solution(
    inputs=inputs,
    preds=np.stack([inputs, s[0] + 1]),
    q_halt=np.array([-1.0, 2.0]),
    q_continue=np.array([0.0, 0.0]),
    halt_at=2,
    solved=np.array([False, True]),
  )
  text = solve.report(loaded, made)
  blanks = int((q[0] == 0).sum())
  assert 'segment 1: q_halt=-1.000 q_continue=+0.000 changed=0 solution=no' in text
  assert f'changed={blanks} solution=yes  <- ACT halts here' in text
  assert text.count('*') == blanks  # every filled blank marked once, nothing else
  assert text.endswith(
    'final (segment 2): a valid solution; at the ACT halt (segment 2): a valid solution'
  )
  assert '\033[' not in text and '\033[33m' in solve.report(loaded, made, colour=True)


def _solve_cli(*args):
  return subprocess.run(
    [sys.executable, '-m', 'hrm_jax.solve', *args],
    cwd=helpers.ROOT,
    env=helpers.main_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_cli_solves_a_test_example_and_refuses_bad_puzzles(tiny_run):
  _, workdir, _ = tiny_run
  r = _solve_cli(f'--workdir={workdir}', '--from_test=1', '--colour=never')
  assert r.returncode == 0, r.stderr
  assert r.stdout.count('<- ACT halts here') == 1 and 'final (segment 4):' in r.stdout
  # A maze given to a Sudoku model, and impossible givens: one error line each.
  for puzzle, message in ((MAZE, 'a Sudoku has 81 cells, got'), ('55' + '.' * 79, 'impossible')):
    r = _solve_cli(f'--workdir={workdir}', f'--puzzle={puzzle}')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]  # orbax may warn first
    assert last.startswith('error: bad puzzle: ') and message in last, r.stderr
