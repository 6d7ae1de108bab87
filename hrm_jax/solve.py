r"""Watch a trained model solve one puzzle, segment by segment:

  python -m hrm_jax.solve --workdir=DIR --puzzle=<81 digits, 0 or . for a blank>
  python -m hrm_jax.solve --workdir=DIR --puzzle_file=maze.txt
  python -m hrm_jax.solve --workdir=DIR --from_test=3

Prints the puzzle, the model's answer after every ACT segment with the cells that changed
marked, q_halt (and q_continue) per segment, the segment where the run's halting rule would
stop, and whether the answer is a solution, checked by the rules of the puzzle (Sudoku: rows,
columns and boxes; Maze: a valid shortest S-G path), not against a label. Colour on a
terminal (`--colour=auto`); `--figure=PATH` also draws it as a PNG (`figure`, what the
notebook shows). Tasks with text puzzles: those whose module in `hrm_jax/tasks/` provides
`parse_puzzle`, `is_solution`, `text_grid` and `draw_board` (Sudoku and Maze).
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from absl import flags

from hrm_jax import cli as cli_lib
from hrm_jax import tasks
from hrm_jax.analysis import measures
from hrm_jax.analysis import rollout as rollout_lib
from hrm_jax.config import ConfigError
from hrm_jax.data import format as data_format

FLAGS = flags.FLAGS
TEXT_HOOKS = ('parse_puzzle', 'is_solution', 'text_grid', 'draw_board')


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  flags.DEFINE_string('workdir', None, 'Trained workdir (its config.json picks the task).')
  flags.DEFINE_string('puzzle', None, 'The puzzle as text (Sudoku: 81 digits, 0 or . blank).')
  flags.DEFINE_string('puzzle_file', None, 'A file holding the puzzle as text.')
  flags.DEFINE_integer('from_test', None, "Solve test example N of the run's dataset instead.")
  flags.DEFINE_integer('segments', 0, 'Segments to run; 0: eval.halt_max_steps.')
  flags.DEFINE_enum('colour', 'auto', ['auto', 'always', 'never'], 'ANSI colours.')
  flags.DEFINE_string('figure', None, 'Also draw the segments as a PNG at this path.')
  flags.mark_flag_as_required('workdir')


@dataclasses.dataclass
class Solution:
  """One puzzle's rollout: inputs [L]; preds [M, L] after each segment; q_halt, q_continue [M];
  halt_at: the 1-based segment where the halting rule first says halt (M if never); solved [M]:
  whether each segment's answer is a solution by the rules."""

  inputs: np.ndarray
  preds: np.ndarray
  q_halt: np.ndarray
  q_continue: np.ndarray
  halt_at: int
  solved: np.ndarray


def text_task(loaded: rollout_lib.Loaded):
  """The task module of `loaded`'s run, if it reads puzzles as text; ConfigError otherwise."""
  task = tasks.get(loaded.cfg.data.name)
  if not all(hasattr(task, h) for h in TEXT_HOOKS):
    raise ConfigError(
      f'invalid config: data.name: {loaded.cfg.data.name!r} puzzles cannot be given as text; '
      '`solve` reads Sudoku and Maze puzzles'
    )
  return task


def solve(loaded: rollout_lib.Loaded, inputs: np.ndarray, M: int = 0) -> Solution:
  """Runs `loaded`'s model M segments (default eval.halt_max_steps) on one puzzle's tokens
  `inputs` [L] with the blank puzzle identifier (as evaluation does for unseen puzzles)."""
  task = text_task(loaded)
  inputs = np.asarray(inputs, np.int32)
  if inputs.shape != (loaded.meta.seq_len,):
    raise data_format.DatasetError(
      f'the puzzle has {inputs.size} cells but the model was trained on {loaded.meta.seq_len}'
    )
  batch = dict(
    inputs=inputs[None],
    puzzle_identifiers=np.full((1,), loaded.meta.blank_identifier_id, np.int32),
  )
  traj = rollout_lib.rollout(loaded, batch, M or None, keep='none')
  preds, q_halt, q_cont = traj.preds[:, 0], traj.q_halt[:, 0], traj.q_continue[:, 0]
  says = measures.q_says_halt(q_halt, q_cont, loaded.cfg.act.halt_rule)
  halt_at = int(np.argmax(says)) + 1 if says.any() else len(preds)
  solved = np.array([task.is_solution(inputs, p) for p in preds])
  return Solution(inputs, preds, q_halt, q_cont, halt_at, solved)


def report(loaded: rollout_lib.Loaded, sol: Solution, colour: bool = False) -> str:
  """The text `python -m hrm_jax.solve` prints for `sol` (see the module docstring)."""
  task = text_task(loaded)
  none = np.zeros_like(sol.inputs, bool)
  out = ['puzzle:', task.text_grid(sol.inputs, sol.inputs, none, colour), '']
  previous = sol.inputs
  for m, pred in enumerate(sol.preds, start=1):
    changed = pred != previous
    halt = '  <- ACT halts here' if m == sol.halt_at else ''
    out.append(
      f'segment {m}: q_halt={sol.q_halt[m - 1]:+.3f} q_continue={sol.q_continue[m - 1]:+.3f} '
      f'changed={int(changed.sum())} solution={"yes" if sol.solved[m - 1] else "no"}{halt}'
    )
    out += [task.text_grid(pred, sol.inputs, changed, colour), '']
    previous = pred
  verdict = lambda ok: 'a valid solution' if ok else 'not a solution'  # noqa: E731
  out.append(
    f'final (segment {len(sol.preds)}): {verdict(sol.solved[-1])}; '
    f'at the ACT halt (segment {sol.halt_at}): {verdict(sol.solved[sol.halt_at - 1])}'
  )
  return '\n'.join(out)


def figure_segments(M: int, halt_at: int, max_panels: int) -> list[int]:
  """The 1-based segments `figure` shows of M: all if they fit in `max_panels` - 1 panels (one
  is the puzzle), else the first ones, the ACT halt and the last. `max_panels` >= 3."""
  if max_panels < 3:
    raise ValueError(f'max_panels must be >= 3 (the puzzle, the halt, the last), got {max_panels}')
  if M < max_panels:
    return list(range(1, M + 1))
  first = max_panels - 1 - len({halt_at, M} - set(range(1, max_panels - 2)))
  return sorted({*range(1, first + 1), halt_at, M})


def figure(loaded: rollout_lib.Loaded, sol: Solution, path: str, max_panels: int = 8) -> str:
  """`report` as a picture at `path` (PNG; returns `path`): the puzzle, then the answer after
  each segment (at most `max_panels`: the first ones, the ACT halt and the last), changed
  cells marked, rule-breaking ones red; titles give q_halt and the verdict, green when solved."""
  from hrm_jax.analysis import plots  # matplotlib only where pictures are drawn

  task = text_task(loaded)
  shown = figure_segments(len(sol.preds), sol.halt_at, max_panels)
  boards = [(sol.inputs, sol.inputs, np.zeros_like(sol.inputs, bool))]
  titles, colours = ['puzzle'], ['k']
  for m in shown:
    previous = sol.preds[m - 2] if m > 1 else sol.inputs
    boards.append((sol.inputs, sol.preds[m - 1], sol.preds[m - 1] != previous))
    halt = ' (ACT halts)' if m == sol.halt_at else ''
    verdict = 'solved' if sol.solved[m - 1] else 'not solved'
    titles.append(f'segment {m}{halt}\nq_halt {sol.q_halt[m - 1]:+.2f}, {verdict}')
    colours.append('#1a7f1a' if sol.solved[m - 1] else 'k')
  return plots.segments_figure(path, task.draw_board, boards, titles, colours)


def _puzzle_tokens(loaded: rollout_lib.Loaded) -> np.ndarray:
  given = [f for f in ('puzzle', 'puzzle_file', 'from_test') if FLAGS[f].value is not None]
  if len(given) != 1:
    raise ConfigError('invalid config: give exactly one of --puzzle, --puzzle_file, --from_test')
  if FLAGS.from_test is not None:
    n = FLAGS.from_test
    batch = next(rollout_lib.eval_batches(loaded, n + 1, n + 1))
    if n < 0 or n >= len(batch['inputs']) or not (batch['labels'][n] != -100).any():
      raise data_format.DatasetError(f'--from_test={n}: the test split has no example {n}')
    return batch['inputs'][n]
  text = FLAGS.puzzle
  if FLAGS.puzzle_file is not None:
    with open(FLAGS.puzzle_file) as f:
      text = f.read()
  try:
    return text_task(loaded).parse_puzzle(text)
  except ValueError as e:
    raise data_format.DatasetError(f'bad puzzle: {e}') from None


def main(argv) -> None:
  del argv
  loaded = rollout_lib.load(FLAGS.workdir)
  inputs = _puzzle_tokens(loaded)
  colour = FLAGS.colour == 'always' or (FLAGS.colour == 'auto' and sys.stdout.isatty())
  sol = solve(loaded, inputs, FLAGS.segments)
  print(report(loaded, sol, colour), flush=True)
  if FLAGS.figure:
    print(f'figure: {figure(loaded, sol, FLAGS.figure)}')


def cli() -> None:
  cli_lib.run(main, define_flags)


if __name__ == '__main__':
  cli()
