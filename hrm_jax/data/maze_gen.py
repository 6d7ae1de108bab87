"""Maze tokens, batched breadth-first search, the path checker and a maze generator (spec §6.4).

Tokens (§6.4): a size×size maze is a row-major string over "# SGo" (wall, free, start, goal,
path), one token per cell: PAD 0, ``#`` 1, space 2, ``S`` 3, ``G`` 4, ``o`` 5 (vocab 6). A
question holds no ``o``; its answer marks the cells strictly between S and G on the shortest path.

Search: ``shortest_paths`` runs a breadth-first search on a batch of grids at once, one frontier
layer per step as array shifts, and counts the shortest paths to every cell (capped), which is how
the generator proves a label is the only optimal path and how ``valid_optimal`` scores predictions
("valid and optimal", §7.1: another optimal path than the label's is also correct).

Generator (``generate_mazes``): the published Maze-Hard set keeps mazes whose shortest path is
longer than 110 moves. Random walls rarely give such paths, so each maze starts as a random
spanning tree of the lattice of even (row, column) cells (a growing-tree walk mixing depth-first
extension, which makes long corridors, with extension of a random earlier cell); the walls between
lattice cells that the tree did not open are then opened with a small per-maze probability, so most
mazes have loops and more than one route. S is a random open cell and G a random cell whose
distance from S exceeds ``min_path_len`` and to which exactly one shortest path leads. For an even
size the lattice fills size - 1 rows and columns and a random side keeps a wall strip. Changing
what this module generates must bump ``maze.GENERATOR_VERSION`` so cached datasets are rebuilt.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Optional

import numpy as np

CHARSET = '# SGo'
PAD, WALL, FREE, START, GOAL, PATH = range(6)
VOCAB_SIZE = len(CHARSET) + 1

# Character code (< 128) -> token; 0 marks a character outside CHARSET.
CODE_TO_TOKEN = np.zeros(128, np.uint8)
CODE_TO_TOKEN[[ord(c) for c in CHARSET]] = np.arange(1, VOCAB_SIZE)

_NEWEST_PROB = (0.7, 1.0)  # growing tree: chance to extend the newest cell (1 = depth-first)
_LOOP_PROB = (0.0, 0.08)  # chance that each wall the tree kept between lattice cells is opened
_MAX_CELLS_PER_BATCH = 1 << 22  # bounds the BFS working arrays (about 40 MB at 4M cells)
_MIN_ATTEMPTS = 1000


# ---------------------------------------------------------------------------------------------
# Encoding


def codes_to_tokens(codes: np.ndarray) -> np.ndarray:
  """Tokens (uint8, same shape) of an integer array of character codes; 0 where the character is
  not one of "# SGo"."""
  codes = np.asarray(codes)
  return np.where(codes < 128, CODE_TO_TOKEN[np.minimum(codes, 127)], 0).astype(np.uint8)


def encode(strings: Sequence[str]) -> np.ndarray:
  """uint8 tokens [n, L] of n strings of L characters from "# SGo" (row-major grids).

  ValueError naming the string (0-based index) and the 1-based position of a bad character, or
  the string whose length differs from the first's.
  """
  strings = list(strings)
  if not strings:
    return np.zeros((0, 0), np.uint8)
  length = len(strings[0])
  for i, s in enumerate(strings):
    if len(s) != length:
      raise ValueError(f'maze string {i} has {len(s)} characters, expected {length}')
  if not length:
    return np.zeros((len(strings), 0), np.uint8)
  codes = np.array(strings, dtype=f'<U{length}').view(np.uint32)
  tokens = codes_to_tokens(codes.reshape(len(strings), length))
  if (tokens == PAD).any():
    i, j = np.argwhere(tokens == PAD)[0]
    raise ValueError(
      f'maze string {i}: invalid character {strings[i][j]!r} at position {j + 1} '
      f'(allowed: {CHARSET!r})'
    )
  return tokens


def decode(tokens: np.ndarray) -> list[str]:
  """The "# SGo" strings of tokens [n, L] (or one [L] row, giving a list of one string).

  ValueError for a token outside 1..5 (PAD has no character).
  """
  t = np.asarray(tokens)
  t = t.reshape(1, -1) if t.ndim == 1 else t
  if t.ndim != 2:
    raise ValueError(f'expected tokens [n, L], got shape {t.shape}')
  bad = (t < WALL) | (t > PATH)
  if bad.any():
    i, j = np.argwhere(bad)[0]
    raise ValueError(f'row {i}: token {t[i, j]} at position {j + 1} is not one of 1..5')
  chars = np.array(list(CHARSET))
  return [''.join(chars[row - 1]) for row in t.astype(np.int64)]


def grid_size(seq_len: int) -> int:
  """Side of a square grid of ``seq_len`` cells; ValueError unless seq_len is a square > 0."""
  size = math.isqrt(seq_len)
  if seq_len < 1 or size * size != seq_len:
    raise ValueError(f'{seq_len} cells do not form a square grid')
  return size


# ---------------------------------------------------------------------------------------------
# Breadth-first search


def shortest_paths(
  open_cells: np.ndarray,
  start: np.ndarray,
  cap: int = 2,
  goal: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Breadth-first search from one start cell in each of n grids (4-connected moves).

  open_cells: bool [n, H, W], True where a cell may be entered; start: int [n, 2] (row, column),
  treated as open. Returns (dist int32 [n, H, W], the number of moves from the start, -1 where
  unreachable; count uint8 [n, H, W], the number of distinct shortest paths, capped at ``cap``
  (1..63), 0 where unreachable). ``count == 1`` at a cell proves its shortest path is unique.
  With ``goal`` (int [n, 2]) the search stops once every row's goal is reached: then only cells
  no farther than the farthest goal are guaranteed to be labelled (the rest may read -1).
  """
  open_ = np.asarray(open_cells, bool)
  start = np.asarray(start, np.int64).reshape(-1, 2)
  if goal is not None:
    goal = np.asarray(goal, np.int64).reshape(-1, 2)
  if open_.ndim != 3 or len(start) != len(open_):
    raise ValueError(
      f'expected open_cells [n, H, W] and start [n, 2], got {open_.shape}, {start.shape}'
    )
  if not 1 <= cap <= 63:  # 4 neighbours * cap must fit the uint8 sums
    raise ValueError(f'cap must be in 1..63, got {cap}')
  n, h, w = open_.shape
  rows = np.arange(n)
  # The frontier's path counts live inside a zero border, so the four neighbour sums are slices.
  frontier = np.zeros((n, h + 2, w + 2), np.uint8)
  frontier[rows, start[:, 0] + 1, start[:, 1] + 1] = 1
  inner = frontier[:, 1:-1, 1:-1]
  count = inner.copy()
  dist = np.full((n, h, w), -1, np.int32)
  dist[rows, start[:, 0], start[:, 1]] = 0
  unvisited = open_.copy()
  unvisited[rows, start[:, 0], start[:, 1]] = False
  sums = np.empty((n, h, w), np.uint8)
  new = np.empty((n, h, w), bool)
  step = 0
  while True:
    step += 1
    np.add(frontier[:, :-2, 1:-1], frontier[:, 2:, 1:-1], out=sums)
    sums += frontier[:, 1:-1, :-2]
    sums += frontier[:, 1:-1, 2:]
    np.logical_and(sums, unvisited, out=new)
    if not new.any():
      return dist, count
    np.putmask(dist, new, step)
    np.minimum(sums, cap, out=sums)
    np.multiply(sums, new, out=inner)
    count += inner
    unvisited ^= new
    if goal is not None and (dist[rows, goal[:, 0], goal[:, 1]] >= 0).all():
      return dist, count


def _neighbours_in(mask: np.ndarray) -> np.ndarray:
  """uint8 [n, H, W]: how many of each cell's 4 neighbours are in the bool set ``mask``."""
  m = mask.astype(np.uint8)
  out = np.zeros_like(m)
  out[:, 1:] += m[:, :-1]
  out[:, :-1] += m[:, 1:]
  out[:, :, 1:] += m[:, :, :-1]
  out[:, :, :-1] += m[:, :, 1:]
  return out


def valid_optimal(questions: np.ndarray, predictions: np.ndarray) -> np.ndarray:
  """bool [n]: whether each prediction is a valid and optimal solution of its question.

  questions, predictions: integer tokens [n, L], L = size² (row-major square grids). True iff the
  question is well formed (only tokens 1..4, one S, one G), the prediction equals it on every
  cell except free cells marked ``o``, those ``o`` cells with S and G form one simple 4-connected
  path from S to G (S and G have one neighbour on it, each ``o`` two), and the path's moves equal
  the shortest S-G distance. Any optimal path passes, not only the label's; garbage (PAD, extra S,
  no path, tokens out of range) gives False. ValueError only for mismatched or non-square shapes.
  """
  q, p = np.asarray(questions), np.asarray(predictions)
  if q.ndim != 2 or q.shape != p.shape:
    raise ValueError(f'expected questions and predictions [n, L], got {q.shape}, {p.shape}')
  n, length = q.shape
  size = grid_size(length)
  is_s, is_g, on = q == START, q == GOAL, p == PATH
  ok = (is_s.sum(1) == 1) & (is_g.sum(1) == 1) & ((q >= WALL) & (q <= GOAL)).all(1)
  ok &= ((p == q) | (on & (q == FREE))).all(1)
  grid = (n, size, size)
  deg = _neighbours_in((on | is_s | is_g).reshape(grid)).reshape(n, length)
  s_at, g_at = is_s.argmax(1), is_g.argmax(1)
  rows = np.arange(n)
  ok &= (deg[rows, s_at] == 1) & (deg[rows, g_at] == 1) & ((deg == 2) | ~on).all(1)
  # With these degrees the S component is a simple S-G path, and any other o cells would form
  # loops; a count of o cells equal to the shortest distance - 1 excludes both detours and loops.
  check = np.flatnonzero(ok)
  if len(check):
    open_ = (q[check] != WALL).reshape(len(check), size, size)
    start = np.stack(np.divmod(s_at[check], size), 1)
    goal = np.stack(np.divmod(g_at[check], size), 1)
    dist, _ = shortest_paths(open_, start, cap=1, goal=goal)
    d = dist.reshape(len(check), length)[np.arange(len(check)), g_at[check]]
    ok[check] = (d > 0) & (on[check].sum(1) == d - 1)
  return ok


# ---------------------------------------------------------------------------------------------
# Generator


def _tree(m: int, newest_prob: float, rnd: random.Random) -> np.ndarray:
  """bool [2m - 1, 2m - 1]: the open cells of a random spanning tree of an m×m lattice.

  Lattice cell (r, c) sits at (2r, 2c) and a tree edge opens the cell between its ends. The
  growing-tree walk extends the newest cell with probability ``newest_prob``, else a random one.
  """
  n = 2 * m - 1
  cells = [False] * (n * n)
  visited = [False] * (m * m)
  first = int(rnd.random() * m * m)
  visited[first] = True
  cells[(first // m) * 2 * n + (first % m) * 2] = True
  active = [first]
  while active:
    i = len(active) - 1 if rnd.random() < newest_prob else int(rnd.random() * len(active))
    c = active[i]
    r, k = divmod(c, m)
    options = []
    if r > 0 and not visited[c - m]:
      options.append(c - m)
    if r < m - 1 and not visited[c + m]:
      options.append(c + m)
    if k > 0 and not visited[c - 1]:
      options.append(c - 1)
    if k < m - 1 and not visited[c + 1]:
      options.append(c + 1)
    if not options:
      active[i] = active[-1]
      active.pop()
      continue
    d = options[int(rnd.random() * len(options))]
    visited[d] = True
    active.append(d)
    r2, k2 = divmod(d, m)
    cells[(r + r2) * n + (k + k2)] = True
    cells[2 * r2 * n + 2 * k2] = True
  return np.array(cells, bool).reshape(n, n)


def _lattice_side(size: int) -> int:
  """Lattice cells per side of a size×size maze: (size + 1) / 2 if odd, else size / 2."""
  return (size + 1) // 2


def max_path_len(size: int) -> int:
  """An upper bound on the shortest-path length (moves) of any size×size maze ``generate_mazes``
  can make: 2·m² for m lattice cells per side."""
  # Paths alternate lattice cells and the cells between them, and visit each lattice cell once.
  return 2 * _lattice_side(size) ** 2


def _random_cell(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """int [n, 2]: a uniformly random True cell of each bool [n, H, W] grid (any cell if none)."""
  n, h, w = mask.shape
  scores = rng.random((n, h * w)) + mask.reshape(n, h * w)  # True cells outrank every False cell
  return np.stack(np.divmod(scores.argmax(1), w), 1)


def _candidates(
  batch: int, size: int, min_path_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """(questions, answers) uint8 [k, size²] of the k <= batch random mazes that meet the
  constraint: shortest S-G path longer than ``min_path_len`` moves and unique (BFS-verified)."""
  m = _lattice_side(size)
  span = 2 * m - 1
  rnd = random.Random(int(rng.integers(1 << 63)))
  newest = rng.uniform(*_NEWEST_PROB, size=batch)
  trees = np.stack([_tree(m, float(newest[i]), rnd) for i in range(batch)])
  # Lattice edges sit where exactly one coordinate is odd; opening closed ones makes loops.
  edge = (np.add.outer(np.arange(span), np.arange(span)) % 2) == 1
  loop_prob = rng.uniform(*_LOOP_PROB, size=batch)
  trees |= edge & (rng.random(trees.shape) < loop_prob[:, None, None])
  open_ = np.zeros((batch, size, size), bool)
  offsets = rng.integers(0, size - span + 1, size=(batch, 2))
  for r0 in range(size - span + 1):
    for c0 in range(size - span + 1):
      sel = (offsets[:, 0] == r0) & (offsets[:, 1] == c0)
      open_[sel, r0 : r0 + span, c0 : c0 + span] = trees[sel]

  start = _random_cell(open_, rng)
  dist, count = shortest_paths(open_, start)
  reach = (dist > min_path_len) & (count == 1)
  keep = np.flatnonzero(reach.any(axis=(1, 2)))
  k, rows = len(keep), np.arange(len(keep))
  if not k:
    return np.zeros((0, size * size), np.uint8), np.zeros((0, size * size), np.uint8)
  open_, start, dist, reach = open_[keep], start[keep], dist[keep], reach[keep]
  goal = _random_cell(reach, rng)
  back, _ = shortest_paths(open_, goal, goal=start)  # cells past the farthest S are not needed
  length = dist[rows, goal[:, 0], goal[:, 1]]
  # With one shortest path, the cells on it are exactly those with d(S, c) + d(c, G) = d(S, G).
  on_path = (dist >= 0) & (back >= 0) & (dist + back == length[:, None, None])
  if not (on_path.sum(axis=(1, 2)) == length + 1).all():
    raise RuntimeError('maze generator: a verified unique path has the wrong number of cells')
  swap = rng.random(k) < 0.5  # S was drawn first; swapping keeps the two roles symmetric
  s_cell = np.where(swap[:, None], goal, start)
  g_cell = np.where(swap[:, None], start, goal)
  q = np.where(open_, FREE, WALL).astype(np.uint8)
  q[rows, s_cell[:, 0], s_cell[:, 1]] = START
  q[rows, g_cell[:, 0], g_cell[:, 1]] = GOAL
  a = np.where(on_path & (q == FREE), PATH, q).astype(np.uint8)
  return q.reshape(k, -1), a.reshape(k, -1)


def generate_mazes(
  num: int, size: int, min_path_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Generates ``num`` distinct size×size mazes with a unique shortest path of > min_path_len moves.

  Returns (questions, answers), uint8 tokens [num, size²] (row-major): the question has walls,
  free cells, one S and one G; the answer marks the cells strictly between S and G on the only
  shortest path ``o`` (path length = number of ``o`` cells + 1). Each label is proved the unique
  optimal path by BFS path counting and re-checked with ``valid_optimal``. Deterministic given
  ``rng``'s state. ValueError for size < 3, a negative count or length, a length no maze of this
  size can exceed, or when too few mazes meet the constraint within a bounded number of attempts.
  """
  for name, value, lo in (('num', num, 0), ('size', size, 3), ('min_path_len', min_path_len, 0)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
      raise ValueError(f'{name} must be an integer >= {lo}, got {value!r}')
  if min_path_len >= max_path_len(size):
    raise ValueError(
      f'no {size}x{size} maze of this generator has a shortest path longer than '
      f'{min_path_len} moves (at most {max_path_len(size)})'
    )
  qs, ans, seen = [], [], set()
  found = attempts = 0
  rate = 0.5  # a first guess at the acceptance rate, to size the first batch
  max_attempts = _MIN_ATTEMPTS + 50 * num
  while found < num:
    if attempts >= max_attempts or (attempts >= _MIN_ATTEMPTS and found == 0):
      raise ValueError(
        f'only {found} of {num} distinct {size}x{size} mazes with a unique shortest path longer '
        f'than {min_path_len} moves after {attempts} attempts; lower min_path_len or raise size'
      )
    batch = int(np.clip(1.2 * (num - found) / rate + 8, 8, _MAX_CELLS_PER_BATCH // size**2 + 1))
    batch = min(batch, max_attempts - attempts)
    q, a = _candidates(batch, size, min_path_len, rng)
    attempts += batch
    for i in range(len(q)):
      key = q[i].tobytes()
      if key not in seen and found < num:
        seen.add(key)
        qs.append(q[i])
        ans.append(a[i])
        found += 1
    rate = max(found / attempts, 0.01)
  if not num:
    return np.zeros((0, size * size), np.uint8), np.zeros((0, size * size), np.uint8)
  questions, answers = np.stack(qs), np.stack(ans)
  if not valid_optimal(questions, answers).all():
    raise RuntimeError('maze generator: a label failed the valid_optimal re-check')
  return questions, answers
