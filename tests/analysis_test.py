"""Participation ratio, residual series and scaling on known answers; the analyze CLI end to end."""

import os
import subprocess
import sys

import numpy as np
import pytest

from hrm_jax import evaluate, sharding, tasks
from hrm_jax.analysis import measures, rollout
from hrm_jax.data import format as data_format
from tests import helpers


@pytest.mark.parametrize('n,d', [(4000, 20), (300, 2000)])  # both Gram-matrix branches
def test_participation_ratio_of_isotropic_gaussian_is_its_dimension(n, d):
  rng = np.random.default_rng(0)
  k = 5
  basis = np.linalg.qr(rng.normal(size=(d, k)))[0]  # k orthonormal directions in R^d
  X = rng.normal(size=(n, k)) @ basis.T + 3.0  # the offset is centred away
  assert measures.participation_ratio(X) == pytest.approx(k, rel=0.05 if n > d else 0.1)


def test_participation_ratio_edge_cases():
  rng = np.random.default_rng(1)
  rank1 = rng.normal(size=(50, 1)) * rng.normal(size=(1, 30))
  assert measures.participation_ratio(rank1) == pytest.approx(1.0)
  # Two directions with variances 1 and 4 (x2): PR = (1 + 4)² / (1 + 16) = 25/17.
  X = np.concatenate([np.eye(2), -np.eye(2)]) * np.array([1.0, 2.0])
  assert measures.participation_ratio(X) == pytest.approx(25 / 17)
  assert np.isnan(measures.participation_ratio(np.ones((5, 3))))
  assert np.isnan(measures.participation_ratio(np.ones((1, 3))))


def test_residual_series_on_a_toy_trajectory():
  # M = 2 segments of K = 3 steps (L, L, H), B = 2 rows, the second row padding.
  kinds = np.array([rollout.LOW, rollout.LOW, rollout.HIGH])
  res_L = np.array([[[4, 9], [2, 9], [0, 0]], [[1, 9], [0.5, 9], [0, 0]]], np.float32)
  res_H = np.array([[[0, 0], [0, 0], [3, 9]], [[0, 0], [0, 0], [1.5, 9]]], np.float32)
  traj = rollout.Trajectory(res_H, res_L, kinds, np.zeros((2, 2, 1)), np.zeros((2, 2)), None)
  s = measures.residual_series(traj, valid=np.array([True, False]))
  np.testing.assert_array_equal(s['L'][0], [1, 2, 4, 5])
  np.testing.assert_allclose(s['L'][1], [4, 2, 1, 0.5])
  np.testing.assert_array_equal(s['H'][0], [3, 6])
  np.testing.assert_allclose(s['H'][1], [3, 1.5])
  summary = measures.residual_summary(dict(model=s, baseline=s, K=3, M=2))
  assert summary == dict(residual_h_last=1.5, residual_l_last=0.75, residual_baseline_l_last=0.75)


def test_segment_scores_and_q_halting_rule():
  inputs = np.array([[1, 5, 1], [1, 1, 1]])
  labels = np.array([[3, 5, 4], [-100, -100, -100]])
  preds = np.array([[[3, 5, 2], [0, 0, 0]], [[3, 5, 4], [0, 0, 0]]])  # [M=2, B=2, L=3]
  sc = measures.segment_scores(preds, dict(inputs=inputs, labels=labels))
  np.testing.assert_array_equal(sc['exact'][:, 0], [False, True])
  np.testing.assert_allclose(sc['token_acc'][:, 0], [2 / 3, 1.0])
  np.testing.assert_array_equal(sc['blank_correct'][:, 0], [1, 2])
  np.testing.assert_array_equal(sc['blank_count'][:, 0], [2, 2])
  np.testing.assert_array_equal(sc['valid'], [True, False])
  q_halt, q_cont = np.array([-1.0, 0.5, 2.0]), np.array([-2.0, 1.0, 1.0])
  np.testing.assert_array_equal(
    measures.q_says_halt(q_halt, q_cont, 'q_continue'), [True, False, True]
  )
  np.testing.assert_array_equal(measures.q_says_halt(q_halt, q_cont, 'zero'), [False, True, True])


def test_scaling_table_matches_eval_and_prs_are_finite(tiny_run):
  cfg, workdir, metrics = tiny_run
  loaded = rollout.load(workdir, cfg)
  M = cfg.act.halt_max_steps
  table = measures.scaling(loaded, rollout.eval_batches(loaded), (1, 2, M, 2 * M))
  assert sorted(table) == [1, 2, M, 2 * M]
  for m, row in table.items():
    assert set(row) == {
      'exact_accuracy',
      'accuracy',
      'blank_accuracy',
      'steps',
      'qhalt_exact_accuracy',
      'qhalt_steps',
      'count',
    }
    assert row['steps'] == m and 1 <= row['qhalt_steps'] <= m
    assert row['count'] == cfg.data.num_test
  # Segment M of the rollout is the training loop's evaluation at M_max = M, and segment 2M is
  # `--mode=eval --config.eval.halt_max_steps=2M` (evaluate.run_eval): both equal to M (2M)
  # segments run one by one here, up to summation order (helpers.assert_eval_close).
  ecfg = loaded.cfg.copy_and_resolve_references()
  ecfg.eval.halt_max_steps = 2 * M
  mesh = sharding.Mesh()
  eval_fn = evaluate.make_eval_fn(ecfg, loaded.graphdef, mesh)
  split_dir = tasks.prepare_data(ecfg, workdir)
  split = data_format.load_split(split_dir, 'test')
  again = evaluate.run_eval(ecfg, eval_fn, loaded.state, split, mesh)
  s = loaded.state
  everything = helpers.test_examples(split_dir)
  for m, evaluations in ((M, (table[M], metrics)), (2 * M, (table[2 * M], again))):
    want = helpers.manual_eval(loaded.graphdef, s.params, s.buffers, s.puzzle_emb, everything, m)
    for got in evaluations:
      helpers.assert_eval_close(got, want)

  pr = measures.participation_ratios(loaded, rollout.eval_batches(loaded, 16), M, (4, 16))
  assert pr['num_samples'] == 16 * M and pr['curve_sizes'] == [4, 16]
  for v in (pr['pr_h'], pr['pr_l'], *pr['curve_h'], *pr['curve_l']):
    assert 1.0 <= v <= 16 * M
  assert pr['curve_h'][-1] == pr['pr_h']
  # The same ratios through the covariance's eigenvalues (float64 SVD), from the states the
  # rollout gives for these 16 puzzles (one code path: tests/rollout_test.py checks that those
  # states are model.segment's), so only the ratio's own float64 arithmetic differs.
  batch = next(rollout.eval_batches(loaded, 16))
  traj = rollout.rollout(loaded, batch, M, keep='segments')
  for name in ('h', 'l'):
    z = np.swapaxes(getattr(traj, f'z_{name.upper()}'), 0, 1)  # [puzzles, M, S, D]
    want = [_pr_by_eigenvalues(z[:n].reshape(n * M, -1)) for n in (4, 16)]
    np.testing.assert_allclose(pr[f'curve_{name}'], want, rtol=1e-9, err_msg=name)
    assert pr[f'pr_{name}'] == pr[f'curve_{name}'][-1]


def _pr_by_eigenvalues(X):
  """(Σλ)² / Σλ² of the eigenvalues λ of the covariance of the rows of X (float64)."""
  Xc = np.asarray(X, np.float64) - np.mean(X, axis=0, dtype=np.float64)
  lam = np.linalg.svd(Xc, compute_uv=False) ** 2  # ∝ the covariance's eigenvalues
  return lam.sum() ** 2 / (lam**2).sum()


def _override_flags(cfg, preset_cfg, prefix='--config'):
  """Command-line overrides turning `preset_cfg` into `cfg` (the leaves that differ)."""
  flags = []
  for k, v in cfg.items():
    if hasattr(v, 'items'):
      flags += _override_flags(v, preset_cfg[k], f'{prefix}.{k}')
    elif v != preset_cfg[k]:
      flags.append(f'{prefix}.{k}={v}')
  return flags


def test_analyze_cli_end_to_end(tiny_run, tmp_path):
  cfg, workdir, _ = tiny_run
  args = ['--config=experiments/sudoku.py:cpu'] + _override_flags(
    cfg, helpers.load_config('experiments/sudoku.py', 'cpu')
  )
  out = tmp_path / 'analysis'
  r = subprocess.run(
    [
      sys.executable,
      '-m',
      'hrm_jax.analyze',
      f'--workdir={workdir}',
      f'--out={out}',
      '--scaling_m=1,2,4',
      '--pr_examples=16',
      '--residual_examples=16',
      '--scaling_examples=16',
      *args,
    ],
    cwd=helpers.ROOT,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  lines = dict(line.split(': ', 1) for line in r.stdout.splitlines() if ': ' in line)
  for name in ('pr_h', 'pr_l', 'pr_h_random', 'pr_l_random', 'residual_baseline_l_last'):
    assert np.isfinite(float(lines[name])), name
  # The scaling figures are those of m segments on the first 16 test puzzles, recomputed here.
  _, graphdef, state, _, _ = evaluate.load_trained(cfg, workdir)
  batch = helpers.test_examples(tasks.prepare_data(cfg, workdir), 16)
  for m in (1, 2, 4):
    want = helpers.manual_eval(graphdef, state.params, state.buffers, state.puzzle_emb, batch, m)
    got = {k: float(lines[f'scaling_m{m}_{k}']) for k in ('exact_accuracy', 'blank_accuracy')}
    helpers.assert_eval_close(got, want, rel=1e-5)  # the command prints 6 significant digits
  for png in ('residuals', 'participation', 'scaling', 'predictions', 'training_curves'):
    assert (out / f'{png}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', png
  assert lines['step'] == str(cfg.train.steps)
