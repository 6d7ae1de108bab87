r"""`python -m hrm_jax.bench --suite=accelerator`: the first checks to run on a GPU or TPU.

Within minutes on one accelerator it runs (docs/benchmark.md):
  train step — one row per paper preset (PAPER_PRESETS) in bf16 at the paper batch, halved on
    out-of-memory: examples/s, MFU (matmul FLOPs counted on the step's jaxpr by
    `bench.jaxpr_flops` over the device's data-sheet bf16 peak) and peak device memory;
  cudnn attention — `jax.nn.dot_product_attention(implementation='cudnn')` against 'xla' on
    paper-shaped bf16 attention, outputs and gradients (GPU only);
  loss falls — 200 steps of `experiments/sudoku.py` (the HRM paper recipe) on generated puzzles,
    first and last logged lm_loss.
On a host without an accelerator the same checks run at toy size in fp32 (`config.shrink`).
One table is printed; the exit code is 1 when a check fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import math
import os
import tempfile
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hrm_jax import config as config_lib
from hrm_jax import tasks
from hrm_jax.tools import bench

# The papers' main recipes (task, preset of experiments/<task>.py): HRM (`default`) and TRM on
# each task. The TRM ablation presets share these steps' shapes and are left out (time budget).
PAPER_PRESETS = (
  ('sudoku', 'default'),
  ('sudoku', 'trm_mlp'),
  ('sudoku', 'trm_att'),
  ('maze', 'default'),
  ('maze', 'trm'),
  ('arc', 'default'),
  ('arc', 'trm_arc1'),
)
# Paper-shaped attention for the cuDNN check: (name, B, S, H, K). S = 81 cells + 16 TRM prefix
# slots; 900 cells + 1 HRM prefix slot. H·K = 512, the papers' hidden size.
ATTENTION_SHAPES = (('sudoku', 64, 97, 8, 64), ('maze', 8, 901, 8, 64))
# Toy size: 5x5 mazes and a 6x6 ARC canvas (sequences of 25 and 36 instead of 900).
TOY_DATA = {'maze': dict(maze_size=5), 'arc': dict(canvas=6)}
BF16_UNIT_ROUNDOFF = 2.0**-8  # bf16 keeps 8 significant bits: relative rounding error ≤ 2^-8
EXPERIMENTS = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(__file__))), 'experiments'
)


@dataclasses.dataclass
class Row:
  """One line of the table: which check, on what, its figures, and ok / FAIL / skipped."""

  check: str
  setting: str
  result: str
  status: str


def load_preset(task: str, preset: str) -> ml_collections.ConfigDict:
  """`get_config(preset)` of experiments/<task>.py, as `--config=experiments/<task>.py:<preset>`
  loads it (read from the repository checkout)."""
  path = os.path.join(EXPERIMENTS, f'{task}.py')
  spec = importlib.util.spec_from_file_location(f'experiments_{task}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def is_oom(e: BaseException) -> bool:
  """Whether `e` is an accelerator out-of-memory error (XLA's RESOURCE_EXHAUSTED)."""
  text = str(e)
  return 'RESOURCE_EXHAUSTED' in text or 'out of memory' in text.lower()


class DoesNotFit(MemoryError):
  """A compiled step whose memory (XLA's estimate, `needed` bytes) exceeds the device's
  `limit`: out of memory before running it."""

  def __init__(self, needed: int, limit: int):
    super().__init__(f'RESOURCE_EXHAUSTED: needs {needed / 2**30:.1f} of {limit / 2**30:.1f} GiB')
    self.needed, self.limit = needed, limit


def _short(e: BaseException, width: int = 90) -> str:
  line = (str(e).strip().splitlines() or [''])[0]
  return f'{type(e).__name__}: {line}'[:width]


def _size(n: Optional[int]) -> str:
  return 'n/a' if n is None else f'{n / 2**30:.1f} GiB' if n >= 2**30 else f'{n / 2**20:.0f} MiB'


def measure_train_step(cfg: ml_collections.ConfigDict, steps: int) -> dict:
  """Times `steps` train steps of `cfg` (resolved here) on one device after a warm-up step, on
  random batches: seconds per step, examples/s, matmul FLOPs per step, compiled memory (XLA's
  estimate of arguments + outputs + temporaries, bytes) and the device's peak bytes in use so
  far (None where the backend keeps no statistics, e.g. CPU)."""
  cfg = config_lib.resolve(cfg, 1.0)
  config_lib.validate(cfg, 1)
  shapes = tasks.shapes(cfg.data)
  B = cfg.train.global_batch_size
  step, state, carry = bench._compiled_step(cfg, shapes)
  rng = np.random.default_rng(0)
  batches = [bench.random_batch(rng, B, *shapes) for _ in range(steps + 1)]
  flops = bench.train_step_flops(step, state, carry, batches[0])
  compiled = step.lower(state, carry, batches[0]).compile()
  mem = compiled.memory_analysis()
  est = None
  if mem is not None:
    est = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    est -= mem.alias_size_in_bytes
  stats = jax.devices()[0].memory_stats() or {}
  if est is not None and stats.get('bytes_limit') and est > stats['bytes_limit']:
    raise DoesNotFit(est, stats['bytes_limit'])
  seconds, _, _ = bench.timed_steps(compiled, state, carry, batches)
  peak = (jax.devices()[0].memory_stats() or {}).get('peak_bytes_in_use')
  return dict(seconds=seconds, examples_per_s=B / seconds, flops=flops, est=est, peak=peak)


def train_step_row(
  task: str, preset: str, toy: bool, steps: int, measure: Callable = measure_train_step
) -> Row:
  """The `train step` row of one paper preset: at the paper batch in bf16 (fp32 and shrunk to
  hidden 32, batch 2, TOY_DATA at toy size), the batch halved on out-of-memory until it fits
  (down to 1). MFU = FLOPs per step / seconds / the device's data-sheet peak in its dtype."""
  setting = f'{task}:{preset}'
  try:
    cfg = load_preset(task, preset)
  except Exception as e:  # e.g. an unknown preset
    return Row('train step', setting, _short(e), 'FAIL')
  if toy:
    config_lib.shrink(cfg, batch_size=2, halt_max_steps=2)
    cfg.data.update(TOY_DATA.get(task, {}))
  else:
    cfg.model.compute_dtype = 'bfloat16'
  dtype, paper_batch = cfg.model.compute_dtype, cfg.train.global_batch_size
  batch, notes = paper_batch, []
  while True:
    cfg.train.global_batch_size = batch
    try:
      m = measure(cfg, steps)
      break
    except Exception as e:  # every failure becomes a row
      if not is_oom(e) or batch == 1:
        return Row('train step', f'{setting} b{batch} {dtype}', _short(e), 'FAIL')
      # Memory grows about linearly with the batch: skip halvings the estimate rules out.
      fits = batch * e.limit / e.needed if isinstance(e, DoesNotFit) else batch
      batch //= 2
      while batch > max(1, fits):
        batch //= 2
  if batch != paper_batch:
    notes.append(f'OOM at b{paper_batch}, halved to b{batch}')
  peak = bench.device_peak_tflops(jax.devices()[0].device_kind, dtype)
  mfu = 'n/a' if peak is None else f'{m["flops"] / m["seconds"] / (peak * 1e12):.3f}'
  mem, est = (_size(m[key]) for key in ('peak', 'est'))
  result = (
    f'{m["examples_per_s"]:.1f} ex/s, {m["seconds"] * 1e3:.0f} ms/step, '
    f'{m["flops"] / 1e9:.1f} GFLOP/step, MFU {mfu}, peak mem {mem} (XLA est. {est})'
  )
  return Row('train step', f'{setting} b{batch} {dtype}', '; '.join([result, *notes]), 'ok')


def attention_errors(B: int, S: int, H: int, K: int, impl: str, ref: str = 'xla') -> dict:
  """max |impl − ref| and the tolerance for the output and the gradients of q, k, v of
  `jax.nn.dot_product_attention` on random bf16 q, k, v [B, S, H, K] (non-causal, unmasked,
  as the models call it), the gradients of ⟨output, a fixed random cotangent⟩. Tolerance
  8·u·max|ref| with u = 2^-8 (bf16's unit roundoff): each path rounds its probabilities and its
  result to bf16, ≤ 2u relative error each, so the two differ by up to ~4u of the largest
  magnitude; 8u leaves 2× for the different accumulation orders. Returns
  {name: (max abs error, tolerance)} for name in o, dq, dk, dv."""
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v, w = (jax.random.normal(key, (B, S, H, K), jnp.bfloat16) for key in keys)

  def run(implementation):
    def f(q, k, v):
      o = jax.nn.dot_product_attention(q, k, v, is_causal=False, implementation=implementation)
      return jnp.sum(o.astype(jnp.float32) * w.astype(jnp.float32)), o

    (_, o), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return dict(zip(('o', 'dq', 'dk', 'dv'), (o, *grads)))

  a, b = run(impl), run(ref)
  out = {}
  for name in a:
    x, y = (np.asarray(t[name], np.float32) for t in (a, b))
    out[name] = (float(np.abs(x - y).max()), 8 * BF16_UNIT_ROUNDOFF * float(np.abs(y).max()))
  return out


def attention_row(name: str, B: int, S: int, H: int, K: int) -> Row:
  """The `cudnn attention` row of one shape: cuDNN against XLA (attention_errors); skipped
  without a GPU."""
  setting = f'{name} bf16 [B,S,H,K]=[{B},{S},{H},{K}]'
  if jax.default_backend() != 'gpu':
    return Row('cudnn attention', setting, 'skipped: no GPU (cuDNN)', 'skipped')
  try:
    errors = attention_errors(B, S, H, K, 'cudnn')
  except Exception as e:  # reported as a FAIL row
    return Row('cudnn attention', setting, _short(e), 'FAIL')
  ok = all(err <= tol for err, tol in errors.values())
  result = ', '.join(f'{n} {err:.2g}/{tol:.2g}' for n, (err, tol) in errors.items())
  return Row('cudnn attention', setting, f'max abs err/tol: {result}', 'ok' if ok else 'FAIL')


def loss_run_config(toy: bool, steps: int) -> ml_collections.ConfigDict:
  """The loss check's config: experiments/sudoku.py's HRM paper recipe (the `tiny` preset at
  toy size) on generated puzzles for `steps` steps (warm-up steps/10), lm_loss logged every
  steps/10, one evaluation at the end on at most one batch of test puzzles, no TensorBoard."""
  cfg = load_preset('sudoku', 'tiny' if toy else 'default')
  if toy:
    cfg.data.update(num_train=64, num_test=16, num_aug=2)  # batch 16
  else:
    cfg.data.update(source='generate', num_train=1000, num_test=256, num_aug=8)
    # The recipe warms up over 2000 steps (lr 1e-5 at step 200): a smoke test needs the full lr.
    cfg.opt.lr_warmup_steps = steps // 10
  log_every = max(1, steps // 10)
  cfg.train.update(steps=steps, eval_every=steps, log_every=log_every)
  cfg.eval.max_examples = cfg.train.global_batch_size
  cfg.log.tensorboard = False
  return cfg


def train_records(cfg: ml_collections.ConfigDict) -> tuple[list[dict], float]:
  """Trains `cfg` with `train.train_and_evaluate` in a temporary workdir, its progress lines
  kept out of the output: (the train records of its metrics.jsonl, wall seconds)."""
  from hrm_jax import train  # imports the data pipeline: only when this check runs

  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    t0 = time.perf_counter()
    train.train_and_evaluate(cfg, workdir)
    seconds = time.perf_counter() - t0
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f]
  return [r for r in records if r['split'] == 'train'], seconds


def loss_row(toy: bool, steps: int, train_fn: Callable = train_records) -> Row:
  """The `loss falls` row: trains loss_run_config (the batch halved on out-of-memory) and
  reports the first and last logged lm_loss; ok when the last is lower."""
  cfg = loss_run_config(toy, steps)
  preset, paper_batch = 'tiny' if toy else 'default', cfg.train.global_batch_size
  while True:
    B = cfg.train.global_batch_size
    setting = f'sudoku:{preset} b{B} {steps} steps'
    try:
      records, seconds = train_fn(cfg)
      break
    except Exception as e:  # reported as a FAIL row
      if not is_oom(e) or B == 1:
        return Row('loss falls', setting, _short(e), 'FAIL')
      cfg.train.global_batch_size = cfg.eval.max_examples = B // 2
  (s0, first), (s1, last) = ((r['step'], r['lm_loss']) for r in (records[0], records[-1]))
  fell = math.isfinite(last) and last < first
  result = f'lm_loss {first:.4f} (step {s0}) -> {last:.4f} (step {s1}); {seconds:.0f} s'
  if B != paper_batch:
    result += f'; OOM at b{paper_batch}, halved to b{B}'
  return Row('loss falls', setting, result, 'ok' if fell else 'FAIL')


def device_line() -> str:
  """The device the suite runs on: kind, count, backend and the JAX version."""
  d = jax.devices()[0]
  return (
    f'device: {d.device_kind} x{jax.device_count()} (backend {jax.default_backend()}), '
    f'jax {jax.__version__}'
  )


def format_table(rows: list[Row]) -> str:
  """The rows as one plain-text table with a `check | setting | result | status` header."""
  header = Row('check', 'setting', 'result', 'status')
  cells = [dataclasses.astuple(r) for r in [header, *rows]]
  widths = [max(len(c[i]) for c in cells) for i in range(4)]
  lines = [' | '.join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
  lines.insert(1, '-+-'.join('-' * w for w in widths))
  return '\n'.join(lines)


def parse_presets(text: str) -> tuple:
  """'task:preset,task:preset' -> ((task, preset), ...); empty text: PAPER_PRESETS."""
  if not text:
    return PAPER_PRESETS
  pairs = tuple(tuple(item.strip().split(':', 1)) for item in text.split(','))
  bad = [':'.join(p) for p in pairs if len(p) != 2 or p[0] not in ('sudoku', 'maze', 'arc')]
  if bad:
    raise ValueError(f'--suite_presets: expected task:preset (task sudoku|maze|arc), got {bad}')
  return pairs


def run(
  toy: Optional[bool] = None, presets: tuple = PAPER_PRESETS, print_fn: Callable = print
) -> list[Row]:
  """Runs the suite on `presets` ((task, preset) pairs) at toy size when `toy` (default: on a
  CPU backend), printing the device, the toy-size notice and, at the end, the table and a
  summary line; returns the rows."""
  toy = jax.default_backend() == 'cpu' if toy is None else toy
  print_fn(device_line(), flush=True)
  if toy:
    print_fn(
      'no accelerator found: the suite runs at toy size (hidden 32, fp32, batch 2, few steps)',
      flush=True,
    )
  t0 = time.perf_counter()
  rows = [train_step_row(task, preset, toy, 1 if toy else 5) for task, preset in presets]
  rows += [attention_row(*shape) for shape in ATTENTION_SHAPES]
  rows.append(loss_row(toy, 20 if toy else 200))
  print_fn(format_table(rows), flush=True)
  failed = sum(r.status == 'FAIL' for r in rows)
  print_fn(
    f'suite: {len(rows) - failed}/{len(rows)} rows passed or skipped, {failed} failed, '
    f'{time.perf_counter() - t0:.0f} s',
    flush=True,
  )
  return rows
