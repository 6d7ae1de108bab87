"""The builder the three TFDS datasets share: our `.npy` build, re-emitted one example per row.

``_split_generators`` resolves the config to its `data` fields (`configs.fields`), fetches the
source files through TFDS's download manager (or its ``manual_dir``), and runs the task's own
``prepare`` (`hrm_jax/tasks/<task>.py`: the same builders, augmentations and seeds as
``data.format=npy``) into a temporary folder under the download dir. ``_generate_examples``
then yields that folder's rows in order, keyed by row, with shuffling disabled, so example i of
the TFDS split is row i of the `.npy` split (its ``index`` field says so; the reader checks).

Each example (L = seq_len; tokens uint8 as in the `.npy` files, int32 when vocab > 256):
  index              int64       row of the split, as in the `.npy` layout
  inputs, labels     [L]         tokens; labels hold ``ignore_label_id`` where there is no loss
  puzzle_identifier  int32       row of the puzzle-embedding table (§6.1)
  puzzle_index       int32       the puzzle (variant) p, puzzle_indices[p] <= index < [p + 1]
  group              int32       the group (base puzzle) g of p, group_indices[g] <= p < [g + 1]
  puzzle_name        text        identifiers[puzzle_identifier] ('<blank>' for Sudoku and Maze)
plus the task's own fields (ARC: task id, transform, pair index, original test output).

The builder's metadata (``metadata.json``, a ``tfds.core.MetadataDict``) holds what a reader
needs to rebuild the `.npy` view (`reader.py`): per split the §6.1 ``Metadata`` and the CSR
arrays puzzle_identifiers / puzzle_indices / group_indices, the identifiers list, the build
record, and for ARC the raw test tasks the evaluator scores against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import resource
import shutil
import tempfile
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from hrm_jax import tasks
from hrm_jax.data import format as data_format
from hrm_jax.data.tfds import configs

DATASET_VERSION = '1.0.0'
METADATA_VERSION = 1  # of the metadata.json layout below; the reader checks it
HRM_CITATION = """@article{wang2025hrm,
  title={Hierarchical Reasoning Model},
  author={Wang, Guan and Li, Jin and Sun, Yuhao and Chen, Xing and Liu, Changling and Wu, Yue
          and Lu, Meng and Song, Sen and Abbasi Yadkori, Yasin},
  journal={arXiv preprint arXiv:2506.21734},
  year={2025}
}
@article{jolicoeur2025trm,
  title={Less is More: Recursive Reasoning with Tiny Networks},
  author={Jolicoeur-Martineau, Alexia},
  journal={arXiv preprint arXiv:2510.04871},
  year={2025}
}"""
_BUCKETS = 1000  # tfds.core.shuffle.BUCKETS_NUMBER
_KEY_SPACE = 1 << 128  # tfds.core.shuffle: keys index a 128-bit space


class _NeverRaised(Exception):
  """Stands for tf.errors.ResourceExhaustedError, which nothing raises without TensorFlow."""


def spill_without_tensorflow() -> bool:
  """Lets TFDS's writer spill a split larger than its 1 GB in-memory buffer without TensorFlow.

  tfds 4.9.10's shuffler (``tfds.core.shuffle``) writes such a split to 1000 temporary bucket
  files through ``tf.io.gfile`` alone, so without TensorFlow a large build (ARC's recipe: ~7 GB)
  dies with ``No module named 'tensorflow'`` after the whole `.npy` build. Where TensorFlow is
  missing, the module's ``tf`` is replaced by the three ``tf.io.gfile`` calls it makes, on
  ``etils.epath`` (which TFDS uses elsewhere), and the open-files limit is raised for the 1000
  buckets (TFDS does this on TensorFlow's "Too many open files" error). Returns whether it
  replaced anything; with TensorFlow installed TFDS is left as it is.
  """
  from tensorflow_datasets.core import shuffle

  if importlib.util.find_spec('tensorflow') is not None:
    return False
  gfile = types.SimpleNamespace(
    GFile=lambda path, mode='r': epath.Path(path).open(mode),
    exists=lambda path: epath.Path(path).exists(),
    remove=lambda path: epath.Path(path).unlink(),
  )
  shuffle.tf = types.SimpleNamespace(
    io=types.SimpleNamespace(gfile=gfile),
    errors=types.SimpleNamespace(ResourceExhaustedError=_NeverRaised),
  )
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  want = shuffle.BUCKETS_NUMBER + 256
  if soft != resource.RLIM_INFINITY and soft < want:
    top = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
  return True


def hf_url(repo: str, filename: str) -> str:
  """The download URL of ``filename`` in the Hugging Face dataset ``repo`` (branch ``main``:
  unpinned, so its checksum is registered on the first online build, see docs/data.md)."""
  return f'https://huggingface.co/datasets/{repo}/resolve/main/{filename}'


@dataclasses.dataclass(eq=False)
class Config(tfds.core.BuilderConfig):
  """A named dataset: ``data`` holds its `data.<field>` values (`configs.CONFIGS`), ``urls``
  replaces the download URL of a source file (file name -> URL or local path), e.g. in tests."""

  data: dict = dataclasses.field(default_factory=dict)
  urls: dict = dataclasses.field(default_factory=dict)


def named_configs(builder: str) -> list[Config]:
  """The builder's configs of `configs.CONFIGS`, in table order."""
  return [
    Config(name=name, description=description, data=dict(data))
    for name, (description, data) in configs.CONFIGS[builder].items()
  ]


def spread_key(index: int, num_examples: int) -> int:
  """The write key of row ``index`` of ``num_examples``: increasing in the row (shuffling is
  disabled, so TFDS writes examples in key order) and spread over the whole key space, because
  TFDS's shuffler buckets keys by their top bits: row numbers as keys would put every example
  of a split larger than its 1 GB buffer into one bucket, sorted in memory (ARC with 1000
  augmentations: ~7 GB)."""
  return index * (_KEY_SPACE // max(num_examples, 1))


def _json_ready(value: Any) -> Any:
  """``value`` with numpy arrays and scalars as lists and numbers (metadata.json is JSON)."""
  return json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))


def folder_metadata(folder: str, data_fields: Mapping[str, Any]) -> dict[str, Any]:
  """The builder metadata of a built `.npy` folder (see the module docstring)."""
  meta: dict[str, Any] = {'hrm_jax_metadata': METADATA_VERSION, 'data': dict(data_fields)}
  meta['splits'] = {}
  for split in ('train', 'test'):
    s = data_format.load_split(folder, split, mmap=True)
    meta['splits'][split] = {
      'metadata': dataclasses.asdict(s.metadata),
      'puzzle_identifiers': s.puzzle_identifiers,
      'puzzle_indices': s.puzzle_indices,
      'group_indices': s.group_indices,
    }
  for key, name in (
    ('identifiers', 'identifiers.json'),
    ('test_puzzles', 'test_puzzles.json'),
    ('build', 'build.json'),
    ('build', 'generator.json'),
  ):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      with open(path) as f:
        meta[key] = json.load(f)
  return _json_ready(meta)


def manual_folder(dl_manager: Any) -> Optional[str]:
  """The download manager's ``manual_dir`` when one is given and not empty, else None."""
  try:
    return os.fspath(dl_manager.manual_dir)
  except (AssertionError, ValueError):  # TFDS's ways of saying there is none
    return None


def fetch(
  dl_manager: Any,
  urls: Mapping[str, str],
  use_manual: Optional[Callable[[str], Optional[bool]]] = None,
) -> str:
  """A folder holding each file of ``urls`` (file name -> URL) under its file name.

  The ``manual_dir`` when it holds them all (or when ``use_manual(folder)`` says so, None
  leaving it to that rule): nothing is downloaded. Otherwise ``dl_manager.download`` fetches
  them over http(s) (TFDS copies local paths with TensorFlow's gfile, so not without it),
  checking each against the builder's ``checksums.tsv`` where that lists the URL (``--register_
  checksums`` records them), and links them under their file names into the download dir.
  """
  manual = manual_folder(dl_manager)
  if manual:
    decided = use_manual(manual) if use_manual else None
    if decided is None:
      decided = all(os.path.isfile(os.path.join(manual, f)) for f in urls)
    if decided:
      return manual
  paths = dl_manager.download(dict(urls))
  tag = hashlib.sha1(json.dumps(sorted(urls.items())).encode()).hexdigest()[:10]
  folder = os.path.join(os.fspath(dl_manager.download_dir), f'hrm_jax-{tag}')
  os.makedirs(folder, exist_ok=True)
  for name, path in paths.items():
    dest = os.path.join(folder, name)
    if os.path.lexists(dest):
      os.remove(dest)
    os.symlink(os.path.abspath(os.fspath(path)), dest)
  return folder


class HrmBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The shared builder; each dataset's module sets TASK, the configs and its DatasetInfo
  texts, and overrides ``_downloads`` and ``_task_features``/``_task_fields`` as needed."""

  VERSION = tfds.core.Version(DATASET_VERSION)
  RELEASE_NOTES = {DATASET_VERSION: 'First release: our .npy builders, one example per row.'}
  BUILDER_CONFIG_CLASS = Config
  TASK = ''
  DESCRIPTION = ''
  HOMEPAGE = ''
  CITATION = HRM_CITATION
  LICENSE = ''

  # -- what the subclasses change -------------------------------------------------------------

  def _downloads(self, fields: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """{data field: {file name: URL}}: files to fetch, and the field that gets their folder."""
    del fields
    return {}

  def _use_manual(self, folder: str) -> Optional[bool]:
    """Whether a given manual_dir replaces the downloads; None: when it holds every file."""
    del folder
    return None

  def _task_features(self) -> dict[str, Any]:
    """Features of the task's own per-example fields."""
    return {}

  def _task_fields(self, folder: str, split: str, s: data_format.Split) -> Callable[..., dict]:
    """fields(index, puzzle) -> the task's own fields of one example of ``split``."""
    del folder, split, s
    return lambda index, puzzle: {}

  # -- the shared part ------------------------------------------------------------------------

  def data_fields(self) -> dict[str, Any]:
    """The complete `data` fields of this config: the task's defaults updated by its own."""
    return tasks.get(self.TASK).data_config() | dict(self.builder_config.data)

  def _info(self) -> tfds.core.DatasetInfo:
    vocab, seq_len = tasks.get(self.TASK).shapes(ml_collections.ConfigDict(self.data_fields()))
    token = np.uint8 if vocab <= 256 else np.int32
    features = {
      'index': tfds.features.Scalar(np.int64, doc='row of the split in the .npy layout'),
      'inputs': tfds.features.Tensor(shape=(seq_len,), dtype=token),
      'labels': tfds.features.Tensor(shape=(seq_len,), dtype=token),
      'puzzle_identifier': tfds.features.Scalar(np.int32, doc='puzzle-embedding row'),
      'puzzle_index': tfds.features.Scalar(np.int32, doc='the puzzle (variant) of the example'),
      'group': tfds.features.Scalar(np.int32, doc='the group (base puzzle) of the puzzle'),
      'puzzle_name': tfds.features.Text(doc='identifiers[puzzle_identifier]'),
      **self._task_features(),
    }
    return tfds.core.DatasetInfo(
      builder=self,
      description=self.DESCRIPTION,
      features=tfds.features.FeaturesDict(features),
      homepage=self.HOMEPAGE,
      citation=self.CITATION,
      license=self.LICENSE,
      disable_shuffling=True,  # example i is row i: the seeded sampler's order (reader.py)
      metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
    spill_without_tensorflow()  # before any split is written (a large one spills to disk)
    fields = self.data_fields()
    for field, files in self._downloads(fields).items():
      files = {name: self.builder_config.urls.get(name, url) for name, url in files.items()}
      fields[field] = fetch(dl_manager, files, self._use_manual)
    # The .npy build goes beside the downloads (the same disk as the output, not /tmp: ARC's
    # recipe is 6.8 GB) and is removed once both splits are written.
    root = os.fspath(dl_manager.download_dir)
    os.makedirs(root, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=f'hrm_jax-npy-{self.builder_config.name}-', dir=root)
    folder = tasks.get(self.TASK).prepare(ml_collections.ConfigDict(fields), workdir)
    self.info.metadata.update(folder_metadata(folder, self.builder_config.data))
    pending = {'train', 'test'}

    def done(split: str) -> None:
      pending.discard(split)
      if not pending:
        shutil.rmtree(workdir, ignore_errors=True)

    return {s: self._generate_examples(folder, s, done) for s in ('train', 'test')}

  def _generate_examples(
    self, folder: str, split: str, done: Callable[[str], None] = lambda split: None
  ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(key, example) of each row of ``split`` of the `.npy` ``folder``, in row order."""
    s = data_format.load_split(folder, split, mmap=True)
    names = self.info.metadata.get('identifiers') or ['<blank>']
    puzzle_of = np.repeat(np.arange(s.num_puzzles), np.diff(s.puzzle_indices))
    group_of = np.repeat(np.arange(s.num_groups), np.diff(s.group_indices))
    task_fields = self._task_fields(folder, split, s)
    for i in range(s.num_examples):
      p = int(puzzle_of[i])
      pid = int(s.puzzle_identifiers[p])
      yield (
        spread_key(i, s.num_examples),
        {
          'index': i,
          'inputs': np.asarray(s.inputs[i]),
          'labels': np.asarray(s.labels[i]),
          'puzzle_identifier': pid,
          'puzzle_index': p,
          'group': int(group_of[p]),
          'puzzle_name': names[pid],
          **task_fields(i, p),
        },
      )
    done(split)
