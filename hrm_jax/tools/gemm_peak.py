r"""The machine's fp32 matmul peak by each GEMM it has: prints one JSON object (a tool, not a test).

  python -m hrm_jax.tools.gemm_peak [--libs=xla,numpy,torch] [--shapes=MxKxN,...] [--reps=5]

For every library that imports here — XLA (a jitted `jnp` product, what hrm_jax's models run),
numpy (the BLAS it links, OpenBLAS in the PyPI wheels) and torch (MKL/oneDNN on x86 builds) —
and every M×K×N shape, the GFLOP/s of one [M, K] @ [K, N] product: 2·M·K·N over the best of
`--reps` timed runs after a warm-up, with every core (torch.set_num_threads(cpu count)). Also the
CPU (`cpu_info`) and each library's version and BLAS. `hrm_jax.bench` runs this in a separate
process, so that torch's and OpenBLAS's thread pools do not share the benchmark's cores with XLA's,
and divides by the best figure: `utilisation` is against the fastest GEMM on the machine, not only
XLA's.

The default shapes are a square product and HRM's largest train-step products at Sudoku batch 32
(B·S = 32·82 = 2624 rows, hidden 512, SwiGLU width 1536), forward and backward.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Callable

import numpy as np

SHAPES = ((2048, 2048, 2048), (2624, 512, 1536), (2624, 1536, 512), (512, 2624, 1536))
# Vector extensions that decide a GEMM's speed, as /proc/cpuinfo names them.
ISA_FLAGS = (
  'avx',
  'avx2',
  'fma',
  'avx512f',
  'avx512_vnni',
  'avx512_bf16',
  'avx_vnni',
  'amx_tile',
  'amx_bf16',
)


def cpu_info() -> dict:
  """This host's CPU: dict(model (the model name, with family/model numbers, which tell e.g. a
  Zen 3 from a Zen 4 EPYC that both call themselves "AMD EPYC"), isa (the ISA_FLAGS it has, in
  that order), cores (usable by this process)). Linux reads /proc/cpuinfo; elsewhere `model` is
  platform.processor() and `isa` empty."""
  import platform

  fields: dict = {}
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        key, _, value = line.partition(':')
        fields.setdefault(key.strip(), value.strip())  # the first processor's entry
  except OSError:
    pass
  model = fields.get('model name') or platform.processor() or 'unknown'
  if 'cpu family' in fields:
    model += f' (family {fields["cpu family"]}, model {fields.get("model", "?")})'
  flags = set(fields.get('flags', '').split())
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count() or 1
  return dict(model=model, isa=' '.join(f for f in ISA_FLAGS if f in flags), cores=cores)


def best_seconds(fn: Callable[[], object], reps: int) -> float:
  """The fastest of `reps` timed calls of `fn`, after one untimed call (warm-up, compilation)."""
  fn()
  best = float('inf')
  for _ in range(reps):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def _operands(m: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  return rng.random((m, k), np.float32), rng.random((k, n), np.float32)


def _xla(shape, reps):
  import jax
  import jax.numpy as jnp

  a, b = (jnp.asarray(x) for x in _operands(*shape))
  f = jax.jit(jnp.matmul)
  return best_seconds(lambda: f(a, b).block_until_ready(), reps)


def _numpy(shape, reps):
  a, b = _operands(*shape)
  return best_seconds(lambda: a @ b, reps)


def _torch(shape, reps):
  import torch

  torch.set_num_threads(cpu_info()['cores'])
  a, b = (torch.from_numpy(x) for x in _operands(*shape))
  return best_seconds(lambda: a @ b, reps)


def library_name(name: str) -> str:
  """`name version (BLAS)`, e.g. 'torch 2.13.0+cpu (mkl)'."""
  if name == 'xla':
    import jax

    return f'jax {jax.__version__} (XLA:{jax.default_backend()})'
  if name == 'numpy':
    blas = np.show_config(mode='dicts').get('Build Dependencies', {}).get('blas', {})
    return f'numpy {np.__version__} ({blas.get("name", "?")})'
  import torch

  blas = re.search(r'BLAS_INFO=(\w+)', torch.__config__.show())
  return f'torch {torch.__version__} ({blas.group(1) if blas else "?"})'


RUNNERS = {'xla': _xla, 'numpy': _numpy, 'torch': _torch}


def measure(libs=('xla', 'numpy', 'torch'), shapes=SHAPES, reps: int = 5) -> dict:
  """dict(cpu=cpu_info(), gflops={library description: {'MxKxN': GFLOP/s}}); a library that
  does not import here is left out (torch is optional)."""
  out: dict = dict(cpu=cpu_info(), gflops={})
  for name in libs:
    try:
      label = library_name(name)
    except ImportError:
      continue
    out['gflops'][label] = {
      f'{m}x{k}x{n}': round(2.0 * m * k * n / RUNNERS[name]((m, k, n), reps) / 1e9, 1)
      for m, k, n in shapes
    }
  return out


def other_peaks(n: int = 2048, reps: int = 5) -> dict[str, float]:
  """{library description: GFLOP/s of an n×n fp32 product} of numpy's and torch's GEMMs (each
  one that imports), measured in a child process (`measure`), so that their thread pools never
  run beside XLA's in the caller's process; {} if the child fails."""
  import subprocess
  import sys

  r = subprocess.run(
    [
      sys.executable,
      '-m',
      __name__,
      '--libs=numpy,torch',
      f'--shapes={n}x{n}x{n}',
      f'--reps={reps}',
    ],
    capture_output=True,
    text=True,
  )
  try:
    result = json.loads(r.stdout.strip().splitlines()[-1])
  except (IndexError, ValueError):
    return {}
  return {lib: next(iter(v.values())) for lib, v in result['gflops'].items()}


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  from absl import flags

  flags.DEFINE_list('libs', list(RUNNERS), f'GEMMs to time, of {sorted(RUNNERS)}.')
  flags.DEFINE_list('shapes', [f'{m}x{k}x{n}' for m, k, n in SHAPES], 'Products, as MxKxN.')
  flags.DEFINE_integer('reps', 5, 'Timed runs per product (the best is kept).')


def parse_shape(text: str) -> tuple[int, int, int]:
  """'MxKxN' -> (M, K, N); ValueError naming the text otherwise."""
  dims = text.split('x')
  if len(dims) != 3 or not all(d.isdigit() and int(d) > 0 for d in dims):
    raise ValueError(f'--shapes: {text!r} is not MxKxN with positive integers')
  return tuple(int(d) for d in dims)


def main(argv) -> None:
  """CLI: prints measure()'s JSON object on one line."""
  del argv
  from absl import flags

  f = flags.FLAGS
  unknown = set(f.libs) - set(RUNNERS)
  if unknown:
    raise ValueError(f'--libs: unknown {sorted(unknown)}; known: {sorted(RUNNERS)}')
  shapes = tuple(parse_shape(s) for s in f.shapes)
  print(json.dumps(measure(tuple(f.libs), shapes, f.reps)))


def cli() -> None:
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags, errors=(ValueError,))


if __name__ == '__main__':
  cli()
