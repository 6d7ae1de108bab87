"""Weights & Biases logging (log.wandb): the Writer's records reach a W&B run, here in offline
mode (no network), and a resumed run continues the same W&B run."""

import importlib.util
import json
import struct
import time

import pytest

from hrm_jax import config, metric_log


def _history(run_dir) -> list[dict]:
  """The logged rows of an offline run, {key: value, '_step': step}: the history records of its
  `.wandb` file (a LevelDB-style log of 32 KiB blocks after a 7-byte header, each chunk a
  7-byte header and data) parsed with wandb's own protobuf messages."""
  from wandb.proto import wandb_internal_pb2

  (path,) = run_dir.glob('*.wandb')
  data = path.read_bytes()
  assert data[:4] == b':W&B'
  pos, chunks, rows = 7, b'', []
  while pos + 7 <= len(data):
    if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
      pos += 32768 - pos % 32768
      continue
    _, length, kind = struct.unpack('<IHB', data[pos : pos + 7])
    if pos + 7 + length > len(data):  # still being written
      break
    chunks += data[pos + 7 : pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):  # FULL or LAST: a whole record
      record = wandb_internal_pb2.Record()
      record.ParseFromString(chunks)
      chunks = b''
      if record.WhichOneof('record_type') == 'history':
        items = record.history.item
        rows.append({i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in items})
  return rows


def test_wandb_offline(tmp_path, monkeypatch):
  pytest.importorskip('wandb', reason='the test extra installs wandb; CI runs this test')
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_DIR', str(tmp_path / 'elsewhere'))  # dir= (the workdir) wins
  monkeypatch.setenv('WANDB_SILENT', 'true')
  monkeypatch.setenv('WANDB_CONSOLE', 'off')
  cfg = config.base_config()
  assert metric_log.wandb_settings(cfg) is None  # off by default
  cfg.log.wandb, cfg.log.wandb_run_name = True, 'tiny'
  workdir = tmp_path / 'run'
  w = metric_log.Writer(str(workdir), tensorboard=False, wandb=metric_log.wandb_settings(cfg))
  w.write(dict(step=0, split='meta', num_params=123))
  w.write(dict(step=10, split='train', lm_loss=1.5, accuracy=0.25))
  w.write(dict(step=10, split='eval', exact_accuracy=0.5, M_max=4))
  w.write(dict(step=20, split='train', lm_loss=1.0, accuracy=0.5))
  w.close()
  assert len(open(workdir / 'metrics.jsonl').readlines()) == 4
  run_id = (workdir / 'wandb_id').read_text().strip()
  (run_dir,) = (workdir / 'wandb').glob(f'offline-run-*-{run_id}')
  for _ in range(100):  # wandb's service may still be writing the file when finish() returns
    rows = _history(run_dir)
    if {row['_step'] for row in rows} == {0, 10, 20}:
      break
    time.sleep(0.1)
  by_step = {}
  for row in rows:
    by_step.setdefault(row['_step'], {}).update(row)
  assert by_step[0]['meta/num_params'] == 123
  assert by_step[10]['train/lm_loss'] == 1.5 and by_step[10]['eval/exact_accuracy'] == 0.5
  assert by_step[20]['train/accuracy'] == 0.5
  assert by_step[10]['eval/M_max'] == 4
  assert not (tmp_path / 'elsewhere').exists()

  # A rerun on the workdir logs to the same W&B run.
  w = metric_log.Writer(str(workdir), tensorboard=False, wandb=metric_log.wandb_settings(cfg))
  assert w.wandb.id == run_id
  w.close()


def test_wandb_missing_is_a_config_error(monkeypatch):
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, 'find_spec', lambda name, *a: None if name == 'wandb' else find_spec(name, *a)
  )
  cfg = config.base_config()
  config.validate(cfg)  # off: not needed
  cfg.log.wandb = True
  with pytest.raises(config.ConfigError, match=r'log.wandb: .*pip install -e "\.\[wandb\]"'):
    config.validate(cfg)
