"""Tests of hrm_jax.data.maze and maze_gen: tokens, BFS, the path checker, generator, builders."""

import collections
import json
import os

import ml_collections
import numpy as np
import pytest

from hrm_jax.config import ConfigError
from hrm_jax.data import build, grids, maze, maze_gen
from hrm_jax.data import format as fmt

WALL, FREE, START, GOAL, PATH = (
  maze_gen.WALL,
  maze_gen.FREE,
  maze_gen.START,
  maze_gen.GOAL,
  maze_gen.PATH,
)


def _bfs(grid, start):
  """Plain-Python BFS over the non-wall cells of an [H, W] token grid: (dist, count) dicts, count
  = the exact number of shortest paths from start. Independent of the module's search."""
  h, w = len(grid), len(grid[0])
  dist, count = {start: 0}, {start: 1}
  queue = collections.deque([start])
  while queue:
    r, c = queue.popleft()
    for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
      if not (0 <= nr < h and 0 <= nc < w) or grid[nr][nc] == WALL:
        continue
      if (nr, nc) not in dist:
        dist[nr, nc], count[nr, nc] = dist[r, c] + 1, count[r, c]
        queue.append((nr, nc))
      elif dist[nr, nc] == dist[r, c] + 1:
        count[nr, nc] += count[r, c]
  return dist, count


def _rows(*rows):
  """Tokens [1, L] of one maze given as its row strings."""
  return maze_gen.encode([''.join(rows)])


def _check_mazes(q, a, size, min_path_len):
  """Asserts the generator's contract on (questions, answers) [n, size²], with `_bfs`."""
  assert q.dtype == a.dtype == np.uint8 and q.shape == a.shape and q.shape[1] == size * size
  assert ((q == START).sum(1) == 1).all() and ((q == GOAL).sum(1) == 1).all()
  assert np.isin(q, (WALL, FREE, START, GOAL)).all()
  np.testing.assert_array_equal(np.where(a == PATH, FREE, a), q)  # equal off the path
  assert len({row.tobytes() for row in q}) == len(q)
  for k in range(len(q)):
    grid = q[k].reshape(size, size)
    s = tuple(int(v) for v in np.argwhere(grid == START)[0])
    g = tuple(int(v) for v in np.argwhere(grid == GOAL)[0])
    from_s, count = _bfs(grid, s)
    from_g, _ = _bfs(grid, g)
    d = from_s[g]
    assert d > min_path_len and count[g] == 1
    # The o cells are exactly the cells strictly between S and G on the (only) shortest path.
    on_path = {c for c in from_s if c in from_g and from_s[c] + from_g[c] == d} - {s, g}
    marked = {tuple(int(v) for v in c) for c in np.argwhere(a[k].reshape(size, size) == PATH)}
    assert marked == on_path and len(marked) == d - 1


@pytest.fixture(scope='module')
def small():
  """12 generated 7x7 mazes with shortest paths > 6 moves."""
  return maze_gen.generate_mazes(12, 7, 6, np.random.default_rng(0))


@pytest.fixture(scope='module')
def big():
  """2 generated 30x30 mazes with shortest paths > 110 moves (the Maze-Hard constraint)."""
  return maze_gen.generate_mazes(2, 30, 110, np.random.default_rng(1))


# ---------------------------------------------------------------------------------------------
# Tokens and search


def test_encode_decode():
  t = maze_gen.encode(['# SGo', 'oGS #'])
  np.testing.assert_array_equal(t, [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
  assert t.dtype == np.uint8 and maze_gen.decode(t) == ['# SGo', 'oGS #']
  assert maze_gen.decode(t[0]) == ['# SGo']
  with pytest.raises(ValueError, match=r"maze string 1: invalid character 'x' at position 3"):
    maze_gen.encode(['#   ', '# x '])
  with pytest.raises(ValueError, match='maze string 1 has 3 characters, expected 4'):
    maze_gen.encode(['#   ', '#  '])
  with pytest.raises(ValueError, match='token 0 at position 2'):
    maze_gen.decode(np.array([[1, 0, 2, 2]]))
  assert maze_gen.grid_size(900) == 30
  with pytest.raises(ValueError, match='square'):
    maze_gen.grid_size(899)


def test_shortest_paths_matches_plain_bfs():
  rng = np.random.default_rng(3)
  open_ = rng.random((20, 6, 7)) < 0.75
  start = np.stack([rng.integers(0, 6, 20), rng.integers(0, 7, 20)], 1)
  for cap in (1, 2, 63):
    dist, count = maze_gen.shortest_paths(open_, start, cap=cap)
    assert dist.shape == count.shape == (20, 6, 7)
    for k in range(20):
      grid = np.where(open_[k], FREE, WALL)
      ref_dist, ref_count = _bfs(grid, tuple(start[k]))
      want_dist = np.full((6, 7), -1)
      want_count = np.zeros((6, 7), int)
      for c, d in ref_dist.items():
        want_dist[c], want_count[c] = d, min(ref_count[c], cap)
      np.testing.assert_array_equal(dist[k], want_dist)
      np.testing.assert_array_equal(count[k], want_count)
  dist, count = maze_gen.shortest_paths(np.ones((1, 3, 3), bool), np.array([[0, 0]]), cap=63)
  assert dist[0, 2, 2] == 4 and count[0, 2, 2] == 6  # C(4, 2) monotone lattice paths
  # With goals the search may stop early, but never before every goal has its distance.
  goal = np.array([[0, 1], [2, 2]])
  full, _ = maze_gen.shortest_paths(np.ones((2, 4, 4), bool), np.zeros((2, 2), int))
  part, _ = maze_gen.shortest_paths(np.ones((2, 4, 4), bool), np.zeros((2, 2), int), goal=goal)
  np.testing.assert_array_equal(np.where(full <= 4, full, -1), part)


# ---------------------------------------------------------------------------------------------
# Generator


def test_generator_contract(small, big):
  _check_mazes(*small, size=7, min_path_len=6)
  _check_mazes(*big, size=30, min_path_len=110)
  again = maze_gen.generate_mazes(12, 7, 6, np.random.default_rng(0))
  np.testing.assert_array_equal(again[0], small[0])
  np.testing.assert_array_equal(again[1], small[1])
  other = maze_gen.generate_mazes(12, 7, 6, np.random.default_rng(5))
  assert not np.array_equal(other[0], small[0])


def test_generator_makes_loops():
  q, a = maze_gen.generate_mazes(40, 11, 10, np.random.default_rng(2))
  _check_mazes(q, a, size=11, min_path_len=10)
  open_ = (q != WALL).reshape(-1, 11, 11)
  edges = (open_[:, 1:] & open_[:, :-1]).sum((1, 2)) + (open_[:, :, 1:] & open_[:, :, :-1]).sum(
    (1, 2)
  )
  cycles = edges - open_.sum((1, 2)) + 1  # cyclomatic number of the connected open cells
  assert (cycles >= 0).all() and (cycles > 0).any()


def test_generator_errors():
  with pytest.raises(ValueError, match='size must be an integer >= 3'):
    maze_gen.generate_mazes(1, 2, 0, np.random.default_rng(0))
  with pytest.raises(ValueError, match='min_path_len must be'):
    maze_gen.generate_mazes(1, 5, -1, np.random.default_rng(0))
  with pytest.raises(ValueError, match='longer than 18 moves'):
    maze_gen.generate_mazes(1, 5, 18, np.random.default_rng(0))
  with pytest.raises(ValueError, match='only 0 of 1 distinct 5x5 mazes'):
    maze_gen.generate_mazes(1, 5, 17, np.random.default_rng(0))
  q, a = maze_gen.generate_mazes(0, 5, 4, np.random.default_rng(0))
  assert q.shape == a.shape == (0, 25)


# ---------------------------------------------------------------------------------------------
# Path checker


def test_valid_optimal_accepts_labels(small, big):
  assert maze_gen.valid_optimal(*small).all()
  assert maze_gen.valid_optimal(*big).all()
  q, a = small
  assert not maze_gen.valid_optimal(q, q).any()  # no path at all
  assert maze_gen.valid_optimal(q[:0], a[:0]).shape == (0,)


def test_valid_optimal_two_optimal_paths():
  q = _rows('S  ', ' # ', '  G')
  over_top = _rows('Soo', ' #o', '  G')
  under = _rows('S  ', 'o# ', 'ooG')
  both = _rows('Soo', 'o#o', 'ooG')
  got = maze_gen.valid_optimal(np.repeat(q, 3, 0), np.concatenate([over_top, under, both]))
  np.testing.assert_array_equal(got, [True, True, False])


def test_valid_optimal_rejections():
  q = _rows('S   G', ' ### ', '     ', '#####', '#####')
  cases = [
    (('SoooG', ' ### ', '     ', '#####', '#####'), True),
    (('S   G', 'o###o', 'ooooo', '#####', '#####'), False),  # valid but 8 moves, not 4
    (('So oG', ' ### ', '     ', '#####', '#####'), False),  # broken path
    (('SoooG', ' ### ', '  o  ', '#####', '#####'), False),  # extra o blob
    (('SoooG', ' ### ', '     ', '#o###', '#####'), False),  # o on a wall
    ((' SooG', ' ### ', '     ', '#####', '#####'), False),  # S moved
    (('SoooG', 'S### ', '     ', '#####', '#####'), False),  # a second S
  ]
  preds = np.concatenate([_rows(*rows) for rows, _ in cases])
  got = maze_gen.valid_optimal(np.repeat(q, len(cases), 0), preds)
  np.testing.assert_array_equal(got, [want for _, want in cases])
  # A shortcut through a wall is rejected, however short.
  q2 = _rows('S#G', '   ', '###')
  preds2 = np.concatenate([_rows('SoG', '   ', '###'), _rows('S#G', 'ooo', '###')])
  np.testing.assert_array_equal(maze_gen.valid_optimal(np.repeat(q2, 2, 0), preds2), [False, True])
  # S next to G: the empty path is optimal. A walled-off G has no valid answer.
  assert maze_gen.valid_optimal(_rows('SG ', '   ', '   '), _rows('SG ', '   ', '   '))[0]
  walled = _rows('S #', '  #', '##G')
  assert not maze_gen.valid_optimal(walled, walled)[0]


def test_valid_optimal_garbage(small):
  q, a = small
  n, length = q.shape
  rng = np.random.default_rng(0)
  garbage = [
    np.zeros((n, length), np.int32),  # PAD
    rng.integers(-100, 300, (n, length)),  # out-of-range tokens
    rng.integers(0, 6, (n, length)),
    np.full((n, length), PATH),
  ]
  for preds in garbage:
    assert not maze_gen.valid_optimal(q, preds).any()
  bad_questions = np.where(q == GOAL, START, q)  # two S, no G
  assert not maze_gen.valid_optimal(bad_questions, a).any()
  assert not maze_gen.valid_optimal(np.zeros_like(q), a).any()
  with pytest.raises(ValueError, match='square'):
    maze_gen.valid_optimal(q[:, :-1], a[:, :-1])
  with pytest.raises(ValueError, match='expected questions and predictions'):
    maze_gen.valid_optimal(q, a[:-1])


# ---------------------------------------------------------------------------------------------
# CSV source


def _write_csv(path, q, a, header='source,question,answer,rating'):
  rows = [header]
  for qs, ans in zip(maze_gen.decode(q), maze_gen.decode(a)):
    rows.append(f'gen,{qs},{ans},0')
  path.write_text('\n'.join(rows) + '\n')
  return str(path)


@pytest.fixture()
def csv_dir(tmp_path, small):
  q, a = small
  d = tmp_path / 'csv'
  d.mkdir()
  _write_csv(d / 'train.csv', q[:8], a[:8])
  _write_csv(d / 'test.csv', q[8:], a[8:])
  return str(d)


def test_parse_csv(tmp_path, csv_dir, small, big):
  q, a = maze.parse_csv(os.path.join(csv_dir, 'train.csv'))
  np.testing.assert_array_equal(q, small[0][:8])
  np.testing.assert_array_equal(a, small[1][:8])
  q, a = maze.parse_csv(_write_csv(tmp_path / 'big.csv', *big))
  assert q.shape == (2, 900) and q.dtype == np.uint8
  np.testing.assert_array_equal(a, big[1])


def _error(tmp_path, text):
  path = tmp_path / 'bad.csv'
  path.write_text(text)
  with pytest.raises(fmt.DatasetError) as err:
    maze.parse_csv(str(path))
  assert str(path) in str(err.value)
  return str(err.value)


def test_csv_errors(tmp_path):
  head = 'source,question,answer,rating'
  good = 'x,S   G,SoooG,0'

  def bad(line3, line2=good):
    return _error(tmp_path, '\n'.join([head, line2, line3]) + '\n')

  # A 1x5 row is not square; use 2x2 mazes for the row checks below.
  assert 'bad.csv:2: question has 5 characters, not a square grid' in bad(good)
  ok = 'x,S  G,SooG,0'
  assert 'expected header source,question,answer,rating' in _error(tmp_path, 'a,b,c\n' + ok)
  assert 'bad.csv:3: expected 4 fields, found 3' in bad('x,S  G,SooG', ok)
  assert 'bad.csv:3: answer has 5 characters, expected 4' in bad('x,S  G,Soo G,0', ok)
  assert 'bad.csv:3: question has 3 characters' in bad('x,S G,SoG ,0', ok)
  assert "bad.csv:3: invalid character 'x' at position 2 of the question" in bad(
    'x,Sx G,SooG,0', ok
  )
  assert "bad.csv:3: invalid character '.' at position 4 of the answer" in bad('x,S  G,Soo.,0', ok)
  assert "bad.csv:3: question has a path cell 'o' at position 2" in bad('x,So G,SooG,0', ok)
  assert "bad.csv:3: question has 2 'S' cells" in bad('x,S SG,SoSG,0', ok)
  assert "bad.csv:3: question has 0 'G' cells" in bad('x,S   ,Sooo,0', ok)
  assert "bad.csv:3: answer has ' ' where the question has '#'" in bad('x,S# G,S  G,0', ok)
  assert "answer has 'o' where the question has '#' at position 2 (row 1, column 2)" in bad(
    'x,S# G,SooG,0', ok
  )
  assert 'bad.csv: no mazes' in _error(tmp_path, head + '\n')
  with pytest.raises(fmt.DatasetError, match='does not exist'):
    maze.parse_csv(str(tmp_path / 'none.csv'))


# ---------------------------------------------------------------------------------------------
# Builders


def test_build_from_csv_plain(tmp_path, csv_dir, small):
  out = maze.build_from_csv(str(tmp_path / 'ds'), csv_dir=csv_dir)
  train, test = fmt.load_split(out, 'train'), fmt.load_split(out, 'test')
  assert (train.num_examples, train.num_puzzles, train.num_groups) == (8, 8, 8)
  assert train.metadata == maze.metadata(8, 8, 49) and test.num_groups == 4
  assert train.metadata.vocab_size == 6 and train.metadata.num_puzzle_identifiers == 1
  np.testing.assert_array_equal(train.inputs, small[0][:8])
  np.testing.assert_array_equal(test.labels, small[1][8:])
  assert (train.puzzle_identifiers == 0).all()
  assert json.load(open(os.path.join(out, 'identifiers.json'))) == ['<blank>']
  info = json.load(open(os.path.join(out, 'build.json')))
  assert info['train']['labels_valid_optimal'] == 8 and info['test']['mazes'] == 4


def test_build_from_csv_aug_and_subsample(tmp_path, csv_dir, small):
  out = maze.build_from_csv(str(tmp_path / 'ds'), csv_dir=csv_dir, subsample_size=3, aug=True)
  train, test = fmt.load_split(out, 'train'), fmt.load_split(out, 'test')
  assert (train.num_examples, train.num_puzzles, train.num_groups) == (24, 24, 3)
  np.testing.assert_array_equal(train.group_indices, [0, 8, 16, 24])
  assert test.num_examples == test.num_groups == 4  # test is never augmented
  originals = {row.tobytes(): k for k, row in enumerate(small[0][:8].astype(np.int32))}
  for g in range(3):
    k = originals[train.inputs[8 * g].tobytes()]  # transform 0 is the original maze
    for t in range(8):
      for arr, src in ((train.inputs, small[0]), (train.labels, small[1])):
        want = grids.dihedral(src[k].reshape(7, 7), t).reshape(49)
        np.testing.assert_array_equal(arr[8 * g + t], want)
  again = maze.build_from_csv(str(tmp_path / 'ds2'), csv_dir=csv_dir, subsample_size=3, aug=True)
  np.testing.assert_array_equal(fmt.load_split(again).inputs, train.inputs)


def test_build_from_csv_size_mismatch(tmp_path, small, big):
  d = tmp_path / 'mixed'
  d.mkdir()
  _write_csv(d / 'train.csv', *small)
  _write_csv(d / 'test.csv', *big)
  with pytest.raises(fmt.DatasetError, match='test.csv: mazes have 900 cells'):
    maze.build_from_csv(str(tmp_path / 'ds'), csv_dir=str(d))
  assert not (tmp_path / 'ds').exists()


def test_build_generated_drops_test_duplicates(tmp_path, monkeypatch, small):
  q, a = small
  rot_q, rot_a = maze.augment_dihedral(q[:1], a[:1])
  fake = {
    6: (q[:6], a[:6]),  # train
    5: (np.concatenate([rot_q[3:4], q[5:6], q[6:9]]), np.concatenate([rot_a[3:4], a[5:6], a[6:9]])),
  }
  monkeypatch.setattr(maze_gen, 'generate_mazes', lambda num, *_: fake[num])
  out = maze.build_generated(str(tmp_path / 'ds'), 6, 5, 7, 6, aug=False, seed=0)
  info = json.load(open(os.path.join(out, 'generator.json')))
  assert info['test_dropped_duplicates'] == 2 and info['test']['mazes'] == 3
  np.testing.assert_array_equal(fmt.load_split(out, 'test').inputs, q[6:9])


# ---------------------------------------------------------------------------------------------
# prepare


def _gen_cfg(**overrides):
  fields = dict(
    name='maze',
    path='',
    source='generate',
    csv_dir='',
    hf_repo='sapientinc/maze-30x30-hard-1k',
    subsample_size=0,
    aug=True,
    seed=0,
    num_train=10,
    num_test=5,
    maze_size=7,
    min_path_len=6,
  )
  return ml_collections.ConfigDict(fields | overrides)  # built whole: no type-safe override


def test_prepare_generates_once_and_caches(tmp_path):
  out = maze.prepare(_gen_cfg(), str(tmp_path))
  assert out == str(tmp_path / 'data' / 'maze-gen-n10-t5-z7-p6-aug1-s0')
  train, test = fmt.load_split(out, 'train'), fmt.load_split(out, 'test')
  assert (train.num_puzzles, train.num_groups) == (80, 10) and test.num_puzzles <= 5
  assert train.metadata.seq_len == 49 and train.metadata.vocab_size == 6
  assert maze_gen.valid_optimal(train.inputs, train.labels).all()  # dihedral keeps optimality
  info = json.load(open(os.path.join(out, 'generator.json')))
  assert info['version'] == maze.GENERATOR_VERSION and info['params']['size'] == 7
  assert info['train']['mazes'] == 10 and info['train']['path_len']['min'] > 6
  stamp = os.stat(os.path.join(out, 'train', 'dataset.json')).st_mtime_ns
  assert maze.prepare(_gen_cfg(), str(tmp_path)) == out
  assert os.stat(os.path.join(out, 'train', 'dataset.json')).st_mtime_ns == stamp
  os.remove(os.path.join(out, 'test', 'all__inputs.npy'))  # a corrupt copy is rebuilt
  assert maze.prepare(_gen_cfg(), str(tmp_path)) == out
  fmt.load_split(out, 'test')
  assert sorted(os.listdir(tmp_path / 'data')) == [os.path.basename(out)]
  assert maze.prepare(_gen_cfg(path=out), '/nonexistent') == out


def test_prepare_csv_source(tmp_path, csv_dir):
  cfg = _gen_cfg(source='csv', csv_dir=csv_dir, aug=False, subsample_size=5)
  out = maze.prepare(cfg, str(tmp_path))
  assert os.path.basename(out).startswith('maze-csv-dir') and out.endswith('-sub5-aug0-s0')
  assert fmt.load_split(out).num_puzzles == 5


def test_prepare_errors(tmp_path):
  with pytest.raises(fmt.DatasetError, match='missing_ds'):
    maze.prepare(_gen_cfg(path=str(tmp_path / 'missing_ds')), str(tmp_path))
  bad = [
    (dict(source='web'), 'data.source'),
    (dict(aug=1), 'data.aug'),
    (dict(seed=-1), 'data.seed'),
    (dict(maze_size=2), 'data.maze_size'),
    (dict(min_path_len=-1), 'data.min_path_len'),
    (dict(min_path_len=32), 'data.min_path_len'),
    (dict(num_train=0), 'data.num_train'),
    (dict(num_test=1.5), 'data.num_test'),
    (dict(source='csv', subsample_size=-1), 'data.subsample_size'),
  ]
  for overrides, field in bad:
    with pytest.raises(ConfigError, match=field):
      maze.prepare(_gen_cfg(**overrides), str(tmp_path))
  assert not (tmp_path / 'data').exists()


def test_folder_names_builder_args_and_field_errors_are_stable(tmp_path):
  # Cached datasets are found by folder name, so these names (and the builder arguments behind
  # them) must survive any rewrite of the config plumbing.
  cfg = _gen_cfg(num_train=2000, num_test=500, maze_size=5, min_path_len=4)
  name, builder = build.plan_source(cfg, maze.SOURCES['generate'])
  assert name == 'maze-gen-n2000-t500-z5-p4-aug1-s0'
  assert builder.func is maze.build_generated
  assert builder.keywords == dict(
    aug=True, seed=0, num_train=2000, num_test=500, size=5, min_path_len=4
  )
  name, builder = build.plan_source(_gen_cfg(source='csv', aug=False, seed=7), maze.SOURCES['csv'])
  assert name == 'maze-csv-sapientinc_maze-30x30-hard-1k-suball-aug0-s7'
  assert builder.func is maze.build_from_csv
  assert builder.keywords == dict(
    csv_dir=None, hf_repo='sapientinc/maze-30x30-hard-1k', subsample_size=None, aug=False, seed=7
  )
  name, builder = build.plan_source(
    _gen_cfg(source='csv', csv_dir='/data/maze', subsample_size=100), maze.SOURCES['csv']
  )
  assert name == 'maze-csv-dir45b824c1-sub100-aug1-s0'
  assert builder.keywords['csv_dir'] == '/data/maze' and builder.keywords['subsample_size'] == 100
  errors = [
    (dict(aug=1), 'data.aug must be a bool, got 1'),
    (dict(num_test=1.5), 'data.num_test must be an integer, got 1.5'),
    (dict(maze_size=2), 'data.maze_size must be in [3, inf], got 2'),
    (
      dict(maze_size=5, min_path_len=18),
      'data.min_path_len must be < 18 for data.maze_size 5 (no longer shortest path fits), got 18',
    ),
    (dict(source='csv', csv_dir=1), 'data.csv_dir must be a str, got 1'),
    (dict(source='csv', subsample_size=-1), 'data.subsample_size must be in [0, inf], got -1'),
  ]
  for overrides, message in errors:
    with pytest.raises(ConfigError) as err:
      maze.prepare(_gen_cfg(**overrides), str(tmp_path))
    assert str(err.value) == message
  assert not (tmp_path / 'data').exists()
