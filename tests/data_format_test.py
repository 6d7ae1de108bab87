"""Tests of hrm_jax.data.format: the §6.1 on-disk format, its validation and atomic writes."""

import dataclasses
import json
import os

import numpy as np
import pytest

from hrm_jax.data import format as fmt


def _meta(**overrides):
  fields = dict(
    pad_id=0,
    ignore_label_id=0,
    blank_identifier_id=0,
    vocab_size=11,
    seq_len=4,
    num_puzzle_identifiers=3,
    total_groups=2,
    mean_puzzle_examples=1.5,
    sets=['all'],
  )
  return fmt.Metadata(**(fields | overrides))


def _arrays():
  """3 puzzles in 2 groups: puzzle 0 has 2 examples, 1 and 2 one each; 4 examples of length 4."""
  inputs = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 1, 1], [2, 2, 2, 2]])
  labels = np.array([[0, 2, 0, 4], [5, 0, 7, 8], [9, 10, 1, 0], [2, 2, 2, 2]])
  return dict(
    inputs=inputs,
    labels=labels,
    puzzle_identifiers=np.array([1, 2, 0]),
    puzzle_indices=np.array([0, 2, 3, 4]),
    group_indices=np.array([0, 2, 3]),
  )


def _write(root, split='train', meta=None, **arrays):
  fmt.write_split(str(root), split, meta or _meta(), **(_arrays() | arrays))
  return str(root)


def test_round_trip_and_label_conversion(tmp_path):
  root = _write(tmp_path)
  fmt.write_identifiers(root, ['<blank>', 'a', 'b'])
  split = fmt.load_split(root, 'train')
  a = _arrays()
  np.testing.assert_array_equal(split.inputs, a['inputs'])
  np.testing.assert_array_equal(split.labels, np.where(a['labels'] == 0, -100, a['labels']))
  for name in ('puzzle_identifiers', 'puzzle_indices', 'group_indices'):
    np.testing.assert_array_equal(getattr(split, name), a[name])
    assert getattr(split, name).dtype == np.int32
  assert split.inputs.dtype == split.labels.dtype == np.int32
  assert (split.num_examples, split.num_puzzles, split.num_groups) == (4, 3, 2)
  assert split.metadata == dataclasses.replace(_meta(), total_puzzles=3)
  assert json.load(open(os.path.join(root, 'identifiers.json'))) == ['<blank>', 'a', 'b']


def test_files_match_reference_layout(tmp_path):
  root = _write(tmp_path)
  d = os.path.join(root, 'train')
  assert np.load(os.path.join(d, 'all__inputs.npy')).dtype == np.uint8
  assert np.load(os.path.join(d, 'all__labels.npy')).dtype == np.uint8
  assert np.load(os.path.join(d, 'all__group_indices.npy')).dtype == np.int32
  meta = json.load(open(os.path.join(d, 'dataset.json')))
  assert meta['total_puzzles'] == 3 and meta['ignore_label_id'] == 0 and meta['sets'] == ['all']
  # A large vocabulary cannot be stored in uint8.
  big = _write(tmp_path / 'big', meta=_meta(vocab_size=300))
  assert np.load(os.path.join(big, 'train', 'all__inputs.npy')).dtype == np.int32


def test_mmap_split_converts_on_take(tmp_path):
  split = fmt.load_split(_write(tmp_path), 'train', mmap=True)
  assert not split.converted and split.labels.dtype == np.uint8
  inputs, labels = split.take(np.array([1, 0]))
  assert inputs.dtype == labels.dtype == np.int32
  np.testing.assert_array_equal(labels[0], [5, -100, 7, 8])
  assert split.labels[1, 1] == 0  # the memory map itself is untouched


def test_metadata_json_tolerates_unknown_keys_and_nulls():
  d = json.loads(_meta(ignore_label_id=None).to_json()) | {'extra': 1}
  del d['total_puzzles']
  meta = fmt.Metadata.from_json(json.dumps(d))
  assert meta.ignore_label_id is None and meta.total_puzzles is None
  with pytest.raises(fmt.DatasetError, match='missing field.*seq_len'):
    fmt.Metadata.from_json({k: v for k, v in d.items() if k != 'seq_len'}, source='x.json')


def _npy(root, name):
  return os.path.join(root, 'train', f'all__{name}.npy')


def _corrupt_truncated(root):
  path = _npy(root, 'inputs')
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:-5])
  return path


def _corrupt_offsets(root):
  np.save(_npy(root, 'puzzle_indices'), np.array([0, 3, 2, 4], np.int32))
  return _npy(root, 'puzzle_indices')


def _corrupt_last_offset(root):
  np.save(_npy(root, 'group_indices'), np.array([0, 2, 2], np.int32))
  return _npy(root, 'group_indices')


def _corrupt_token(root):
  bad = _arrays()['inputs'].astype(np.uint8)
  bad[2, 1] = 11
  np.save(_npy(root, 'inputs'), bad)
  return _npy(root, 'inputs')


def _corrupt_identifier(root):
  np.save(_npy(root, 'puzzle_identifiers'), np.array([1, 3, 0], np.int32))
  return _npy(root, 'puzzle_identifiers')


def _corrupt_shape(root):
  np.save(_npy(root, 'labels'), np.zeros((4, 5), np.uint8))
  return _npy(root, 'labels')


def _corrupt_dtype(root):
  np.save(_npy(root, 'inputs'), np.zeros((4, 4), np.float32))
  return _npy(root, 'inputs')


def _missing_array(root):
  os.remove(_npy(root, 'group_indices'))
  return _npy(root, 'group_indices')


def _array_is_a_directory(root):
  os.remove(_npy(root, 'labels'))
  os.mkdir(_npy(root, 'labels'))  # issue 18: was reported as "file is missing"
  return _npy(root, 'labels')


def _missing_metadata(root):
  path = os.path.join(root, 'train', 'dataset.json')
  os.remove(path)
  return path


def _metadata_seq_len(root):
  path = os.path.join(root, 'train', 'dataset.json')
  open(path, 'w').write(dataclasses.replace(_meta(), seq_len=5).to_json())
  return _npy(root, 'inputs')


@pytest.mark.parametrize(
  'corrupt, message',
  [
    (_corrupt_truncated, 'unreadable'),
    (_corrupt_offsets, 'not monotonic'),
    (_corrupt_last_offset, 'increasing'),
    (_corrupt_token, 'token id 11 outside'),
    (_corrupt_identifier, 'puzzle identifier 3 outside'),
    (_corrupt_shape, 'inputs shape'),
    (_corrupt_dtype, 'not an integer'),
    (_missing_array, 'missing'),
    (_array_is_a_directory, 'is a directory, expected a .npy file'),
    (_missing_metadata, 'cannot read'),
    (_metadata_seq_len, 'seq_len 4 != metadata seq_len 5'),
  ],
)
def test_corruption_names_the_file(tmp_path, corrupt, message):
  root = _write(tmp_path)
  path = corrupt(root)
  with pytest.raises(fmt.DatasetError, match=message) as err:
    fmt.load_split(root, 'train')
  assert path in str(err.value)


def test_missing_folder(tmp_path):
  with pytest.raises(fmt.DatasetError, match='does not exist') as err:
    fmt.load_split(str(tmp_path / 'nope'))
  assert str(tmp_path / 'nope') in str(err.value)


def test_write_refuses_invalid_arrays(tmp_path):
  with pytest.raises(fmt.DatasetError, match='offsets must start at 0'):
    _write(tmp_path, puzzle_indices=np.array([1, 2, 3, 4]))


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
  final = tmp_path / 'ds'
  with pytest.raises(RuntimeError):
    with fmt.atomic_dataset_dir(str(final)) as tmp:
      _write(tmp)
      raise RuntimeError('build failed')
  assert os.listdir(tmp_path) == []

  with fmt.atomic_dataset_dir(str(final)) as tmp:
    assert os.path.dirname(tmp) == str(tmp_path) and not final.exists()
    _write(tmp)
  assert fmt.load_split(str(final)).num_examples == 4
  assert os.listdir(tmp_path) == ['ds']

  with pytest.raises(FileExistsError):
    with fmt.atomic_dataset_dir(str(final)) as tmp:
      _write(tmp)
  with fmt.atomic_dataset_dir(str(final), overwrite=True) as tmp:
    _write(tmp, meta=_meta(vocab_size=12))
  assert fmt.load_metadata(str(final)).vocab_size == 12
  assert os.listdir(tmp_path) == ['ds']
