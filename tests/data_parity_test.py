"""The data- and ARC-scoring-parity tool (hrm_jax.tools.data_parity), hrm_jax's side.

Without a reference checkout: the inverse-transform checkers (a known transform is found and
inverted, a corrupted variant is flagged), the input writers, the folder comparisons on our own
builds, and the ARC scoring (ours and the HRM notebook's transcription) on a hand-checked case.
With HRM_REF / TRM_REF naming a checkout of sapientinc/HRM / TinyRecursiveModels, the tool's
full comparisons run too (CI has no checkout, so they skip there).
"""

import json
import os
import shutil

import numpy as np
import pytest

from hrm_jax.data import arc as arc_data
from hrm_jax.data import grids, maze, sudoku
from hrm_jax.data.format import load_split
from hrm_jax.tools import data_parity as dp
from hrm_jax.tools.data_parity import arc as arc_parity
from hrm_jax.tools.data_parity import common, hrm_notebook, scoring
from hrm_jax.tools.data_parity import maze as maze_parity
from hrm_jax.tools.data_parity import sudoku as sudoku_parity


def _values(row: tuple) -> tuple[np.ndarray, np.ndarray]:
  """(question, answer) [9, 9] values 0..9 of a ``sudoku_rows`` row."""
  q = np.array([0 if c == '.' else int(c) for c in row[1]]).reshape(9, 9)
  return q, np.array([int(c) for c in row[2]]).reshape(9, 9)


def _random_transform(rng) -> sudoku_parity.SudokuTransform:
  perms = sudoku_parity.line_permutations()
  return sudoku_parity.SudokuTransform(
    bool(rng.integers(2)),
    perms[rng.integers(len(perms))],
    perms[rng.integers(len(perms))],
    np.concatenate([[0], rng.permutation(9) + 1]),
  )


@pytest.fixture(scope='module')
def sudoku_csv(tmp_path_factory):
  rng = np.random.default_rng(0)
  root = str(tmp_path_factory.mktemp('sudoku_csv'))
  return common.write_csvs(
    root, sudoku_parity.sudoku_rows(6, rng), sudoku_parity.sudoku_rows(3, rng)
  )


@pytest.fixture(scope='module')
def arc_sources(tmp_path_factory):
  tasks = arc_parity.arc_tasks(np.random.default_rng(1))
  return tasks, arc_parity.write_arc_tasks(str(tmp_path_factory.mktemp('arc_src')), tasks)


def test_line_permutations_are_the_band_preserving_ones():
  perms = sudoku_parity.line_permutations()
  assert perms.shape == (1296, 9) and len({p.tobytes() for p in perms}) == 1296
  assert (np.sort(perms, axis=1) == np.arange(9)).all()
  assert (perms.reshape(-1, 3, 3) // 3 == perms.reshape(-1, 3, 3)[:, :, :1] // 3).all()


def test_known_sudoku_transform_is_found_and_inverted():
  rng = np.random.default_rng(2)
  for row in sudoku_parity.sudoku_rows(3, rng):
    q, a = _values(row)
    t = _random_transform(rng)
    found = sudoku_parity.find_sudoku_transform(q, a, t.apply(q), t.apply(a))
    assert found is not None
    np.testing.assert_array_equal(found.apply(a), t.apply(a))
    np.testing.assert_array_equal(found.apply(q), t.apply(q))
    # Inverting the found transform gives the base back.
    inverse_digits = np.argsort(found.digit_map)
    undone = inverse_digits[t.apply(a)]
    undone[np.ix_(found.row_perm, found.col_perm)] = undone.copy()
    np.testing.assert_array_equal(undone.T if found.transpose else undone, a)


def test_corrupted_sudoku_variants_are_flagged():
  rng = np.random.default_rng(3)
  q, a = _values(sudoku_parity.sudoku_rows(1, rng)[0])
  t = _random_transform(rng)
  vq, va = t.apply(q), t.apply(a)
  swapped_q, swapped_a = vq.copy(), va.copy()
  swapped_a[0, [0, 1]] = swapped_a[0, [1, 0]]  # still a row permutation, columns broken
  swapped_q[0, [0, 1]] = swapped_q[0, [1, 0]]
  assert sudoku_parity.find_sudoku_transform(q, a, swapped_q, swapped_a) is None
  blanked = vq.copy()
  blanked[tuple(np.argwhere(vq > 0)[0])] = 0  # a given lost: the answer maps, the puzzle not
  assert sudoku_parity.find_sudoku_transform(q, a, blanked, va) is None
  rows_across_bands = va[[3, 1, 2, 0, 4, 5, 6, 7, 8]]  # a valid-looking but illegal row move
  assert (
    sudoku_parity.find_sudoku_transform(q, a, vq[[3, 1, 2, 0, 4, 5, 6, 7, 8]], rows_across_bands)
    is None
  )


def test_dihedral_found_and_corrupted_flagged():
  rng = np.random.default_rng(4)
  base = rng.integers(0, 6, (2, 5, 5))
  for tid in range(8):
    variant = grids.dihedral(base, tid)
    found = maze_parity.find_dihedral(base, variant, grids.dihedral)
    assert found is not None
    np.testing.assert_array_equal(grids.dihedral(base, found), variant)
    np.testing.assert_array_equal(grids.inverse_dihedral(variant, found), base)
  bad = grids.dihedral(base, 3).copy()
  bad[1, 0, 0] = (bad[1, 0, 0] + 1) % 6
  assert maze_parity.find_dihedral(base, bad, grids.dihedral) is None


def test_csv_writers_give_what_our_parsers_read(tmp_path, sudoku_csv):
  q, a, ratings = sudoku.parse_csv(os.path.join(sudoku_csv, 'train.csv'))
  assert q.shape == (6, 81) and sudoku.is_valid_solution(a).all()
  assert ratings[0] == 0 and ratings[1] == 99
  assert ((q == 0) | (q == a)).all() and (q == 0).sum(1).min() >= 30
  rng = np.random.default_rng(5)
  maze_dir = common.write_csvs(
    str(tmp_path), maze_parity.maze_rows(3, 9, rng), maze_parity.maze_rows(2, 9, rng)
  )
  mq, ma = maze.parse_csv(os.path.join(maze_dir, 'train.csv'))
  assert mq.shape == (3, 81) and (maze.path_lengths(ma) >= 9).all()


def test_arc_writer_layouts_hold_the_same_tasks(arc_sources):
  tasks, sources = arc_sources
  assert [len(t['test']) for t in tasks['evaluation'].values()] == [1, 2, 1, 1]
  for subset, by_id in tasks.items():
    folder = arc_data.load_folder(os.path.join(sources.folder, subset))
    prefix = f'{sources.prefix}_{subset}'
    combined = arc_data.load_combined(f'{prefix}_challenges.json', f'{prefix}_solutions.json')
    assert folder == combined == by_id


def test_compare_folders_flags_a_changed_row_and_field(tmp_path, sudoku_csv):
  ours = sudoku.build_from_csv(str(tmp_path / 'a'), csv_dir=sudoku_csv)
  other = str(tmp_path / 'b')
  shutil.copytree(ours, other)
  report = common.Report()
  assert common.compare_folders(ours, other, report, 'same') == 9
  assert report.mismatches == 0 and report.checks['same/train.inputs'] == [6, 0]
  labels_path = os.path.join(other, 'test', 'all__labels.npy')
  labels = np.load(labels_path)
  labels[1, 5] = 2 if labels[1, 5] != 2 else 3
  np.save(labels_path, labels)
  meta_path = os.path.join(other, 'train', 'dataset.json')
  meta = json.load(open(meta_path))
  json.dump(dict(meta, mean_puzzle_examples=2.0), open(meta_path, 'w'))
  report = common.Report()
  common.compare_folders(ours, other, report, 'changed')
  assert report.checks['changed/test.labels'] == [3, 1]
  assert report.checks['changed/train.metadata'][1] == 1
  assert report.mismatches == 2
  assert 'mismatches: 2' in report.render()


def test_our_augmented_variants_are_valid_and_a_corrupted_one_is_flagged(tmp_path, sudoku_csv):
  out = sudoku.build_from_csv(str(tmp_path / 's'), csv_dir=sudoku_csv, num_aug=2)
  compared, bad = common.check_variants(load_split(out, 'train'), sudoku_parity.is_sudoku_variant)
  assert (compared, bad) == (12, [])
  path = os.path.join(out, 'train', 'all__labels.npy')
  labels = np.load(path)
  labels[4, [0, 1]] = labels[4, [1, 0]]  # puzzle 4 = the second variant of group 1
  np.save(path, labels)
  compared, bad = common.check_variants(load_split(out, 'train'), sudoku_parity.is_sudoku_variant)
  assert compared == 12 and len(bad) == 1 and 'puzzle 4' in bad[0]

  rng = np.random.default_rng(6)
  maze_csv = common.write_csvs(
    str(tmp_path / 'mc'), maze_parity.maze_rows(2, 7, rng), maze_parity.maze_rows(1, 7, rng)
  )
  out = maze.build_from_csv(str(tmp_path / 'm'), csv_dir=maze_csv, aug=True)
  check = maze_parity.maze_variant_check(grids.dihedral)
  assert common.check_variants(load_split(out, 'train'), check) == (14, [])


def test_decode_canvas_undoes_translation():
  grid = np.arange(12).reshape(3, 4) % 10
  grid, r0, c0 = arc_parity.decode_canvas(grids.encode_grid(grid, 5, 26))
  assert (r0, c0) == (5, 26) and grid.shape == (3, 4)
  tokens = grids.encode_grid(grid, 2, 3)
  tokens[(2 + 3) * 30 + 3] = grids.PAD  # an EOS mark lost
  with pytest.raises(ValueError):
    arc_parity.decode_canvas(tokens)


def test_arc_folders_of_two_seeds_compare_equal_and_a_bad_name_is_flagged(tmp_path, arc_sources):
  tasks, sources = arc_sources
  dirs = [str(tmp_path / f'seed{s}') for s in (0, 1)]
  for seed, d in enumerate(dirs):
    arc_parity.run_ours_arc(sources, 'folder' if seed else 'combined', d, num_aug=3, seed=seed)
  report = common.Report()
  decoded = [arc_parity.check_arc_folder(d, report, f'seed{i}') for i, d in enumerate(dirs)]
  arc_parity.compare_arc(*decoded, arc_parity.expected_arc_pairs(tasks, ['evaluation']), report)
  assert report.mismatches == 0, report.render()
  assert report.checks['train.group_sizes'] == [6, 0]
  assert report.checks['seed0/train.variants_invert'] == [18, 0]
  # A variant whose name states another colour map no longer inverts to its base.
  names_path = os.path.join(dirs[1], 'identifiers.json')
  names = json.load(open(names_path))
  task_id, tid, colour_map = grids.parse_variant_name(names[2])
  names[2] = grids.variant_name(task_id, (tid + 1) % 8, np.r_[0, np.roll(colour_map[1:], 1)])
  json.dump(names, open(names_path, 'w'))
  report = common.Report()
  arc_parity.check_arc_folder(dirs[1], report, 'bad')
  assert report.checks['bad/train.variants_invert'][1] >= 1


def test_dedup_probe_separates_pair_and_grid_distinct_variants():
  # The probe's transforms (8 dihedral × 9 images of its one colour) are 72 distinct (input,
  # output) pair sets but only 36 distinct grid sets: flip∘T swaps inputs and outputs of T.
  task = arc_parity.arc_tasks(np.random.default_rng(8), dedup_probe=True)['training']['probe0f1']
  pairs = [(np.array(p['input']), np.array(p['output'])) for p in task['train'] + task['test']]
  by_pairs, by_grids = set(), set()
  for tid in range(8):
    for colour in range(1, 10):
      m = np.r_[0, np.roll(np.arange(1, 10), 1 - colour)]
      aug = [tuple(grids.grid_hash(grids.augment_grid(g, tid, m)) for g in p) for p in pairs]
      by_pairs.add(tuple(sorted(aug)))
      by_grids.add(tuple(sorted(h for p in aug for h in p)))
  assert (len(by_pairs), len(by_grids)) == (72, 36)


# Hand-checked pass@K of SCORING_PLAN at K = 1, 2, 5, 10, 100, 1000. Per task (solved within
# top K): task 0 has the answer second; task 1 first for its first input, third for its second;
# task 2 never; task 3 first. `all` credits task 1 only when both inputs are solved, `frac` half.
EXPECTED_ALL = [0.25, 0.5, 0.75, 0.75, 0.75, 0.75]
EXPECTED_FRAC = [0.375, 0.625, 0.75, 0.75, 0.75, 0.75]


def test_arc_scoring_hand_checked_case(tmp_path):
  rng = np.random.default_rng(7)
  tasks = arc_parity.arc_tasks(rng, eval_tests=[len(p) for p in scoring.SCORING_PLAN])
  sources = arc_parity.write_arc_tasks(str(tmp_path / 'src'), tasks)
  data_dir = str(tmp_path / 'data')
  arc_parity.run_ours_arc(sources, 'combined', data_dir, scoring.SCORING_VARIANTS - 1, seed=0)
  rows = scoring.scoring_rows(data_dir, tasks['evaluation'], rng)
  assert rows['preds'].shape == (5 * 8 + 3, 900) and (rows['puzzle_identifiers'] == 0).sum() == 3

  ours = scoring.ours_pass_at_k(data_dir, rows)
  assert list(ours['all'].values()) == EXPECTED_ALL
  assert list(ours['frac'].values()) == EXPECTED_FRAC
  hrm_dir = hrm_notebook.with_hrm_names(data_dir, str(tmp_path / 'hrm_names'))
  assert scoring.ours_pass_at_k(hrm_dir, rows) == ours
  names = json.load(open(os.path.join(hrm_dir, 'identifiers.json')))
  assert '_t' in names[2] and '|||' not in ''.join(names)
  notebook = hrm_notebook.hrm_notebook_pass_at_k(names, rows)
  assert list(notebook.values()) == EXPECTED_ALL


def test_bad_checkout_is_a_parity_error(tmp_path):
  with pytest.raises(dp.ParityError, match='HRM or TRM checkout'):
    dp.run_task('sudoku', str(tmp_path))
  with pytest.raises(dp.ParityError, match='--task'):
    dp.run_task('chess', str(tmp_path))


def _checkouts():
  """(env var, task) pairs of the tool's full comparisons; HRM has no evaluator to run."""
  return [
    pytest.param(var, task, id=f'{var}-{task}')
    for var, tasks in (('HRM_REF', dp.TASKS[:3]), ('TRM_REF', dp.TASKS))
    for task in tasks
  ]


@pytest.mark.parametrize('var, task', _checkouts())
def test_reference_parity(var, task, tmp_path):
  repo = os.environ.get(var, '')
  if not repo or not os.path.isdir(repo):
    # CI has no checkout of the originals (no network); these comparisons run by hand or with
    # HRM_REF/TRM_REF set (docs/pytorch.md), and the checks they use are tested above without one.
    pytest.skip(f'{var} does not name a reference checkout')
  report = dp.run_task(task, repo, str(tmp_path))
  assert report.mismatches == 0, report.render()
  assert report.examples > 0
