r"""Train-step benchmark: prints `name: value` lines (a script, not a test).

  python -m hrm_jax.bench --config=experiments/sudoku.py:cpu [--config.<field>=<value> ...]
  python -m hrm_jax.bench --config=experiments/sudoku.py --params_only
  python -m hrm_jax.bench --config=experiments/sudoku.py:cpu --memory_sweep
  python -m hrm_jax.bench --suite=accelerator

Times one full ACT train step (segment forward, Q-target forward if configured, backward,
Adam-atan2 and sign-SGD) on random valid batches of the task's shape; no dataset is built. With
--memory_sweep it also prints the compiled train step's temporary memory (XLA memory analysis)
for N·T in {4, 16, 64}, which the 1-step gradient keeps flat (and, with
--config.model.gradient=full, which grows with N·T). --suite=accelerator runs the first checks
for a GPU or TPU instead (`hrm_jax/tools/accelerator_suite.py`).
"""

import math
import os
import resource
import sys
import time
from typing import Optional
from unittest import mock

import jax
import jax.extend as jex
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from hrm_jax import cli as cli_lib
from hrm_jax import config as config_lib
from hrm_jax import tasks
from hrm_jax import train_step as ts
from hrm_jax.models import layers
from hrm_jax.tools import gemm_peak

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  config_flags.DEFINE_config_file('config', None, 'Config file[:preset].', lock_config=True)
  flags.DEFINE_bool('params_only', False, 'Print trainable parameters and exit.')
  flags.DEFINE_bool('memory_sweep', False, 'Temp memory for N·T in 4, 16, 64.')
  flags.DEFINE_integer('steps', 5, 'Timed train steps (after one warm-up step).')
  flags.DEFINE_integer('batch', None, 'Global batch (sets config.train.global_batch_size).')
  flags.DEFINE_enum(
    'dtype', None, ['float32', 'bfloat16'], 'Compute dtype (sets config.model.compute_dtype).'
  )
  flags.DEFINE_bool(
    'op_profile',
    False,
    'Also trace the timed steps with the JAX profiler and print where their time goes, by '
    'kind of XLA operation (op_ms_*, op_share_*) and the share of the cores left idle.',
  )
  flags.DEFINE_enum(
    'suite',
    None,
    ['accelerator'],
    'Run a suite of checks instead (no --config): accelerator = the bf16 train step of each '
    'paper preset (examples/s, MFU, peak memory), cuDNN vs XLA attention, 200 steps of '
    'Sudoku with the loss falling; toy size without a GPU/TPU. Exit code 1 if a check fails.',
  )
  flags.DEFINE_string(
    'suite_presets',
    '',
    'With --suite: the train-step rows to run, as task:preset,... (default: every paper preset).',
  )


SWEEP = ((2, 2), (4, 4), (8, 8))  # (H_cycles, L_cycles): N·T = 4, 16, 64


def random_batch(
  rng: np.random.Generator, batch_size: int, vocab: int, seq_len: int, num_ids: int
) -> dict:
  """A batch of valid token ids (inputs, labels in [1, vocab)) and puzzle ids, int32."""
  return dict(
    inputs=rng.integers(1, vocab, (batch_size, seq_len), dtype=np.int32),
    labels=rng.integers(1, vocab, (batch_size, seq_len), dtype=np.int32),
    puzzle_identifiers=rng.integers(0, num_ids, (batch_size,), dtype=np.int32),
  )


def _compiled_step(cfg, shapes):
  vocab, seq_len, num_ids = shapes
  graphdef, state = ts.init_state(cfg, vocab, seq_len, num_ids)
  carry = ts.init_carry(graphdef, state, cfg.train.global_batch_size, seq_len)
  step = ts.jit_train_step(graphdef, cfg, donate_argnums=(0, 1))
  return step, state, carry


def timed_steps(step, state, carry, batches: list):
  """(mean wall seconds per call of the train `step` over `batches[1:]`, state, carry), after a
  warm-up call on `batches[0]` (which also compiles a not yet compiled jitted step). The state
  and carry returned replace the ones passed, which a donating step has consumed."""
  state, carry, m = step(state, carry, batches[0])
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for batch in batches[1:]:
    state, carry, m = step(state, carry, batch)
  jax.block_until_ready(m)
  return (time.perf_counter() - t0) / (len(batches) - 1), state, carry


def seconds_per_step(cfg: ml_collections.ConfigDict, steps: int = 10, repeats: int = 3) -> float:
  """Wall seconds of one train step of `cfg` (a resolved config) on random batches of its
  task's shape: the best of `repeats` means over `steps` steps, after compilation and a warm-up
  step (the best block, as for peaks: a shared or just-started machine only adds time). No
  dataset is built."""
  shapes = tasks.shapes(cfg.data)
  step, state, carry = _compiled_step(cfg, shapes)
  rng = np.random.default_rng(0)
  batches = [random_batch(rng, cfg.train.global_batch_size, *shapes) for _ in range(steps + 1)]
  best = float('inf')
  for _ in range(repeats):
    seconds, state, carry = timed_steps(step, state, carry, batches)
    best = min(best, seconds)
  return best


def train_step_temp_mb(cfg, shapes) -> float:
  """Temporary (activation + workspace) memory of the compiled train step, in MiB."""
  step, state, carry = _compiled_step(cfg, shapes)
  batch = random_batch(np.random.default_rng(0), cfg.train.global_batch_size, *shapes)
  analysis = step.lower(state, carry, batch).compile().memory_analysis()
  return analysis.temp_size_in_bytes / 2**20


def jaxpr_flops(jaxpr) -> float:
  """Matmul FLOPs of a (closed) jaxpr: 2·(output elements)·(contracted size) per dot_general,
  multiplied through `scan` lengths, recursing into every sub-jaxpr (jit, custom_jvp/vjp,
  checkpoint); a `cond` counts its costliest branch. Elementwise work is left out, as MFU does.
  """
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (contract, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      k = math.prod(lhs[d] for d in contract)
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * k
    elif name == 'scan':
      total += eqn.params['length'] * jaxpr_flops(eqn.params['jaxpr'])
    elif name == 'cond':
      total += max(jaxpr_flops(b) for b in eqn.params['branches'])
    elif name == 'while':
      raise ValueError('jaxpr_flops: a while loop has no static trip count')
    else:
      total += sum(jaxpr_flops(sub) for sub in jex.core.jaxprs_in_params(eqn.params))
  return total


# XLA:CPU operation names (the thunks' TraceMe names, `<kind>_fusion.N`, `dot.N`) -> kind.
def op_kind(name: str) -> str:
  """The kind of one XLA:CPU operation, from its name: 'matmul' (a dot, also inside a YNNPACK /
  XNNPACK / oneDNN fusion), 'layout' (copies and transposes), 'other' (elementwise work,
  reductions and the rest, mostly loop fusions)."""
  base = name.split('.')[0]
  if base.startswith(('ynn_', 'xnn_', 'onednn', 'dot', '__onednn', 'custom-call')):
    return 'matmul'
  if 'transpose' in base or 'copy' in base:
    return 'layout'
  return 'other'


# Events that only wait for or contain others (a scan's `while` holds its body's operations),
# not work of their own.
_CONTAINER_EVENTS = ('ThunkExecutor', 'SlinkyThreadPool', 'Eigen', 'PjRt', 'while', 'conditional')
_KINDS = ('matmul', 'layout', 'other')
# A worker thread of XLA:CPU's pool marks each task it runs with these two (instant) events. A
# task is either an operation of its own or a share of another thread's operation (a YNNPACK dot
# splits over the pool), which is traced only on the thread that started the operation.
_REGION = ('ThreadpoolListener::StartRegion', 'ThreadpoolListener::StopRegion')


def _union(intervals) -> list[tuple[int, int]]:
  """The disjoint, sorted union of [start, end) intervals."""
  out: list[list[int]] = []
  for a, b in sorted(intervals):
    if out and a <= out[-1][1]:
      out[-1][1] = max(out[-1][1], b)
    else:
      out.append([a, b])
  return [(a, b) for a, b in out]


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
  """Total length of the intersection of two disjoint, sorted interval lists."""
  i = j = total = 0
  while i < len(a) and j < len(b):
    total += max(0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
    if a[i][1] < b[j][1]:
      i += 1
    else:
      j += 1
  return total


def thread_time(threads: list[list[tuple[int, int, str]]]) -> tuple[dict[str, int], int]:
  """({kind: ns}, busy ns) of XLA:CPU's threads over a trace.

  `threads` holds, per worker thread, its events as (start_ns, end_ns, name): operations and
  the pool's task markers `_REGION` (instants: start == end). A thread's own operations count
  for their kind; its tasks outside them (a share of an operation that another thread runs)
  count for the kind of that operation while it runs, 'other' where none is traced. busy is
  the time inside tasks or operations, summed over threads; the rest of threads × wall is idle.
  """
  own, tasks = [], []
  for events in threads:
    mine, opened, regions = {k: [] for k in _KINDS}, None, []
    # At one instant a task's end comes before the next task's start.
    for a, b, name in sorted(events, key=lambda e: (e[0], e[2] != _REGION[1])):
      if name == _REGION[0]:
        opened = a
      elif name == _REGION[1]:
        if opened is not None:
          regions.append((opened, a))
        opened = None
      elif not name.startswith((*_CONTAINER_EVENTS, 'end:', 'ThreadpoolListener')):
        mine[op_kind(name)].append((a, b))
    own.append({k: _union(v) for k, v in mine.items()})
    tasks.append(_union(regions + [iv for v in mine.values() for iv in v]))
  ns = {k: 0 for k in _KINDS}
  busy = 0
  for t, (mine, span) in enumerate(zip(own, tasks)):
    busy += sum(b - a for a, b in span)
    for k in _KINDS:
      ns[k] += sum(b - a for a, b in mine[k])
    helping = _subtract(span, _union([iv for v in mine.values() for iv in v]))
    left = sum(b - a for a, b in helping)
    for k in _KINDS:  # the kind of the operation this thread helps, traced on another thread
      others = _union([iv for u, o in enumerate(own) if u != t for iv in o[k]])
      share = _overlap(helping, others)
      ns[k] += share
      left -= share
    ns['other'] += max(0, left)
  return ns, busy


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
  """The parts of disjoint, sorted intervals `a` outside disjoint, sorted intervals `b`."""
  out, j = [], 0
  for lo, hi in a:
    while j < len(b) and b[j][1] <= lo:  # b's intervals that end before this one
      j += 1
    k = j
    while k < len(b) and b[k][0] < hi:
      if b[k][0] > lo:
        out.append((lo, b[k][0]))
      lo = max(lo, b[k][1])
      k += 1
    if lo < hi:
      out.append((lo, hi))
  return out


def op_profile(run_steps, steps: int, threads: int) -> dict[str, float]:
  """Where the time of `steps` calls of `run_steps()` (which runs and waits for them) goes:
  {'op_ms_<kind>': ms per step summed over XLA's worker threads, 'op_share_<kind>': share of
  that time, 'idle_share': the share of `threads` × wall time in which no thread of the pool ran
  a task}, from a JAX profiler trace (XLA:CPU records each operation with
  --xla_cpu_enable_xprof_traceme, which `main` sets). The operations are the thunks of the
  compiled step: fusions named after their root, dots (YNNPACK's fusions), copies; kinds as
  `op_kind`; a thread that helps another's operation counts for that operation (`thread_time`).
  """
  import glob
  import tempfile

  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d)
    t0 = time.perf_counter()
    run_steps()
    wall = time.perf_counter() - t0
    jax.profiler.stop_trace()
    (path,) = glob.glob(f'{d}/**/*.xplane.pb', recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
  # XLA's threads, not Python's. The PjRt client's thread runs a few operations of its own, but
  # its task markers span the whole call it waits for: only the pool's tasks are work.
  workers = [
    [
      (ev.start_ns, ev.start_ns + ev.duration_ns, ev.name)
      for ev in line.events
      if line.name.startswith('tf_XLAEigen') or not ev.name.startswith(_REGION)
    ]
    for plane in data.planes
    for line in plane.lines
    if line.name.startswith('tf_XLA')
  ]
  ns, busy = thread_time(workers)
  total = sum(ns.values()) or 1
  out = {f'op_ms_{k}': ns[k] / 1e6 / steps for k in _KINDS}
  out.update({f'op_share_{k}': ns[k] / total for k in _KINDS})
  out['idle_share'] = max(0.0, 1.0 - busy / 1e9 / (wall * threads))
  return out


def peak_matmul_gflops(dtype=jnp.float32, n: Optional[int] = None, reps: int = 5) -> float:
  """This machine's matmul peak as JAX reaches it: GFLOP/s of one jitted n×n @ n×n product
  (n = 2048 on CPU, 8192 on accelerators), the best of `reps` timed runs after a warm-up."""
  n = n or (2048 if jax.default_backend() == 'cpu' else 8192)
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(reps):
    t0 = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n**3 / best / 1e9


# Dense peak FLOP/s by accelerator (vendor data sheets), for MFU: (bf16/fp16, fp32), keyed by a
# part of `device_kind` (the longest matching key wins: a v5p reports 'TPU v5', a v5e 'TPU v5
# lite', a v6e 'TPU v6 lite').
DEVICE_PEAK_TFLOPS = {
  'H100': (989.0, 67.0),
  'H200': (989.0, 67.0),
  'A100': (312.0, 19.5),
  'TPU v4': (275.0, 275.0),
  'TPU v5': (459.0, 459.0),
  'TPU v5p': (459.0, 459.0),
  'TPU v5 lite': (197.0, 197.0),
  'TPU v5e': (197.0, 197.0),
  'TPU v6 lite': (918.0, 918.0),
  'TPU v6e': (918.0, 918.0),
}


def device_peak_tflops(device_kind: str, dtype: str) -> Optional[float]:
  """The data-sheet dense peak of `device_kind` (jax.devices()[0].device_kind) in `dtype`,
  or None for an unknown device (then no `mfu` line)."""
  names = [n for n in DEVICE_PEAK_TFLOPS if n.lower() in device_kind.lower()]
  if not names:
    return None
  half, single = DEVICE_PEAK_TFLOPS[max(names, key=len)]
  return single if dtype == 'float32' else half


def train_step_flops(step, state, carry, batch: dict) -> float:
  """Matmul FLOPs of one call of a `train_step.jit_train_step` step on (state, carry, batch)
  (`jaxpr_flops`), traced with XLA's attention: cuDNN's fused attention is one custom call the
  counter cannot see into. The step's unjitted function is traced, so no jit cache keeps the
  XLA attention for the step that runs."""
  fn = step.__wrapped__
  with mock.patch.object(layers, 'attention_implementation', lambda *_: None):
    return jaxpr_flops(jax.make_jaxpr(fn)(state, carry, batch))


def main(argv):
  del argv
  if FLAGS.suite == 'accelerator':
    from hrm_jax.tools import accelerator_suite

    try:
      presets = accelerator_suite.parse_presets(FLAGS.suite_presets)
    except ValueError as e:
      cli_lib.error(e)
    rows = accelerator_suite.run(presets=presets)
    sys.exit(1 if any(r.status == 'FAIL' for r in rows) else 0)
  if FLAGS.op_profile:  # before the backend starts: XLA reads its flags once
    os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_enable_xprof_traceme=true'
    ).strip()
  cfg = FLAGS.config
  if cfg is None:
    cli_lib.error('--config is required (or --suite=accelerator)')
  if FLAGS.batch:
    cfg.train.global_batch_size = FLAGS.batch
  if FLAGS.dtype:
    cfg.model.compute_dtype = FLAGS.dtype
  cfg = config_lib.resolve(cfg, 1.0)
  config_lib.validate(cfg, jax.device_count())
  shapes = tasks.shapes(cfg.data)
  if FLAGS.params_only:  # shapes only: no weights are drawn (seconds for a 27M model)
    params = jax.eval_shape(lambda: ts.split_model(ts.build_model(cfg, *shapes[:2], cfg.seed))[1])
    print(f'params: {ts.count_params(params)}')
    return
  step, state, carry = _compiled_step(cfg, shapes)  # jit compiles lazily, at the first call
  print(f'params: {ts.count_params(state.params)}')
  peak_before = peak_matmul_gflops()  # also after the steps: the best of both (shared hosts)
  B = cfg.train.global_batch_size
  rng = np.random.default_rng(0)
  example = random_batch(rng, B, *shapes)
  # FLOPs of one train step, counted on its jaxpr (see jaxpr_flops); XLA's own cost analysis is
  # printed beside it for reference (it may count loop bodies once and includes elementwise ops).
  flops = train_step_flops(step, state, carry, example)
  t0 = time.perf_counter()
  compiled = step.lower(state, carry, example).compile()
  print(f'compile_s: {time.perf_counter() - t0:.2f}')
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  batches = [example] + [random_batch(rng, B, *shapes) for _ in range(FLAGS.steps)]
  dt, state, carry = timed_steps(compiled, state, carry, batches)
  model_gflops = flops / dt / 1e9
  xla_peak = max(peak_before, peak_matmul_gflops())
  # The machine's limit is the fastest GEMM on it, which need not be XLA's (MKL on Intel).
  peaks = {f'jax {jax.__version__} (XLA)': xla_peak}
  if jax.default_backend() == 'cpu':
    peaks.update(gemm_peak.other_peaks())
  peak_gemm = max(peaks, key=peaks.get)
  cpu = gemm_peak.cpu_info()
  print(f'cpu: {cpu["model"]}')
  print(f'cpu_isa: {cpu["isa"]}')
  print(f'batch: {B}')
  print(f'dtype: {cfg.model.compute_dtype}')
  print(f'remat: {cfg.model.remat}')
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}')
  print(f'step_ms: {dt * 1e3:.1f}')
  print(f'steps_per_s: {1 / dt:.4f}')
  print(f'examples_per_s: {B / dt:.2f}')
  print(f'gflops_per_step: {flops / 1e9:.1f}')
  print(f'xla_gflops_per_step: {float((cost or {}).get("flops", 0.0)) / 1e9:.1f}')
  print(f'model_gflops_per_s: {model_gflops:.1f}')
  print(f'peak_gflops_per_s: {peaks[peak_gemm]:.1f}')
  print(f'peak_gemm: {peak_gemm}')
  print(f'xla_peak_gflops_per_s: {xla_peak:.1f}')
  print(f'utilisation: {model_gflops / peaks[peak_gemm]:.3f}')
  print(f'xla_utilisation: {model_gflops / xla_peak:.3f}')
  device_peak = device_peak_tflops(jax.devices()[0].device_kind, cfg.model.compute_dtype)
  if jax.default_backend() != 'cpu' and device_peak:
    print(f'mfu: {model_gflops / (device_peak * 1e3):.3f}')  # the step runs on one device
  print(f'peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}')
  if FLAGS.op_profile and jax.default_backend() == 'cpu':
    held = [state, carry]  # the step donates them: each call's outputs feed the next

    def run_steps():
      for batch in batches[:2]:
        held[0], held[1], metrics = compiled(held[0], held[1], batch)
      jax.block_until_ready(metrics)

    for k, v in op_profile(run_steps, 2, gemm_peak.cpu_info()['cores']).items():
      print(f'{k}: {v:.3f}' if 'share' in k else f'{k}: {v:.1f}')
  if FLAGS.memory_sweep:
    for N, T in SWEEP:
      c = ml_collections.ConfigDict(cfg.to_dict())
      c.model.update(H_cycles=N, L_cycles=T)
      print(f'train_step_temp_mb_nt{N * T}: {train_step_temp_mb(c, shapes):.1f}')


def cli() -> None:
  cli_lib.run(main, define_flags)


if __name__ == '__main__':
  cli()
