"""Grid transforms and the ARC canvas encoding shared by the Maze and ARC builders and evaluators.

Dihedral group (spec §6.5), on the last two axes of an array:
  tid 0 identity, 1 rot90 (numpy, counter-clockwise), 2 rot180, 3 rot270, 4 left-right flip,
  5 up-down flip, 6 transpose, 7 anti-transpose (left-right flip of rot90).

ARC encoding (§6.6): a grid of colours 0..9 (at most 30×30) sits at offset (r0, c0) on a 30×30
canvas of PAD = 0, colour c as token c + 2; EOS = 1 marks the row just below the grid (across its
columns) and the column just right of it (across its rows), when those lie on the canvas; the
corner cell is not marked. An augmented ARC puzzle (variant) is named
``<task id>|||t<tid>|||<map>``, ``<map>`` listing the new colour of each colour 0..9; the
transform applies the colour map, then the dihedral transform (they commute).
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)
NUM_DIHEDRAL = 8

PAD, EOS, COLOUR_OFFSET = 0, 1, 2
NUM_COLOURS = 10
CANVAS = 30
ARC_VOCAB = NUM_COLOURS + COLOUR_OFFSET  # 12: PAD, EOS, colours 0..9
VARIANT_SEPARATOR = '|||'


def dihedral(x: np.ndarray, tid: int) -> np.ndarray:
  """Dihedral transform ``tid`` (0..7, table above) of the last two axes of x [..., H, W].

  Returns [..., H, W] for tids 0, 2, 4, 5 and [..., W, H] for the others (a view where numpy
  gives one).
  """
  x = np.asarray(x)
  if tid == 0:
    return x
  if tid in (1, 2, 3):
    return np.rot90(x, k=tid, axes=(-2, -1))
  if tid == 4:
    return np.flip(x, axis=-1)
  if tid == 5:
    return np.flip(x, axis=-2)
  if tid == 6:
    return np.swapaxes(x, -1, -2)
  if tid == 7:
    return np.flip(np.rot90(x, k=1, axes=(-2, -1)), axis=-1)
  raise ValueError(f'dihedral transform id must be in 0..7, got {tid}')


def inverse_dihedral(x: np.ndarray, tid: int) -> np.ndarray:
  """Undoes ``dihedral(., tid)``: ``inverse_dihedral(dihedral(x, t), t) == x``."""
  if not 0 <= tid < NUM_DIHEDRAL:
    raise ValueError(f'dihedral transform id must be in 0..7, got {tid}')
  return dihedral(x, DIHEDRAL_INVERSE[tid])


# ---------------------------------------------------------------------------------------------
# ARC colour maps and variant names


def check_colour_map(colour_map: np.ndarray) -> np.ndarray:
  """Returns the map as uint8 [10]; ValueError unless it is a permutation of 0..9 fixing 0."""
  m = np.asarray(colour_map)
  if m.shape != (NUM_COLOURS,) or sorted(m.tolist()) != list(range(NUM_COLOURS)) or m[0] != 0:
    raise ValueError(f'colour map must permute 0..9 and fix 0 (black), got {m.tolist()}')
  return m.astype(np.uint8)


def augment_grid(grid: np.ndarray, tid: int, colour_map: np.ndarray) -> np.ndarray:
  """Colour map then dihedral transform of a colour grid [H, W] (values 0..9), as the builder."""
  return np.ascontiguousarray(dihedral(np.asarray(colour_map, np.uint8)[grid], tid))


def unaugment_grid(grid: np.ndarray, tid: int, colour_map: np.ndarray) -> np.ndarray:
  """Inverse of ``augment_grid``: inverse dihedral, then the inverse colour map (argsort)."""
  inverse_map = np.argsort(np.asarray(colour_map)).astype(np.uint8)
  return np.ascontiguousarray(inverse_map[inverse_dihedral(grid, tid)])


def variant_name(task_id: str, tid: int, colour_map: np.ndarray) -> str:
  """``<task id>|||t<tid>|||<map>`` (TRM's naming, spec §6.6); tid 0 + identity map too."""
  if VARIANT_SEPARATOR in task_id:
    raise ValueError(f'task id {task_id!r} contains the separator {VARIANT_SEPARATOR!r}')
  m = check_colour_map(colour_map)
  return f'{task_id}{VARIANT_SEPARATOR}t{tid}{VARIANT_SEPARATOR}{"".join(map(str, m))}'


_HRM_VARIANT = re.compile(r'^(.+)_t([0-7])_([0-9]{10})$')


def parse_variant_name(name: str) -> tuple[str, int, np.ndarray]:
  """(task id, tid, colour map uint8 [10]) of a variant name; a bare task id is the identity.

  Reads TRM's ``<id>|||t<tid>|||<map>`` (what we write) and HRM's ``<id>_t<tid>_<map>``, so
  datasets built by either reference repository can be scored.
  """
  parts = name.split(VARIANT_SEPARATOR)
  if len(parts) == 1:
    hrm = _HRM_VARIANT.match(name)
    if hrm:
      task_id, tid, digits = hrm.groups()
      return task_id, int(tid), check_colour_map(np.array([int(c) for c in digits]))
    return name, 0, np.arange(NUM_COLOURS, dtype=np.uint8)
  if len(parts) != 3 or not parts[1].startswith('t') or not parts[1][1:].isdigit():
    raise ValueError(f'not an ARC variant name: {name!r}')
  tid = int(parts[1][1:])
  if not 0 <= tid < NUM_DIHEDRAL or len(parts[2]) != NUM_COLOURS or not parts[2].isdigit():
    raise ValueError(f'not an ARC variant name: {name!r}')
  return parts[0], tid, check_colour_map(np.array([int(c) for c in parts[2]]))


def grid_hash(grid: np.ndarray) -> str:
  """SHA-256 hex digest of a colour grid's shape and bytes (uint8), as the reference hashes."""
  g = np.ascontiguousarray(grid, dtype=np.uint8)
  if g.ndim != 2:
    raise ValueError(f'expected a 2-D grid, got shape {g.shape}')
  return hashlib.sha256(bytes(g.shape) + g.tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# ARC canvas encoding


def check_grid(grid, canvas: int = CANVAS) -> np.ndarray:
  """A JSON/array ARC grid as uint8 [H, W]; ValueError unless 1 <= H, W <= canvas and 0..9."""
  try:
    g = np.asarray(grid)
  except ValueError:  # ragged rows
    raise ValueError('grid rows have different lengths') from None
  if g.ndim != 2 or g.size == 0:
    raise ValueError(f'grid must be a non-empty 2-D list, got shape {g.shape}')
  if g.dtype.kind not in 'iu':
    raise ValueError(f'grid values must be integers, got dtype {g.dtype}')
  if g.shape[0] > canvas or g.shape[1] > canvas:
    raise ValueError(f'grid {g.shape[0]}x{g.shape[1]} exceeds the {canvas}x{canvas} canvas')
  if g.min() < 0 or g.max() >= NUM_COLOURS:
    raise ValueError(f'grid colours must be in 0..9, found {int(g.min())}..{int(g.max())}')
  return g.astype(np.uint8)


def encode_grid(grid: np.ndarray, r0: int = 0, c0: int = 0, canvas: int = CANVAS) -> np.ndarray:
  """Tokens uint8 [canvas·canvas] of a colour grid [H, W] placed at (r0, c0), EOS-marked (§6.6)."""
  g = np.asarray(grid)
  h, w = g.shape
  if r0 < 0 or c0 < 0 or r0 + h > canvas or c0 + w > canvas:
    raise ValueError(f'a {h}x{w} grid at ({r0}, {c0}) does not fit the {canvas}x{canvas} canvas')
  out = np.full((canvas, canvas), PAD, np.uint8)
  out[r0 : r0 + h, c0 : c0 + w] = g + COLOUR_OFFSET
  if r0 + h < canvas:
    out[r0 + h, c0 : c0 + w] = EOS
  if c0 + w < canvas:
    out[r0 : r0 + h, c0 + w] = EOS
  return out.reshape(-1)


def crop(tokens: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
  """The colour grid uint8 [h, w] read back from canvas tokens [canvas·canvas] (spec §7.2).

  The largest top-left rectangle of colour tokens: going down the rows, a row's width is its
  run of colour tokens from column 0, capped by the row above; the rectangle with the largest
  area wins (first on ties). [0, 0] if the top-left token is not a colour. Exact inverse of
  ``encode_grid(g, 0, 0)``.
  """
  t = np.asarray(tokens).reshape(canvas, canvas)
  is_colour = (t >= COLOUR_OFFSET) & (t < COLOUR_OFFSET + NUM_COLOURS)
  # Run length of colour tokens from column 0 in each row, then capped by every row above.
  runs = np.where(is_colour.all(axis=1), canvas, np.argmin(is_colour, axis=1))
  widths = np.minimum.accumulate(runs)
  areas = widths * np.arange(1, canvas + 1)
  rows = int(np.argmax(areas)) + 1
  if areas[rows - 1] == 0:
    return np.zeros((0, 0), np.uint8)
  return (t[:rows, : widths[rows - 1]] - COLOUR_OFFSET).astype(np.uint8)
