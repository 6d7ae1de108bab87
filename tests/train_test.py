"""End to end: a tiny run's loss falls, its outputs follow the contract, it restores."""

import json
import os
import shutil

import chex
import jax
import numpy as np

from hrm_jax import checkpoint, evaluate, train
from hrm_jax import train_step as ts
from hrm_jax.data import format as data_format
from tests import helpers


def test_loss_falls_and_metrics_are_logged(tiny_run):
  cfg, workdir, metrics = tiny_run
  train_logs = helpers.records(workdir, 'train')
  assert [r['step'] for r in train_logs] == [10, 20, 30, 40]
  assert train_logs[-1]['lm_loss'] < 0.8 * train_logs[0]['lm_loss'], train_logs
  for key in (
    'accuracy',
    'exact_accuracy',
    'q_halt_accuracy',
    'steps',
    'lm_loss',
    'q_halt_loss',
    'q_continue_loss',
    'blank_accuracy',
    'lr',
    'steps_per_s',
    'count',
  ):
    assert key in train_logs[-1], key
  evals = helpers.records(workdir, 'eval')
  assert [r['step'] for r in evals] == [20, 40]
  assert evals[-1]['steps'] == evals[-1]['M_max'] == cfg.act.halt_max_steps
  assert evals[-1]['count'] == cfg.data.num_test
  assert metrics == {k: v for k, v in evals[-1].items() if k in metrics}
  # The logged figures are those of M_max segments of the final weights, recomputed here.
  helpers.assert_eval_close(metrics, _manual_eval(cfg, workdir, cfg.act.halt_max_steps))


def _manual_eval(cfg, workdir: str, M: int) -> dict:
  """helpers.manual_eval of the latest checkpoint in `workdir` on its whole test split."""
  from hrm_jax import tasks

  _, graphdef, state, _, _ = evaluate.load_trained(cfg, workdir)
  batch = helpers.test_examples(tasks.prepare_data(cfg, workdir))
  params = ts.eval_params(state)
  return helpers.manual_eval(graphdef, params, state.buffers, state.puzzle_emb, batch, M)


def _tensorboard_tags(logdir: str) -> dict[str, list[int]]:
  """{tag: [steps]} of the TensorBoard event files in `logdir` (TFRecord framing)."""
  import struct

  from tensorboardX.proto import event_pb2

  tags: dict[str, list[int]] = {}
  for name in os.listdir(logdir):
    data = open(os.path.join(logdir, name), 'rb').read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack('<Q', data[pos : pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(event.step)
  return tags


def test_tensorboard_has_every_metric_and_a_prediction_image(tiny_run):
  cfg, workdir, _ = tiny_run
  tags = _tensorboard_tags(os.path.join(workdir, 'tensorboard'))
  assert tags['train/lm_loss'] == [10, 20, 30, 40]
  assert tags['eval/exact_accuracy'] == [20, 40]
  for key in helpers.records(workdir, 'eval')[-1]:
    if key not in ('step', 'split'):
      assert f'eval/{key}' in tags, key
  assert tags['eval/prediction'] == [20, 40]
  png = os.path.join(workdir, 'eval', 'step_40', 'prediction.png')
  assert open(png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_checkpoint_restores_and_eval_mode_reproduces(tiny_run, capsys):
  cfg, workdir, metrics = tiny_run
  mngr = checkpoint.manager(workdir, read_only=True)
  assert mngr.latest_step() == cfg.train.steps
  again = evaluate.evaluate_checkpoint(cfg, workdir)
  for k in ('exact_accuracy', 'accuracy', 'blank_accuracy', 'lm_loss'):
    np.testing.assert_allclose(again[k], metrics[k], rtol=1e-5)
  out = capsys.readouterr().out
  assert f'eval step={cfg.train.steps} exact_accuracy=' in out
  # The restored tree holds the trained parameters and the ACT carry.
  with open(os.path.join(workdir, 'train_metadata.json')) as f:
    meta = data_format.Metadata.from_json(f.read())
  from hrm_jax import config as config_lib

  rcfg = config_lib.resolve(cfg, 1.0)
  graphdef, state = ts.init_state(rcfg, meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers)
  carry = ts.init_carry(graphdef, state, cfg.train.global_batch_size, meta.seq_len)
  step, restored, _ = checkpoint.restore(mngr, {'state': state, 'carry': carry})
  assert step == cfg.train.steps and int(restored['state'].step) == cfg.train.steps
  chex.assert_trees_all_equal_shapes(restored['state'].params, state.params)
  assert not np.allclose(
    jax.tree.leaves(restored['state'].params)[0], jax.tree.leaves(state.params)[0]
  )
  assert int(restored['carry'].steps.max()) >= 1


def test_rerun_resumes_instead_of_retraining(tiny_run, tmp_path, capsys):
  cfg, workdir, _ = tiny_run
  workdir = str(shutil.copytree(workdir, tmp_path / 'run'))  # the shared run stays as it was
  log = os.path.join(workdir, 'metrics.jsonl')
  with open(log) as f:
    records = f.read()
  # A run killed while it saved leaves its partial save, which orbax kept until that step was
  # saved again: room that a full disk lacks (the fault drill's full_disk failed on it in CI).
  partial = os.path.join(workdir, 'checkpoints', f'{cfg.train.steps + 4}.orbax-checkpoint-tmp')
  os.makedirs(os.path.join(partial, 'train'))
  train.train_and_evaluate(cfg, workdir)
  out = capsys.readouterr().out
  assert not os.path.exists(partial)
  assert f'removed {os.path.basename(partial)}: the partial save of an interrupted run' in out
  assert f'resumed from step {cfg.train.steps}' in out
  assert 'train step=' not in out
  assert f'eval step={cfg.train.steps} exact_accuracy=' in out
  # The finished run's log is left as it was: not a second record of the same evaluation.
  with open(log) as f:
    assert f.read() == records
  # Without its final evaluation's record (that evaluation failed or was killed), a rerun
  # writes it, once.
  lines = records.splitlines(keepends=True)
  final = [i for i, line in enumerate(lines) if json.loads(line)['split'] == 'eval'][-1]
  with open(log, 'w') as f:
    f.write(''.join(lines[:final] + lines[final + 1 :]))
  train.train_and_evaluate(cfg, workdir)
  evals = helpers.records(workdir, 'eval')
  assert [r['step'] for r in evals] == [cfg.train.eval_every, cfg.train.steps]
  assert evals[-1] == json.loads(lines[final])


def test_eval_with_raised_M_max_on_another_folder(tiny_run):
  """Inference-time scaling: evaluate with M_max above training's, on an explicit folder."""
  cfg, workdir, _ = tiny_run
  cfg = cfg.copy_and_resolve_references()
  cfg.eval.halt_max_steps = 2 * cfg.act.halt_max_steps
  data_dir = os.path.join(workdir, 'data', os.listdir(os.path.join(workdir, 'data'))[0])
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    run_records = f.read()
  metrics = evaluate.evaluate_checkpoint(cfg, workdir, eval_data=data_dir)
  assert metrics['steps'] == 2 * 4
  assert metrics['count'] == cfg.data.num_test
  # Issue 18: its record goes apart from the training run's (which a resume rewrites), marked
  # with the dataset and M_max.
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert f.read() == run_records
  with open(os.path.join(evaluate.eval_mode_dir(workdir), 'metrics.jsonl')) as f:
    record = json.loads(f.readlines()[-1])
  assert record['mode'] == 'eval' and record['data'] == os.path.abspath(data_dir)
  assert record['step'] == cfg.train.steps and record['M_max'] == 2 * cfg.act.halt_max_steps
  assert record['exact_accuracy'] == metrics['exact_accuracy']
  # It ran 2·M_max segments: its figures are those of 2·M_max segments run one by one, and the
  # loss differs from M_max segments' far beyond that agreement.
  M = cfg.act.halt_max_steps
  want, fewer = _manual_eval(cfg, workdir, 2 * M), _manual_eval(cfg, workdir, M)
  helpers.assert_eval_close(metrics, want)
  # Farther apart than both agreements together (2·delta each) could bridge.
  apart = 2 * (want['logit_tol'] + fewer['logit_tol'])
  assert abs(want['lm_loss'] - fewer['lm_loss']) > max(1e-2 * want['lm_loss'], apart), (
    want['lm_loss'],
    fewer['lm_loss'],
    apart,
  )
