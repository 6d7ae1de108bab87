"""Shared test helpers: load experiment configs by path, small configs (`small`)."""

import importlib.util
import json
import math
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _experiment(path: str):
  spec = importlib.util.spec_from_file_location('exp_config', os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(path: str, preset: str = ''):
  """get_config(preset) of an experiments/*.py file, as `--config=path:preset` would."""
  return _experiment(path).get_config(preset)


def preset_names(path: str) -> list[str]:
  """The preset names an experiments/*.py file defines (its PRESETS dict), sorted."""
  return sorted(_experiment(path).PRESETS)


def tiny_config(preset: str = 'tiny'):
  """A Sudoku CPU preset made small enough to train for 40 steps in seconds on 2 CPU cores:
  `config.shrink` with batch 16 and M_max 4, on 64 easy training puzzles. The default is the
  attention HRM of the `tiny` preset (TensorBoard on, as every other preset); `trm_att_cpu`,
  `trm_cpu` and `cpu` work too."""
  from hrm_jax import config as config_lib

  cfg = config_lib.shrink(
    load_config('experiments/sudoku.py', preset),
    batch_size=16,
    steps=40,
    eval_every=20,
    log_every=10,
    halt_max_steps=4,
    lr=3e-3,
    lr_warmup_steps=5,
  )
  cfg.data.update(
    num_train=64,
    num_test=32,
    num_aug=2,
    train_min_blanks=20,
    train_max_blanks=30,
    test_min_blanks=35,
    test_max_blanks=40,
  )
  cfg.log.tensorboard = True
  return cfg


def check_sudoku_pairs(q, s):
  """Asserts each solution is a valid Sudoku and each question agrees with it on its givens."""
  import numpy as np

  from hrm_jax.data import sudoku

  q, s = np.asarray(q).reshape(-1, 81), np.asarray(s).reshape(-1, 81)
  assert sudoku.is_valid_solution(s).all()
  assert ((q == 0) | (q == s)).all()


def tiny_trm_config():
  """`tiny_config` of the attention TRM preset, with an EMA rate that moves within 40 steps."""
  cfg = tiny_config('trm_att_cpu')
  cfg.ema.rate = 0.9
  return cfg


def records(workdir: str, split: str) -> list[dict]:
  """The metrics.jsonl records of `workdir` (a folder or a bucket) whose split is `split`
  (train, eval, meta)."""
  from etils import epath

  lines = (epath.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [r for r in map(json.loads, lines) if r['split'] == split]


# `python -m hrm_jax.main` flags for a run of seconds: the `tiny` preset (hidden 32, 6 steps).
TINY_MAIN_FLAGS = ('--config=experiments/sudoku.py:tiny',)


def main_command(*flags: str) -> list[str]:
  """argv of `python -m hrm_jax.main` with `flags` (this interpreter)."""
  import sys

  return [sys.executable, '-m', 'hrm_jax.main', *flags]


def main_env(devices: int = 1, **extra: str) -> dict:
  """Environment for a CPU subprocess with `devices` fake CPU devices."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', **extra)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  return env


def run_module(module: str, *flags: str, devices: int = 1, timeout: int = 300):
  """`python -m <module> <flags>` run in a CPU subprocess from the repository root: the
  CompletedProcess, output captured as text."""
  import subprocess
  import sys

  return subprocess.run(
    [sys.executable, '-m', module, *flags],
    cwd=ROOT,
    env=main_env(devices),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def run_main(*flags: str, devices: int = 1, timeout: int = 300):
  """Runs `python -m hrm_jax.main` in a subprocess; raises with its output if it fails."""
  r = run_module('hrm_jax.main', *flags, devices=devices, timeout=timeout)
  assert r.returncode == 0, r.stdout + r.stderr
  return r


def trained_params(workdir: str):
  """(params, puzzle table, EMA weights) of the latest checkpoint in `workdir`, as numpy on 1
  device, restored with the config the run saved."""
  import jax

  from hrm_jax import evaluate
  from hrm_jax import train_step as ts
  from hrm_jax import workdir as workdir_lib

  _, _, state, _, _ = evaluate.load_trained(workdir_lib.saved_config(workdir), workdir)
  return jax.device_get((state.params, state.puzzle_emb, ts.eval_params(state)))


U = 2.0**-24  # fp32 unit roundoff


def state_tol(model_cfg, S: int, evals: int) -> float:
  """How far two compilations of the same fp32 network may move a state after `evals`
  sequential cell evaluations (jitted vs not, scanned vs looped, another CPU's kernels).

  Programs that compute the same thing may sum a contraction's n terms in another order. The
  probabilistic rounding-error bound (Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019: a sum of
  n terms, in any order, is off by at most λ·sqrt(n)·u·Σ|terms| with probability at least
  1 − 2·exp(−λ²/2); u = 2^-24) with λ = 6 (failure probability 3e-8 per sum) gives each
  evaluation λ·sqrt(n)·u·sqrt(D): the states are RMS-normalised rows of D entries (none above
  sqrt(D)) and n is the widest contraction (a SwiGLU's hidden width, over channels or over the
  S positions for the MLP mixer, or attention's sum over S). Each evaluation passes earlier
  differences on through a post-norm block (Lipschitz ≈ 1), so they add up over `evals`. A
  wrong schedule or a missing step moves states by O(1).
  """
  from hrm_jax.models import layers

  D = model_cfg.hidden_size
  widths = [D, S, layers.swiglu_width(D, model_cfg.expansion)]
  if model_cfg.token_mixer == 'mlp':
    widths.append(layers.swiglu_width(S, model_cfg.expansion))
  lam = 6.0
  return evals * lam * math.sqrt(max(widths)) * U * math.sqrt(D)


def segment_evals(model_cfg, M: int) -> int:
  """Cell evaluations in M segments: N·(T + 1) each, one for the transformer baseline."""
  if model_cfg.arch == 'transformer':
    return M
  return M * model_cfg.H_cycles * (model_cfg.L_cycles + 1)


def logit_tol(params, z_tol: float) -> float:
  """What a difference ≤ z_tol in every entry of z_H can change a logit by: z_tol times the
  largest column L1 norm of the heads' kernels (lm_head, q_head); biases are the same."""
  import numpy as np

  kernels = [np.asarray(params[h]['kernel']) for h in ('lm_head', 'q_head')]
  return z_tol * max(float(np.abs(k).sum(0).max()) for k in kernels)


def assert_eval_close(got: dict, want: dict, rel: float = 1e-6) -> None:
  """`got` (metrics of an evaluation) equals `want` (`manual_eval` of the same weights), up to
  what a difference ≤ delta = want['logit_tol'] in every logit can change.

  The mean stablemax loss moves by at most 2·delta (d log p / d logit is within [-1, 1] for
  every logit, and sums to ≤ 1 over the normaliser); an argmax may change only where the top
  two logits are within 2·delta, so every other prediction, hence the count and the accuracies
  up to those positions, must be the same. `rel`: the relative rounding of the figures
  themselves (float32 means; 1e-5 for 6-digit printouts). Only the figures `got` has are
  compared (count, accuracy, exact_accuracy, blank_accuracy, lm_loss).
  """
  import numpy as np

  delta = want['logit_tol']
  assert got.get('count', want['count']) == want['count']
  flip, mask, rows, blank = (want[k] for k in ('margin_flip', 'mask', 'rows', 'blank'))
  flip = flip(2 * delta) & mask & rows[:, None]
  n = np.maximum(mask.sum(-1), 1)
  bounds = dict(
    accuracy=float((flip.sum(-1) / n)[rows].mean()) if rows.any() else 0.0,
    exact_accuracy=float(flip.any(-1)[rows].mean()) if rows.any() else 0.0,
    blank_accuracy=float((flip & blank).sum() / max(blank.sum(), 1)),
    lm_loss=2 * delta,
  )
  for k, bound in bounds.items():
    if k not in got:
      continue
    assert abs(got[k] - want[k]) <= bound + rel * abs(want[k]) + 1e-9, (k, got[k], want[k], bound)


def manual_eval(graphdef, params, buffers, puzzle_emb, batch: dict, M: int) -> dict:
  """Evaluation at M_max = M recomputed without `eval_step`: M calls of `model.segment` from a
  Python loop, the heads on the last z_H, and the metrics in float64 numpy from the argmax.

  Returns numpy `preds` [B, L], `z_H`, `z_L` [M, B, S, D] (the states after each segment),
  `margin_flip(eps)` (positions whose top-two logits are within eps), `mask`, `rows`, `blank`
  (scored cells, scored rows, blank cells), `logit_tol` (how far another compilation of these
  M segments may move a logit: `state_tol`, `logit_tol`), and
  over the rows with a scored label: `count`, `accuracy` (mean token accuracy), `exact_accuracy`,
  `blank_accuracy` (pooled over cells whose input differs from the label) and `lm_loss` (mean
  stablemax cross-entropy), as `evaluate.run_eval` reports them.
  """
  import jax
  import numpy as np
  from flax import nnx

  ids = np.asarray(batch['puzzle_identifiers'])
  inputs, labels = np.asarray(batch['inputs']), np.asarray(batch['labels'])

  @jax.jit
  def segment(params, z_H, z_L, x):
    return nnx.merge(graphdef, params, buffers).segment(z_H, z_L, x)

  model = nnx.merge(graphdef, params, buffers)
  x = model.embed(inputs, np.asarray(puzzle_emb)[ids])
  z_H, z_L = model.initial_state(len(ids))
  states = []
  for _ in range(M):
    z_H, z_L = segment(params, z_H, z_L, x)
    states.append((np.asarray(z_H), np.asarray(z_L)))
  logits = np.asarray(model.heads(z_H)[0], np.float64)
  preds = logits.argmax(-1)
  mask = labels != -100
  rows = mask.any(-1)
  correct = (preds == labels) & mask
  n = np.maximum(mask.sum(-1), 1)
  s = np.where(logits < 0, 1 / (1 - np.minimum(logits, 0)), logits + 1)  # stablemax
  log_p = np.log(s) - np.log(s.sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_p, np.where(mask, labels, 0)[..., None], -1)[..., 0]
  blank = (inputs != labels) & mask & rows[:, None]
  top2 = np.sort(logits, -1)[..., -2:]
  margin = top2[..., 1] - top2[..., 0]
  z_tol = state_tol(model.cfg, model.total_len, segment_evals(model.cfg, M))
  return dict(
    preds=preds,
    logit_tol=logit_tol(params, z_tol),
    margin_flip=lambda eps: margin <= eps,  # positions whose argmax a change of eps may flip
    mask=mask,
    rows=rows,
    blank=blank,
    z_H=np.stack([h for h, _ in states]),
    z_L=np.stack([l for _, l in states]),
    count=float(rows.sum()),
    accuracy=float((correct.sum(-1) / n)[rows].mean()),
    exact_accuracy=float((correct.sum(-1) == mask.sum(-1))[rows].mean()),
    blank_accuracy=float((correct & blank).sum() / max(blank.sum(), 1)),
    lm_loss=float((np.where(mask, nll, 0).sum(-1) / n)[rows].mean()),
  )


def test_examples(data_dir: str, num_examples: int = 0) -> dict:
  """The first `num_examples` (0: all) examples of the test split of `data_dir`, as one numpy
  batch (`inputs`, `labels` with -100, `puzzle_identifiers`)."""
  from hrm_jax.data import format as data_format
  from hrm_jax.data import loader

  split = data_format.load_split(data_dir, 'test')
  return next(loader.eval_batches(split, num_examples or split.num_examples))


TIMING_KEYS = ('steps_per_s',)


def assert_same_run(workdir_a: str, workdir_b: str, rtol: float, atol: float) -> None:
  """Two runs logged the same train/eval records (timings aside) and ended with the
  same parameters, puzzle-table rows and EMA weights, within (rtol, atol)."""
  import chex
  import numpy as np

  for split in ('train', 'eval'):
    a, b = records(workdir_a, split), records(workdir_b, split)
    assert [r['step'] for r in a] == [r['step'] for r in b], (split, a, b)
    for ra, rb in zip(a, b):
      for k in ra:
        if k not in TIMING_KEYS and not isinstance(ra[k], str):
          np.testing.assert_allclose(rb[k], ra[k], rtol=rtol, atol=atol, err_msg=f'{split} {k}')
  params_a, table_a, ema_a = trained_params(workdir_a)
  params_b, table_b, ema_b = trained_params(workdir_b)
  chex.assert_trees_all_close(params_a, params_b, rtol=rtol, atol=atol)
  chex.assert_trees_all_close(ema_a, ema_b, rtol=rtol, atol=atol)
  rows = min(len(table_a), len(table_b))  # a sharded table has padding rows at the end
  np.testing.assert_allclose(table_a[:rows], table_b[:rows], rtol=rtol, atol=atol)


def run_in_mount_namespace(script: str, timeout: int = 300):
  """Runs bash `script` as root of a private mount namespace (`unshare -rm`), from the
  repository root with main_env(): there it may bind a folder read-only or mount a small tmpfs
  without privileges, and nothing outside sees it. Skips the test where the kernel allows no
  user namespaces. Returns the CompletedProcess, output captured as text."""
  import subprocess

  import pytest

  from hrm_jax.tools import fault_injection

  if not fault_injection.mount_namespace_available():
    pytest.skip(
      'no private mount namespace here (the kernel forbids `unshare -rm`): a read-only bind or '
      'a small tmpfs cannot be made without root. Nothing else runs this check; run the test '
      'on a machine that allows user namespaces (CI and the dev machines do)'
    )
  return subprocess.run(
    ['unshare', '-rm', 'bash', '-c', script],
    cwd=ROOT,
    env=main_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )
