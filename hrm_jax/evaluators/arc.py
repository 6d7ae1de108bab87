"""ARC-AGI evaluation: augmentation voting, pass@K and the Kaggle submission (spec §7.2).

Every augmented variant of a test input (its own puzzle id, spec §6.6) yields one prediction. The
prediction and the input are cropped from the canvas and un-augmented (inverse dihedral, then the
inverse colour map); the un-augmented input identifies which test input of the task it answers.
For each test input, every distinct predicted grid is a candidate with a vote count and the mean
sigmoid(q_halt) of its voters; candidates rank by (count, mean q) descending. pass@K asks whether
the true output is among the top K, and a task's credit is then one of two rules:

  all  — the HRM notebook's rule: 1 if *every* test input of the task is solved within top K.
  frac — the TRM evaluator's rule: the fraction of the task's test inputs solved within top K.

Both are averaged over the scored test tasks (those whose test outputs are all known).

Departures from the TRM reference evaluator (its `evaluators/arc.py`), each on purpose:
  * votes are per evaluation round (one checkpoint) unless ``aggregate=True``; the reference
    never clears them, so its numbers pool every checkpoint evaluated so far in a run;
  * a test input without predictions still gets its submission entry (a [[0]] fallback) so the
    attempts of later test inputs stay aligned, and is counted in ``arc/missing_predictions``;
  * out-of-range prediction tokens are not asserted on: the crop stops at any non-colour token;
  * mean q is summed with ``math.fsum``, so the ranking does not depend on row order or on how
    the rows were split across hosts.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath

from hrm_jax.data import grids
from hrm_jax.data.format import DatasetError, load_metadata

PASS_KS = (1, 2, 5, 10, 100, 1000)
RULES = ('all', 'frac')
FALLBACK_GRID = ((0,),)  # a submission attempt for a test input that got no prediction


# ---------------------------------------------------------------------------------------------
# Pure scoring functions


def _rank(stats: Mapping[str, Sequence[float]]) -> list[tuple[str, int, float]]:
  """Ranks {grid hash: q values of its voters} as ``vote`` does."""
  ranked = [(h, len(qs), math.fsum(qs) / len(qs)) for h, qs in stats.items() if len(qs)]
  # Hash last makes exact ties deterministic (the reference leaves them to dict order).
  ranked.sort(key=lambda c: (-c[1], -c[2], c[0]))
  return ranked


def vote(candidates: Iterable[tuple[str, float]]) -> list[tuple[str, int, float]]:
  """Ranks the candidate grids of one test input by augmentation voting.

  ``candidates`` holds one (grid hash, sigmoid(q_halt)) pair per variant prediction. Returns one
  (grid hash, count, mean q) per distinct hash, ranked by count, then mean q (both descending),
  then hash (ascending) for a deterministic order of exact ties.
  """
  stats: dict[str, list[float]] = {}
  for h, q in candidates:
    stats.setdefault(h, []).append(float(q))
  return _rank(stats)


def pass_at_k(ranked: Sequence[str], answer: str, ks: Sequence[int] = PASS_KS) -> np.ndarray:
  """Whether ``answer`` (a grid hash) is among the first K of ``ranked`` hashes, for each K.

  ``ranked`` is the ranked candidate hashes of one test input (possibly empty). Returns bool
  [len(ks)].
  """
  ranked = list(ranked)
  if answer not in ranked:
    return np.zeros(len(ks), dtype=bool)
  position = ranked.index(answer)
  return np.array([position < k for k in ks], dtype=bool)


def task_credit(solved: np.ndarray, rule: str) -> np.ndarray:
  """Per-task credit from ``solved`` bool [T, K] (T test inputs × K values of pass@K).

  rule ``'all'`` (HRM): 1.0 where all T test inputs are solved, else 0.0; rule ``'frac'`` (TRM):
  the fraction of the T test inputs solved. Returns float64 [K].
  """
  solved = np.asarray(solved, dtype=bool)
  if solved.ndim != 2 or solved.shape[0] == 0:
    raise ValueError(f'solved must be [T >= 1, K], got shape {solved.shape}')
  if rule == 'all':
    return solved.all(axis=0).astype(np.float64)
  if rule == 'frac':
    return solved.mean(axis=0, dtype=np.float64)
  raise ValueError(f'unknown credit rule {rule!r}; expected one of {RULES}')


def sigmoid(x: np.ndarray) -> np.ndarray:
  """Numerically stable float64 logistic of logits x [...]; NaN logits give 0.0."""
  x = np.asarray(x, dtype=np.float64)
  e = np.exp(-np.abs(x))
  p = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
  # A NaN q would make the (count, mean q) order undefined; such a vote ranks lowest instead.
  return np.nan_to_num(p, nan=0.0)


# ---------------------------------------------------------------------------------------------
# The evaluator


def _read_json(path: str, what: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise DatasetError(f'{path}: {what} is missing') from None
  except OSError as e:
    raise DatasetError(f'{path}: cannot read ({e.strerror or e})') from None
  except json.JSONDecodeError as e:
    raise DatasetError(f'{path}: not valid JSON ({e})') from None


class _TestInput:
  """One test input of a test task: its input hash and output hash (None when unknown)."""

  __slots__ = ('input_hash', 'output_hash')

  def __init__(self, input_hash: str, output_hash: str | None):
    self.input_hash = input_hash
    self.output_hash = output_hash


class ArcEvaluator:
  """pass@K by augmentation voting over the test split of an ARC dataset folder (spec §7.2).

  Reads ``<data_dir>/identifiers.json`` (id -> variant name), ``<data_dir>/test_puzzles.json``
  (``{task id: {'test': [{'input': grid, 'output': grid or absent/None}, ...], ...}}``) and
  ``<data_dir>/test/dataset.json`` (canvas side = sqrt(seq_len), blank identifier id); a missing
  or malformed file raises DatasetError.

  An `Evaluator` (hrm_jax/evaluators/__init__.py): per evaluation round ``begin()``,
  ``update(batch, preds, q_halt)`` (or ``add_votes`` with the arrays) per batch, then
  ``result()`` and ``write(out_dir)`` (``submission.json``). Votes are cleared by ``begin()`` unless
  ``aggregate`` (then they pool across rounds, i.e. across checkpoints, as the TRM reference
  always does). With several hosts, gather every host's ``state()`` and ``merge`` them on the
  host that scores. A test task whose outputs are not all known is not scored (it is counted in
  ``arc/tasks_unscored``) but still gets submission entries. A TRM-built folder fills unknown
  outputs with a dummy [[0]], which cannot be told from a real answer and is scored.
  """

  # Result keys printed on the `eval` line (all of them go to metrics.jsonl).
  shown = ('arc/pass@1_all', 'arc/pass@2_all', 'arc/pass@1_frac', 'arc/pass@2_frac')

  def __init__(
    self,
    data_dir: str,
    pass_ks: Sequence[int] = PASS_KS,
    submission_k: int = 2,
    aggregate: bool = False,
  ):
    if not pass_ks or any(int(k) < 1 for k in pass_ks):
      raise ValueError(f'pass_ks must be positive integers, got {pass_ks}')
    if submission_k < 1:
      raise ValueError(f'submission_k must be >= 1, got {submission_k}')
    self.pass_ks = tuple(int(k) for k in pass_ks)
    self.submission_k = int(submission_k)
    self.aggregate = aggregate

    meta = load_metadata(data_dir, 'test')
    canvas = math.isqrt(meta.seq_len)
    if canvas * canvas != meta.seq_len:
      raise DatasetError(
        f'{os.path.join(data_dir, "test", "dataset.json")}: seq_len {meta.seq_len} is not the '
        'square of an ARC canvas side'
      )
    self.canvas = canvas
    self.blank_id = meta.blank_identifier_id

    path = os.path.join(data_dir, 'identifiers.json')
    names = _read_json(path, 'identifiers.json')
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
      raise DatasetError(f'{path}: expected a JSON list of names')
    self._names: list[str] = names

    path = os.path.join(data_dir, 'test_puzzles.json')
    self._tasks = self._parse_tasks(_read_json(path, 'test_puzzles.json'), path)
    self._input_hashes = {k: {t.input_hash for t in v} for k, v in self._tasks.items()}

    # Parsed variant names by puzzle id: (task id, tid, colour map), filled as ids are seen.
    self._variants: dict[int, tuple[str, int, np.ndarray]] = {}
    self._origin = uuid.uuid4().hex  # tells this evaluator's state apart from other hosts'
    self._votes: dict[str, dict[str, dict[str, list[float]]]] = {}
    self._grids: dict[str, np.ndarray] = {}
    self._remote: dict[str, dict] = {}

  def _parse_tasks(self, data: Any, path: str) -> dict[str, list[_TestInput]]:
    if not isinstance(data, dict):
      raise DatasetError(f'{path}: expected a JSON object of tasks')
    tasks = {}
    for task_id, puzzle in data.items():
      tests = puzzle.get('test') if isinstance(puzzle, dict) else None
      if not isinstance(tests, list) or not tests:
        raise DatasetError(f'{path}: task {task_id!r} has no list of test inputs')
      entries = []
      for i, pair in enumerate(tests):
        try:
          inp = grids.check_grid(pair['input'], self.canvas)
          out = pair.get('output')
          out = None if out is None else grids.check_grid(out, self.canvas)
        except (ValueError, TypeError, KeyError) as e:
          raise DatasetError(f'{path}: task {task_id!r} test {i}: {e}') from None
        entries.append(
          _TestInput(grids.grid_hash(inp), None if out is None else grids.grid_hash(out))
        )
      tasks[task_id] = entries
    return tasks

  # -- voting ----------------------------------------------------------------------------------

  def begin(self) -> None:
    """Starts an evaluation round: clears all votes (local and merged) unless ``aggregate``."""
    if not self.aggregate:
      self._votes, self._grids, self._remote = {}, {}, {}

  def _variant(self, pid: int) -> tuple[str, int, np.ndarray]:
    v = self._variants.get(pid)
    if v is None:
      if not 0 <= pid < len(self._names):
        raise ValueError(
          f'puzzle identifier {pid} outside identifiers.json (0..{len(self._names)})'
        )
      name = self._names[pid]
      v = grids.parse_variant_name(name)
      if v[0] not in self._tasks:
        raise ValueError(f'variant {name!r} (id {pid}): task {v[0]!r} is not in test_puzzles.json')
      self._variants[pid] = v
    return v

  def update(self, batch: dict, preds: np.ndarray, q_halt: np.ndarray) -> None:
    """The `Evaluator` call: `add_votes` of batch['inputs'] int [b, L], preds int [b, L],
    q_halt float [b] (logits) and batch['puzzle_identifiers'] int [b]."""
    self.add_votes(batch['inputs'], preds, q_halt, batch['puzzle_identifiers'])

  def add_votes(
    self,
    inputs: np.ndarray,
    preds: np.ndarray,
    q_halt: np.ndarray,
    puzzle_identifiers: np.ndarray,
  ) -> None:
    """Records the votes of one batch (host numpy arrays).

    inputs int [b, L] and preds int [b, L] are canvas tokens (L = canvas²), q_halt float [b] the
    halting logits, puzzle_identifiers int [b]. Rows with the blank id (loader padding) are
    dropped. A prediction whose crop is empty is a (wrong) candidate. Raises ValueError if a
    row's un-augmented input is none of its task's test inputs (data/identifier mismatch).
    """
    inputs, preds = np.asarray(inputs), np.asarray(preds)
    ids = np.asarray(puzzle_identifiers).reshape(-1)
    q = sigmoid(np.asarray(q_halt).reshape(-1))
    seq_len = self.canvas * self.canvas
    if (
      inputs.ndim != 2
      or inputs.shape[1] != seq_len
      or preds.shape != inputs.shape
      or ids.shape != (inputs.shape[0],)
      or q.shape != ids.shape
    ):
      raise ValueError(
        f'expected inputs/preds [b, {seq_len}] and q_halt/puzzle_identifiers [b]; got '
        f'{inputs.shape}, {preds.shape}, {q.shape}, {ids.shape}'
      )
    keep = np.flatnonzero(ids != self.blank_id)
    for r in keep:
      pid = int(ids[r])
      task_id, tid, colour_map = self._variant(pid)
      inp = grids.unaugment_grid(grids.crop(inputs[r], self.canvas), tid, colour_map)
      input_hash = grids.grid_hash(inp)
      if input_hash not in self._input_hashes[task_id]:
        raise ValueError(
          f'variant {self._names[pid]!r} (id {pid}): the un-augmented input {inp.shape} matches '
          f'no test input of task {task_id!r}; identifiers and data do not agree'
        )
      pred = grids.unaugment_grid(grids.crop(preds[r], self.canvas), tid, colour_map)
      pred_hash = grids.grid_hash(pred)
      self._grids.setdefault(pred_hash, pred)
      stats = self._votes.setdefault(task_id, {}).setdefault(input_hash, {})
      stats.setdefault(pred_hash, []).append(float(q[r]))

  # -- multi-host ------------------------------------------------------------------------------

  def state(self) -> dict:
    """This evaluator's own votes as a picklable dict (merged states of other hosts excluded).

    ``{'origin': str, 'votes': {task: {input hash: {grid hash: [q, ...]}}}, 'grids': {grid
    hash: uint8 [h, w]}}``; send it to the scoring host's ``merge``.
    """
    votes = {
      t: {ih: {h: list(qs) for h, qs in by_h.items()} for ih, by_h in by_in.items()}
      for t, by_in in self._votes.items()
    }
    return {'origin': self._origin, 'votes': votes, 'grids': dict(self._grids)}

  def merge(self, states: Iterable[dict]) -> None:
    """Adds other hosts' ``state()`` dicts to the votes that ``result``/``submission`` use.

    Idempotent per host: a later state from the same host replaces its earlier one (so with
    ``aggregate`` each round may merge every host's cumulative state again), and this
    evaluator's own state is skipped, so passing all gathered states, own included, is fine.
    """
    for s in states:
      if s['origin'] != self._origin:
        grids_ = {h: np.asarray(g, np.uint8) for h, g in s['grids'].items()}
        self._remote[s['origin']] = {'votes': s['votes'], 'grids': grids_}

  def _combined(self) -> tuple[dict, dict]:
    """Local plus merged votes: ({(task, input hash): {grid hash: [q...]}}, grids)."""
    votes: dict[tuple[str, str], dict[str, list[float]]] = {}
    all_grids = dict(self._grids)
    sources = [self._votes] + [self._remote[o]['votes'] for o in sorted(self._remote)]
    for src in sources:
      for task_id, by_in in src.items():
        for input_hash, by_h in by_in.items():
          stats = votes.setdefault((task_id, input_hash), {})
          for h, qs in by_h.items():
            stats.setdefault(h, []).extend(qs)
    for o in sorted(self._remote):
      for h, g in self._remote[o]['grids'].items():
        all_grids.setdefault(h, g)
    return votes, all_grids

  # -- scoring ---------------------------------------------------------------------------------

  def ranked(self) -> dict[str, list[list[tuple[str, int, float]]]]:
    """{task id: [vote ranking per test input, in order]} over local and merged votes."""
    votes, _ = self._combined()
    return {
      task_id: [_rank(votes.get((task_id, t.input_hash), {})) for t in tests]
      for task_id, tests in self._tasks.items()
    }

  def result(self) -> dict[str, float]:
    """Scores the votes of the round (plus merged and, with ``aggregate``, earlier rounds).

    Keys: ``arc/pass@{K}_all`` (HRM rule: a task counts 1 only if all its test inputs are solved
    within the top K) and ``arc/pass@{K}_frac`` (TRM rule: a task counts the fraction of its
    test inputs solved within the top K) for each K, both averaged over the scored tasks (0.0
    when there are none); ``arc/tasks`` (scored tasks: all test outputs known),
    ``arc/tasks_unscored``, ``arc/test_inputs`` (of all tasks), ``arc/missing_predictions``
    (test inputs with no vote), ``arc/candidates_mean`` (distinct candidate grids per test
    input, over all test inputs) and ``arc/votes`` (recorded predictions).
    """
    ranked = self.ranked()
    credit = {rule: np.zeros(len(self.pass_ks)) for rule in RULES}
    scored = unscored = n_inputs = missing = candidates = votes = 0
    for task_id, tests in self._tasks.items():
      rankings = ranked[task_id]
      n_inputs += len(tests)
      missing += sum(not r for r in rankings)
      candidates += sum(len(r) for r in rankings)
      votes += sum(c for r in rankings for _, c, _ in r)
      if any(t.output_hash is None for t in tests):
        unscored += 1
        continue
      scored += 1
      solved = np.stack(
        [
          pass_at_k([h for h, _, _ in r], t.output_hash, self.pass_ks)
          for t, r in zip(tests, rankings)
        ]
      )
      for rule in RULES:
        credit[rule] += task_credit(solved, rule)
    out = {}
    for rule in RULES:
      for i, k in enumerate(self.pass_ks):
        out[f'arc/pass@{k}_{rule}'] = float(credit[rule][i] / scored) if scored else 0.0
    out.update(
      {
        'arc/tasks': float(scored),
        'arc/tasks_unscored': float(unscored),
        'arc/test_inputs': float(n_inputs),
        'arc/missing_predictions': float(missing),
        'arc/candidates_mean': candidates / n_inputs if n_inputs else 0.0,
        'arc/votes': float(votes),
      }
    )
    return out

  def submission(self) -> dict[str, list[dict[str, list[list[int]]]]]:
    """The Kaggle submission: ``{task id: [{'attempt_1': grid, ..., 'attempt_{k}': grid}, ...]}``.

    One entry per test input, in order, for every task of test_puzzles.json; the attempts are the
    top ``submission_k`` candidates, later ones repeating attempt_1 when there are fewer. Empty
    (0×0) predictions are skipped as attempts, being certainly wrong and not a valid grid; a test
    input with no usable candidate gets [[0]] for every attempt, keeping later entries aligned.
    """
    ranked = self.ranked()
    _, all_grids = self._combined()
    sub = {}
    for task_id, tests in self._tasks.items():
      entries = []
      for r in ranked[task_id]:
        attempts = [all_grids[h] for h, _, _ in r if all_grids[h].size][: self.submission_k]
        attempts = [g.tolist() for g in attempts] or [[list(row) for row in FALLBACK_GRID]]
        attempts += [attempts[0]] * (self.submission_k - len(attempts))
        entries.append({f'attempt_{i + 1}': g for i, g in enumerate(attempts)})
      sub[task_id] = entries
    return sub

  def write(self, out_dir: str) -> None:
    """Writes the round's ``submission.json`` into ``out_dir`` (created if missing)."""
    epath.Path(out_dir).mkdir(parents=True, exist_ok=True)
    self.write_submission(str(epath.Path(out_dir) / 'submission.json'))

  def write_submission(self, path: str) -> None:
    """Writes ``submission()`` as JSON to ``path`` (atomically on a local disk: temp file, then
    rename; a bucket path, as one object write)."""
    if '://' in str(path):
      epath.Path(path).write_text(json.dumps(self.submission()))
      return
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.submission-', suffix='.json', dir=directory)
    try:
      with os.fdopen(fd, 'w') as f:
        json.dump(self.submission(), f)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
