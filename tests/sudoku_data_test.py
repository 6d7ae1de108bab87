"""Tests of hrm_jax.data.sudoku: augmentation, CSV builder and `prepare`."""

import json
import os

import ml_collections
import numpy as np
import pytest

from hrm_jax.config import ConfigError
from hrm_jax.data import build, sudoku, sudoku_gen
from hrm_jax.data import format as fmt
from tests import helpers


def test_is_valid_solution_rejects_broken_grids(puzzles):
  s = puzzles[1].copy()
  assert sudoku.is_valid_solution(s).all()
  s[0, [0, 1]] = s[0, [1, 0]]  # a row stays a permutation, but columns break
  assert not sudoku.is_valid_solution(s[0])[0]


def test_augment_preserves_validity_and_blanks(puzzles):
  q, s, _ = puzzles
  rng = np.random.default_rng(1)
  for k in range(8):
    board, solution = sudoku.augment(q[k].reshape(9, 9), s[k].reshape(9, 9), rng)
    assert board.shape == solution.shape == (9, 9)
    helpers.check_sudoku_pairs(board, solution)
    assert (board == 0).sum() == (q[k] == 0).sum()
    assert not np.array_equal(solution.reshape(81), s[k])
    assert sudoku_gen.count_solutions(board) == 1
  many_q, many_s = sudoku.augment_many(np.repeat(q, 5, 0), np.repeat(s, 5, 0), rng)
  helpers.check_sudoku_pairs(many_q, many_s)
  np.testing.assert_array_equal((many_q == 0).sum(1), np.repeat((q == 0).sum(1), 5))


def test_augment_follows_the_spec_formula():
  # With a row-major grid of distinct values the transform can be read off directly.
  class Fixed:
    """Stands in for a Generator: identity digits, transpose, bands (1, 2, 0), rows reversed."""

    def permuted(self, x, axis):
      if x.shape[-1] == 9:
        return x
      return x[..., ::-1] if x.ndim == 3 else np.broadcast_to([1, 2, 0], x.shape).copy()

    def random(self, n):
      return np.zeros(n)

  grid = np.arange(81).reshape(9, 9) % 10
  out, _ = sudoku.augment(grid, grid, Fixed())
  row_perm = np.array([5, 4, 3, 8, 7, 6, 2, 1, 0])
  np.testing.assert_array_equal(out, grid.T[row_perm][:, row_perm])


def _write_csv(path, q, s, ratings, header='source,question,answer,rating'):
  rows = [header]
  for k in range(len(q)):
    question = ''.join('.' if v == 0 else str(v) for v in q[k])
    rows.append(f'gen,{question},{"".join(map(str, s[k]))},{ratings[k]}')
  path.write_text('\n'.join(rows) + '\n')
  return str(path)


@pytest.fixture()
def csv_dir(tmp_path, puzzles):
  q, s, _ = puzzles
  d = tmp_path / 'csv'
  d.mkdir()
  _write_csv(d / 'train.csv', q[:16], s[:16], np.arange(16))
  _write_csv(d / 'test.csv', q[16:], s[16:], np.arange(8))
  return str(d)


def test_parse_csv(csv_dir, puzzles):
  q, a, r = sudoku.parse_csv(os.path.join(csv_dir, 'train.csv'))
  np.testing.assert_array_equal(q, puzzles[0][:16])
  np.testing.assert_array_equal(a, puzzles[1][:16])
  q, a, r = sudoku.parse_csv(os.path.join(csv_dir, 'train.csv'), min_difficulty=10)
  np.testing.assert_array_equal(r, np.arange(10, 16))
  np.testing.assert_array_equal(q, puzzles[0][10:16])


def test_build_from_csv_plain(tmp_path, csv_dir, puzzles):
  out = sudoku.build_from_csv(str(tmp_path / 'ds'), csv_dir=csv_dir)
  train, test = fmt.load_split(out, 'train'), fmt.load_split(out, 'test')
  assert (train.num_examples, train.num_puzzles, train.num_groups) == (16, 16, 16)
  assert test.num_groups == 8 and train.metadata == sudoku.metadata(16, 16)
  np.testing.assert_array_equal(train.inputs, puzzles[0][:16] + 1)
  np.testing.assert_array_equal(test.labels, puzzles[1][16:] + 1)
  assert json.load(open(os.path.join(out, 'identifiers.json'))) == ['<blank>']


def test_build_from_csv_aug_difficulty_subsample(tmp_path, csv_dir, puzzles):
  out = sudoku.build_from_csv(
    str(tmp_path / 'ds'), csv_dir=csv_dir, subsample_size=4, min_difficulty=6, num_aug=3, seed=1
  )
  train, test = fmt.load_split(out, 'train'), fmt.load_split(out, 'test')
  assert (train.num_examples, train.num_groups) == (16, 4)
  np.testing.assert_array_equal(train.group_indices, [0, 4, 8, 12, 16])
  assert test.num_groups == 2  # ratings 6, 7 of the 8 test rows
  q, s = train.inputs - 1, train.labels - 1
  helpers.check_sudoku_pairs(q, s)
  originals = {row.tobytes() for row in puzzles[0][6:16]}
  for g in range(4):
    base = q[4 * g]
    assert base.astype(np.int8).tobytes() in originals  # variant 0 is the original puzzle
    assert ((q[4 * g : 4 * g + 4] == 0).sum(1) == (base == 0).sum()).all()
  again = sudoku.build_from_csv(
    str(tmp_path / 'ds2'), csv_dir=csv_dir, subsample_size=4, min_difficulty=6, num_aug=3, seed=1
  )
  np.testing.assert_array_equal(fmt.load_split(again).inputs, train.inputs)


def _error(tmp_path, text):
  path = tmp_path / 'bad.csv'
  path.write_text(text)
  with pytest.raises(fmt.DatasetError) as err:
    sudoku.parse_csv(str(path))
  assert str(path) in str(err.value)
  return str(err.value)


def test_csv_errors(tmp_path, puzzles):
  q, s = puzzles[0][:3], puzzles[1][:3]
  good = _write_csv(tmp_path / 'good.csv', q, s, [0, 1, 2])
  lines = open(good).read().splitlines()
  msg = _error(tmp_path, 'source,question,solution,rating\n')
  assert 'expected header source,question,answer,rating' in msg and 'solution' in msg
  bad_char = lines[2][:10] + 'x' + lines[2][11:]
  assert "bad.csv:3: invalid character 'x'" in _error(tmp_path, '\n'.join(lines[:2] + [bad_char]))
  short = lines[1].replace(',', ',1', 1)
  assert 'bad.csv:2: question has 82 characters' in _error(tmp_path, '\n'.join([lines[0], short]))
  src, qs, ans, rating = lines[3].split(',')
  swapped = ans[1] + ans[0] + ans[2:]
  msg = _error(tmp_path, '\n'.join(lines[:3] + [f'{src},{qs},{swapped},{rating}']))
  assert 'bad.csv:4: answer is not a valid complete Sudoku' in msg
  # Relabelling two digits keeps the answer a valid grid but contradicts the clue of one of them.
  d = q[0][np.flatnonzero(q[0])[0]]
  e = d % 9 + 1
  relabelled = np.where(s[0] == d, e, np.where(s[0] == e, d, s[0]))
  question = lines[1].split(',')[1]
  msg = _error(tmp_path, '\n'.join([lines[0], f'x,{question},{"".join(map(str, relabelled))},0']))
  assert 'bad.csv:2: answer disagrees with a given clue' in msg
  with pytest.raises(fmt.DatasetError, match='does not exist'):
    sudoku.parse_csv(str(tmp_path / 'none.csv'))


def _gen_cfg(**overrides):
  cfg = ml_collections.ConfigDict(
    dict(
      path='',
      source='generate',
      csv_dir='',
      hf_repo='sapientinc/sudoku-extreme',
      subsample_size=0,
      min_difficulty=0,
      num_aug=2,
      seed=0,
      num_train=12,
      num_test=5,
      train_min_blanks=20,
      train_max_blanks=40,
      test_min_blanks=30,
      test_max_blanks=45,
    )
  )
  cfg.update(overrides)
  return cfg


def test_prepare_generates_once_and_caches(tmp_path):
  out = sudoku.prepare(_gen_cfg(), str(tmp_path))
  assert out == str(tmp_path / 'data' / 'sudoku-gen-n12-t5-aug2-b20_40-tb30_45-s0')
  train, test = fmt.load_split(out, 'train'), fmt.load_split(out, 'test')
  assert (train.num_puzzles, train.num_groups, test.num_groups) == (36, 12, 5)
  blanks = (test.inputs == 1).sum(1)
  assert blanks.min() >= 30 and blanks.max() <= 45
  info = json.load(open(os.path.join(out, 'generator.json')))
  assert info['params']['num_train'] == 12 and info['train']['base_puzzles'] == 12
  stamp = os.stat(os.path.join(out, 'train', 'dataset.json')).st_mtime_ns
  assert sudoku.prepare(_gen_cfg(), str(tmp_path)) == out
  assert os.stat(os.path.join(out, 'train', 'dataset.json')).st_mtime_ns == stamp
  # A corrupt cached copy is rebuilt, not trusted.
  os.remove(os.path.join(out, 'test', 'all__inputs.npy'))
  assert sudoku.prepare(_gen_cfg(), str(tmp_path)) == out
  fmt.load_split(out, 'test')
  assert sorted(os.listdir(tmp_path / 'data')) == [os.path.basename(out)]
  # path mode: an existing folder is validated and returned as is.
  assert sudoku.prepare(_gen_cfg(path=out), '/nonexistent') == out


def test_prepare_csv_source(tmp_path, csv_dir):
  cfg = _gen_cfg(source='csv', csv_dir=csv_dir, num_aug=1, subsample_size=5)
  out = sudoku.prepare(cfg, str(tmp_path))
  assert os.path.basename(out).startswith('sudoku-csv-dir') and 'sub5' in out
  assert fmt.load_split(out).num_puzzles == 10


def test_prepare_errors(tmp_path):
  with pytest.raises(fmt.DatasetError, match='missing_ds'):
    sudoku.prepare(_gen_cfg(path=str(tmp_path / 'missing_ds')), str(tmp_path))
  bad = [
    (dict(source='web'), 'data.source'),
    (dict(train_max_blanks=70), 'data.train_max_blanks'),
    (dict(test_min_blanks=50), 'data.test_min_blanks'),
    (dict(num_aug=-1), 'data.num_aug'),
    (dict(num_train=0), 'data.num_train'),
  ]
  for overrides, field in bad:
    with pytest.raises(ValueError, match=field):
      sudoku.prepare(_gen_cfg(**overrides), str(tmp_path))
  assert not (tmp_path / 'data').exists()


def test_folder_names_builder_args_and_field_errors_are_stable(tmp_path):
  # Cached datasets are found by folder name, so these names (and the builder arguments behind
  # them) must survive any rewrite of the config plumbing.
  cfg = _gen_cfg(num_aug=8, num_train=2000, num_test=500, train_min_blanks=30, train_max_blanks=50)
  cfg.update(test_min_blanks=35, test_max_blanks=55)
  name, builder = build.plan_source(cfg, sudoku.SOURCES['generate'])
  assert name == 'sudoku-gen-n2000-t500-aug8-b30_50-tb35_55-s0'
  assert builder.func is sudoku.build_generated
  assert builder.keywords == dict(
    num_aug=8,
    seed=0,
    num_train=2000,
    num_test=500,
    train_min_blanks=30,
    train_max_blanks=50,
    test_min_blanks=35,
    test_max_blanks=55,
    train_min_dead_ends=0,
    test_min_dead_ends=0,
  )
  # The difficulty knob shows in the name only when set.
  cfg.update(test_min_dead_ends=2)
  name, builder = build.plan_source(cfg, sudoku.SOURCES['generate'])
  assert name == 'sudoku-gen-n2000-t500-aug8-b30_50-tb35_55-d2-s0'
  assert builder.keywords['test_min_dead_ends'] == 2
  name, builder = build.plan_source(
    _gen_cfg(source='csv', num_aug=1, seed=3, min_difficulty=20), sudoku.SOURCES['csv']
  )
  assert name == 'sudoku-csv-sapientinc_sudoku-extreme-suball-d20-aug1-s3'
  assert builder.func is sudoku.build_from_csv
  assert builder.keywords == dict(
    csv_dir=None,
    hf_repo='sapientinc/sudoku-extreme',
    subsample_size=None,
    min_difficulty=20,
    num_aug=1,
    seed=3,
  )
  name, builder = build.plan_source(
    _gen_cfg(source='csv', csv_dir='/data/sudoku', subsample_size=1000), sudoku.SOURCES['csv']
  )
  assert name == 'sudoku-csv-dire6ee221f-sub1000-d0-aug2-s0'
  assert builder.keywords['csv_dir'] == '/data/sudoku'
  assert builder.keywords['min_difficulty'] is None
  missing = _gen_cfg()
  del missing['num_train']
  errors = [
    (missing, 'data.num_train is missing'),
    (_gen_cfg(num_aug=-1), 'data.num_aug must be in [0, inf], got -1'),
    (_gen_cfg(test_max_blanks=70), 'data.test_max_blanks must be in [0, 64], got 70'),
    (
      _gen_cfg(train_min_blanks=45),
      'data.train_min_blanks (45) must be <= data.train_max_blanks (40)',
    ),
    (_gen_cfg(source='csv', min_difficulty=-2), 'data.min_difficulty must be in [0, inf], got -2'),
    (_gen_cfg(test_min_dead_ends=-1), 'data.test_min_dead_ends must be in [0, inf], got -1'),
  ]
  for cfg, message in errors:
    with pytest.raises(ConfigError) as err:
      sudoku.prepare(cfg, str(tmp_path))
    assert str(err.value) == message
  assert not (tmp_path / 'data').exists()
