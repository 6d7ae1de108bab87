"""The TFDS builders and the data.format=tfds reader (hrm_jax/data/tfds/), without TensorFlow.

Small local sources written here (CSVs, ARC task files, ConceptARC's combined files) go through
TFDS's download manager (local paths as URLs, checksums) or its manual_dir; a fresh process
reads the array_record files with `tfds.data_source` and finds the rows of our `.npy` build.
A tiny preset then trains from the TFDS data source exactly as from the `.npy` folder.
"""

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import ml_collections
import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')

from hrm_jax import config as config_lib  # noqa: E402
from hrm_jax import tasks, train  # noqa: E402
from hrm_jax.data import format as data_format  # noqa: E402
from hrm_jax.data import loader  # noqa: E402
from hrm_jax.data.tfds import builders, common, configs, reader  # noqa: E402
from hrm_jax.evaluators.arc import ArcEvaluator  # noqa: E402
from hrm_jax.tools.data_parity import arc as arc_parity  # noqa: E402
from hrm_jax.tools.data_parity import common as parity_common  # noqa: E402
from hrm_jax.tools.data_parity import maze as maze_parity  # noqa: E402
from hrm_jax.tools.data_parity import sudoku as sudoku_parity  # noqa: E402
from tests import helpers  # noqa: E402

_ARC_FIELDS = dict(
  configs.CONFIGS['arc_agi']['cpu'][1], source='folder', concept=True, num_aug=3, max_tasks=0
)
# (builder, config name, data fields) of the local builds below
_LOCAL = {
  'sudoku_extreme': dict(source='csv', subsample_size=5, min_difficulty=0, num_aug=2, seed=3),
  'maze_hard': dict(source='csv', subsample_size=0, aug=True, seed=0, maze_size=6),  # its seq_len
  'arc_agi': _ARC_FIELDS,
}


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
  """Local source files: Sudoku and Maze CSVs, ARC task folders, ConceptARC combined files."""
  root = tmp_path_factory.mktemp('sources')
  rng = np.random.default_rng(0)
  sudoku = parity_common.write_csvs(
    str(root / 'sudoku'), sudoku_parity.sudoku_rows(8, rng), sudoku_parity.sudoku_rows(3, rng)
  )
  os.makedirs(root / 'maze')
  maze = parity_common.write_csvs(
    str(root / 'maze'), maze_parity.maze_rows(4, 6, rng), maze_parity.maze_rows(3, 6, rng)
  )
  arc = arc_parity.write_arc_tasks(str(root / 'arc'), arc_parity.arc_tasks(rng))
  concept_tasks = arc_parity.arc_tasks(np.random.default_rng(5), num_train=0, eval_tests=(1, 2))
  concept = arc_parity.write_arc_tasks(
    str(root / 'concept'), {'concept': concept_tasks['evaluation']}
  )
  # TFDS copies local paths with TensorFlow's gfile: a local HTTP server stands for the
  # network instead (the download manager's requests path, as for Hugging Face).
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield {
    'sudoku': sudoku,
    'maze': maze,
    'arc': arc.folder,
    'concept': os.path.dirname(concept.prefix),
    'url': f'http://127.0.0.1:{server.server_address[1]}',
  }
  server.shutdown()


def _config(builder: str, sources: dict) -> common.Config:
  """The local config of ``builder``: Sudoku downloads its CSVs, ARC its ConceptARC files
  (from the local server); Maze reads manual_dir."""
  data, urls = dict(_LOCAL[builder]), {}
  if builder == 'sudoku_extreme':
    urls = {f: f'{sources["url"]}/sudoku/{f}' for f in ('train.csv', 'test.csv')}
  if builder == 'arc_agi':
    data['data_dir'] = sources['arc']
    urls = {
      f'arc-agi_concept_{k}.json': f'{sources["url"]}/concept/combined/arc-agi_concept_{k}.json'
      for k in ('challenges', 'solutions')
    }
  return common.Config(name='local', description='test', data=data, urls=urls)


@pytest.fixture(scope='module')
def built(sources, tmp_path_factory):
  """{builder: (TFDS data_dir, the .npy folder of the same fields)}, each built once.

  Every split is spilled through TFDS's on-disk shuffle buckets, as a split over TFDS's 1 GB
  buffer is (ARC's recipe): without TensorFlow they need `common.spill_without_tensorflow`."""
  from tensorflow_datasets.core import shuffle

  out = {}
  for name, cls in builders.BUILDERS.items():
    data_dir = str(tmp_path_factory.mktemp(f'tfds_{name}'))
    builder = cls(config=_config(name, sources), data_dir=data_dir)
    manual = sources['maze'] if name == 'maze_hard' else None
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 0)
      builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(manual_dir=manual),
      )
    fields = builder.data_fields()
    if name == 'sudoku_extreme':
      fields['csv_dir'] = sources['sudoku']
    if name == 'maze_hard':
      fields['csv_dir'] = sources['maze']
    if name == 'arc_agi':
      fields['concept_dir'] = sources['concept']
    npy = tasks.get(builder.TASK).prepare(
      ml_collections.ConfigDict(fields), str(tmp_path_factory.mktemp(f'npy_{name}'))
    )
    out[name] = (data_dir, npy)
  return out


_READ = """
import json, sys
import numpy as np
import tensorflow_datasets as tfds
out = {}
for name, data_dir in json.loads(sys.argv[1]).items():
  for split in ('train', 'test'):
    ds = tfds.data_source(name + '/local', data_dir=data_dir, split=split)
    rows = ds.__getitems__(list(range(len(ds))))
    out[f'{name}/{split}'] = {
      k: [r[k].decode() if isinstance(r[k], bytes) else np.asarray(r[k]).tolist() for r in rows]
      for k in rows[0]
    }
out['tensorflow_imported'] = 'tensorflow' in sys.modules
print(json.dumps(out))
"""


def test_builders_write_and_a_fresh_process_reads_the_npy_rows(built):
  r = subprocess.run(
    [sys.executable, '-c', _READ, json.dumps({k: v[0] for k, v in built.items()})],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  got = json.loads(r.stdout.splitlines()[-1])
  assert got.pop('tensorflow_imported') is False
  for name, (_, npy) in built.items():
    names = json.load(open(os.path.join(npy, 'identifiers.json')))
    for split in ('train', 'test'):
      s = data_format.load_split(npy, split, mmap=True)
      rows = got[f'{name}/{split}']
      puzzle = np.searchsorted(s.puzzle_indices, np.arange(s.num_examples), side='right') - 1
      np.testing.assert_array_equal(rows['index'], np.arange(s.num_examples))
      np.testing.assert_array_equal(rows['inputs'], s.inputs)
      np.testing.assert_array_equal(rows['labels'], s.labels)
      np.testing.assert_array_equal(rows['puzzle_index'], puzzle)
      np.testing.assert_array_equal(rows['puzzle_identifier'], s.puzzle_identifiers[puzzle])
      group = np.searchsorted(s.group_indices, puzzle, side='right') - 1
      np.testing.assert_array_equal(rows['group'], group)
      assert rows['puzzle_name'] == [names[i] for i in s.puzzle_identifiers[puzzle]]
  # ARC's test examples keep what scoring needs: task, transform and the original output.
  arc_test = got['arc_agi/test']
  test_puzzles = json.load(open(os.path.join(built['arc_agi'][1], 'test_puzzles.json')))
  for task_id, pair, output in zip(
    arc_test['task_id'], arc_test['pair_index'], arc_test['test_output']
  ):
    assert json.loads(output) == test_puzzles[task_id]['test'][pair]['output']
  assert set(got['arc_agi/train']['task_id']) > set(test_puzzles)  # + training and concept


def test_reader_split_and_views_match_the_npy_folder(built, tmp_path):
  for name, (data_dir, npy) in built.items():
    view = reader.write_view(
      f'{name}/local', os.path.join(data_dir, name, 'local', '1.0.0'), data_dir
    )
    for split in ('train', 'test'):
      ours, ref = tasks.load_split(view, split), data_format.load_split(npy, split, mmap=True)
      assert ours.metadata == ref.metadata
      for k in ('puzzle_identifiers', 'puzzle_indices', 'group_indices'):
        np.testing.assert_array_equal(getattr(ours, k), getattr(ref, k))
      idx = np.array([[ref.num_examples - 1, 0], [1, 1]])
      for a, b in zip(ours.take(idx), ref.take(idx)):
        np.testing.assert_array_equal(a, b)
      np.testing.assert_array_equal(ours.inputs[1:3], ref.inputs[1:3])
  # The ARC evaluator reads the view as it reads a dataset folder.
  view = os.path.join(built['arc_agi'][0], 'hrm_jax_views', 'arc_agi-local-1.0.0')
  for name in ('test_puzzles.json', 'identifiers.json'):
    assert json.load(open(os.path.join(view, name))) == json.load(
      open(os.path.join(built['arc_agi'][1], name))
    )
  assert ArcEvaluator(view).canvas == 10


def test_downloads_check_checksums_and_manual_dir_wins(sources, tmp_path):
  local = {f: os.path.join(sources['sudoku'], f) for f in ('train.csv', 'test.csv')}
  files = {f: f'{sources["url"]}/sudoku/{f}' for f in local}
  digest = {f: hashlib.sha256(open(p, 'rb').read()).hexdigest() for f, p in local.items()}

  def manager(checksums, manual=None):
    infos = {
      url: tfds.download.checksums.UrlInfo(
        size=os.path.getsize(local[f]), checksum=checksums[f], filename=f
      )
      for f, url in files.items()
    }
    return tfds.download.DownloadManager(
      download_dir=str(tmp_path / 'dl'),
      url_infos=infos,
      force_checksums_validation=True,
      manual_dir=manual,
      manual_dir_instructions='test',
    )

  folder = common.fetch(manager(digest), files)
  for f, p in local.items():
    assert open(os.path.join(folder, f), 'rb').read() == open(p, 'rb').read()
  with pytest.raises(Exception, match='(?i)checksum'):
    common.fetch(manager({f: '0' * 64 for f in files}, manual=None), files)
  # With the files in manual_dir nothing is downloaded (a bad checksum would fail otherwise).
  bad = manager({f: '0' * 64 for f in files}, manual=sources['sudoku'])
  assert common.fetch(bad, files) == sources['sudoku']


def _tiny_sudoku(fmt: str, tfds_dir: str):
  cfg = helpers.load_config('experiments/sudoku.py', 'tiny')
  cfg.data.update(format=fmt, tfds_data_dir=tfds_dir)
  return cfg


def test_tiny_preset_trains_from_tfds_exactly_as_from_npy(tmp_path):
  """The TFDS dataset of the tiny preset's fields, built on first use, gives the `.npy` run's
  training batches (also resumed mid-stream) and the same run, metric for metric."""
  tfds_dir = str(tmp_path / 'tfds')
  npy_cfg, tfds_cfg = _tiny_sudoku('npy', tfds_dir), _tiny_sudoku('tfds', tfds_dir)
  npy_dir = tasks.prepare_data(npy_cfg, str(tmp_path / 'npy_run'))
  view = tasks.prepare_data(tfds_cfg, str(tmp_path / 'tfds_run'))
  assert os.path.isdir(os.path.join(tfds_dir, 'sudoku_extreme', 'tiny', '1.0.0'))
  a, b = tasks.load_split(npy_dir, 'train'), tasks.load_split(view, 'train')
  for skip in (0, 7):
    ours = loader.train_batches(b, 16, seed=0, epochs_per_iter=2, skip_batches=skip)
    ref = loader.train_batches(a, 16, seed=0, epochs_per_iter=2, skip_batches=skip)
    for _ in range(20):  # more than one iteration of 2 epochs x 64 groups
      x, y = next(ours), next(ref)
      for k in y:
        np.testing.assert_array_equal(x[k], y[k])
  a, b = tasks.load_split(npy_dir, 'test'), tasks.load_split(view, 'test')
  for x, y in zip(loader.eval_batches(b, 10, 1, 2), loader.eval_batches(a, 10, 1, 2)):
    for k in y:
      np.testing.assert_array_equal(x[k], y[k])
  ref = train.train_and_evaluate(npy_cfg, str(tmp_path / 'npy_run'))
  ours = train.train_and_evaluate(tfds_cfg, str(tmp_path / 'tfds_run'))
  assert ours == ref

  def train_records(run):
    return [
      {k: v for k, v in r.items() if k != 'steps_per_s'}  # wall time: the one difference
      for r in helpers.records(str(tmp_path / run), 'train')
    ]

  assert train_records('tfds_run') == train_records('npy_run')


def test_names_resolve_and_bad_ones_are_config_errors():
  for task, preset, name in (
    ('sudoku', 'cpu', 'sudoku_extreme/cpu'),
    ('sudoku', 'tiny', 'sudoku_extreme/tiny'),
    ('sudoku', 'default', 'sudoku_extreme/1k_aug1000'),
    ('maze', 'cpu', 'maze_hard/cpu'),
    ('maze', 'trm_cpu', 'maze_hard/trm_cpu'),
    ('arc', 'cpu', 'arc_agi/cpu'),
    ('arc', 'default', 'arc_agi/arc1_concept_aug1000'),
    ('arc', 'hrm_arc2', 'arc_agi/arc2_aug1000'),
  ):
    assert configs.resolve(helpers.load_config(f'experiments/{task}.py', preset).data) == name
  cfg = helpers.load_config('experiments/sudoku.py', 'tiny')
  cfg.data.update(format='tfds', tfds_name='sudoku_extreme/nope')
  with pytest.raises(config_lib.ConfigError, match='unknown TFDS dataset .*sudoku_extreme/cpu'):
    tasks.prepare_data(cfg, '/nonexistent')
  cfg.data.tfds_name = 'maze_hard/cpu'
  with pytest.raises(config_lib.ConfigError, match='not a dataset of task'):
    tasks.prepare_data(cfg, '/nonexistent')
  cfg.data.tfds_name = 'sudoku_extreme/cpu'  # the tiny preset has 64 training puzzles
  with pytest.raises(config_lib.ConfigError, match=r'data.num_train: 64 \(the dataset has 2000'):
    tasks.prepare_data(cfg, '/nonexistent')
  cfg.data.update(tfds_name='', num_train=65)
  with pytest.raises(config_lib.ConfigError, match='no TFDS dataset has'):
    tasks.prepare_data(cfg, '/nonexistent')
  cfg.data.format = 'parquet'
  with pytest.raises(config_lib.ConfigError, match="data.format must be 'npy' or 'tfds'"):
    tasks.prepare_data(cfg, '/nonexistent')


def test_our_build_command_builds_a_generated_config_without_tensorflow(tmp_path):
  """`python -m hrm_jax.data.tfds NAME` (the `tfds build` of this package: tfds 4.9.10's own
  `tfds` command imports TensorFlow at start-up, docs/data.md)."""
  r = helpers.run_module('hrm_jax.data.tfds', 'sudoku_extreme/tiny', f'--data_dir={tmp_path}')
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert 'sudoku_extreme/tiny: ' in r.stdout
  assert os.path.isfile(tmp_path / 'sudoku_extreme' / 'tiny' / '1.0.0' / 'metadata.json')
  r = helpers.run_module('hrm_jax.data.tfds', '--list')
  assert r.returncode == 0 and 'arc_agi/arc1_concept_aug1000' in r.stdout, r.stderr
  assert subprocess.run([sys.executable, '-c', 'import tensorflow']).returncode != 0
