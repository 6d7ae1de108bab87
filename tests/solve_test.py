"""`python -m hrm_jax.solve`: puzzles read as text, answers checked by the rules, the report."""

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


def test_rule_breaks_names_the_cells_a_rule_rejects(puzzles):
  sudoku = tasks.get('sudoku')
  _, s, _ = puzzles
  good = s[0] + 1
  assert not sudoku.rule_breaks(good).any()
  bad = good.copy()
  bad[[0, 1]] = bad[[1, 0]]  # same row, same box: only their columns now repeat a digit
  col0, col1 = np.arange(0, 81, 9), np.arange(1, 81, 9)
  expected = np.zeros(81, bool)
  expected[col0[good[col0] == bad[0]]] = True
  expected[col1[good[col1] == bad[1]]] = True
  expected[[0, 1]] = True
  np.testing.assert_array_equal(sudoku.rule_breaks(bad), expected)
  blank = good.copy()
  blank[40] = 1
  np.testing.assert_array_equal(sudoku.rule_breaks(blank), np.arange(81) == 40)


def test_figure_draws_the_segments_as_a_picture(tiny_run, tmp_path):
  cfg, workdir, _ = tiny_run
  loaded = rollout.load(workdir, cfg)
  batch = next(rollout.eval_batches(loaded, 1, 1))
  sol = solve.solve(loaded, batch['inputs'][0], M=12)
  assert solve.figure_segments(12, 5, 6) == [1, 2, 3, 5, 12]
  assert solve.figure_segments(12, 2, 6) == [1, 2, 3, 4, 12]
  assert solve.figure_segments(12, 12, 6) == [1, 2, 3, 4, 12]
  assert solve.figure_segments(4, 2, 6) == [1, 2, 3, 4]
  shown = solve.figure_segments(12, sol.halt_at, 6)
  assert len(shown) == 5 and {1, sol.halt_at, 12} <= set(shown)
  path = solve.figure(loaded, sol, str(tmp_path / 'solve.png'), max_panels=6)
  from matplotlib import image

  assert solve.figure_segments(12, 12, 3) == [1, 12]
  three = image.imread(solve.figure(loaded, sol, str(tmp_path / 'three.png'), max_panels=3))
  six = image.imread(path)
  # Panels side by side: six panels are about twice as wide as three, as tall.
  assert six.shape[0] == three.shape[0] and six.shape[1] > 1.6 * three.shape[1]


def _solve_cli(*args):
  return helpers.run_module('hrm_jax.solve', *args)


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
