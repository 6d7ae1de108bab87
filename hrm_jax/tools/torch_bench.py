r"""Train-step benchmark of the reference PyTorch code on CPU, in fp32: prints `name: value` lines.

  python -m hrm_jax.tools.torch_bench --repo=PATH --model=hrm|trm|trm_mlp \
      --config=experiments/<task>.py[:preset] [--batch=32] [--steps=3] [--threads=N] [--compile]

PATH is a checkout of the reference repo (`sapientinc/HRM` for hrm, `SamsungSAILMontreal/
TinyRecursiveModels` for trm and trm_mlp), whose unmodified model code is imported as in
`hrm_jax.tools.torch_parity` (HRM's FlashAttention replaced by PyTorch's scaled-dot-product
attention in the same layout; TRM calls that attention itself) and built from the config's
architecture with `forward_dtype=float32`. One timed step is what the reference `pretrain.py`
`train_batch` does, on a random valid batch of the task's shape (no dataset is built), with the
carry kept across steps:

  1. forward of the ACT model wrapped in the reference `models/losses.py` ACTLossHead (loss type
     from config.loss.type, stablemax in the paper configs); in train mode HRM runs a second,
     no-grad inner forward for the Q-continue target inside the model;
  2. `((1 / batch) * loss).backward()`;
  3. the reference `CastedSparseEmbeddingSignSGD_Distributed` on the puzzle table (world_size=1:
     its all-gather is skipped, so no process group is needed), then Adam-atan2 on all
     parameters: `AdamAtan2` below, a plain PyTorch version of the fused CUDA `adam_atan2` step
     (spec §5.1), since that package has no CPU build;
  4. with config.ema.enabled (TRM), the reference `models/ema.py` EMAHelper update.

The learning rates are the config's base rates, constant: the reference's warm-up/cosine
schedule only changes the value, not the work. Its metric reduction to host (`.cpu()` of a few
scalars) is left out. One warm-up step, then --steps timed steps. Prints model, task, batch,
threads, params, step_ms (mean), forward_ms / backward_ms / optimizer_ms (its parts),
examples_per_s, base_rss_mb (after imports, before the model), peak_rss_mb (ru_maxrss) and, with
--compile (torch.compile of the loss head as pretrain.py does, HRM with dynamic=False),
compile_s: the warm-up step's time, compilation included. Needs torch, pydantic and einops.
"""

from __future__ import annotations

import importlib
import math
import os
import resource
import time
from typing import Any

import numpy as np

from hrm_jax import tasks
from hrm_jax.tools import gemm_peak, torch_parity

LOSS_FUNCTIONS = {'stablemax': 'stablemax_cross_entropy', 'softmax': 'softmax_cross_entropy'}


def adam_atan2_class():
  """The `AdamAtan2` optimizer class (built on first use, so that importing needs no torch).

  Same update as the fused CUDA kernel of the `adam-atan2` package (spec §5.1), per tensor:
  p *= 1 - lr·wd; m, v = EMAs of g, g² (b1, b2); p -= lr / (1 - b1^t) · atan2(m, sqrt(v / (1 -
  b2^t))). No epsilon, and the first-moment bias correction multiplies the step outside atan2.
  """
  import torch

  class AdamAtan2(torch.optim.Optimizer):
    """Adam-atan2 (Everett et al. 2024) with decoupled weight decay, in plain PyTorch."""

    def __init__(self, params, lr: float, betas=(0.9, 0.95), weight_decay: float = 0.0):
      super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
      """One update of every parameter that has a gradient."""
      del closure
      for group in self.param_groups:
        lr, wd, (b1, b2) = group['lr'], group['weight_decay'], group['betas']
        for p in group['params']:
          if p.grad is None:
            continue
          state = self.state[p]
          if not state:
            state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
          state['t'] += 1
          t, m, v = state['t'], state['m'], state['v']
          p.mul_(1 - lr * wd)  # decay first, on the old weights, as the kernel does
          m.lerp_(p.grad, 1 - b1)
          v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
          p.add_(torch.atan2(m, v.sqrt() / math.sqrt(1 - b2**t)), alpha=-lr / (1 - b1**t))

  return AdamAtan2


def build(cfg, repo: str, model_name: str, batch_size: int) -> dict[str, Any]:
  """The reference loss head (train mode), its optimizers and EMA helper for `cfg`, fp32.

  Returns dict(head, optimizers, ema, shapes=(vocab, seq_len, num_ids)); `ema` is None unless
  config.ema.enabled. Raises torch_parity.ParityError when `cfg` is not the reference's model.
  """
  torch_parity.check_config(cfg, model_name)
  if cfg.loss.type not in LOSS_FUNCTIONS:
    raise torch_parity.ParityError(f'loss.type {cfg.loss.type!r} has no reference loss function')
  cls = torch_parity.import_reference(repo, model_name)
  # import_reference put `repo` on sys.path: the rest of the reference's modules import from it.
  losses = importlib.import_module('models.losses')
  sparse_embedding = importlib.import_module('models.sparse_embedding')
  vocab, seq_len, num_ids = tasks.shapes(cfg.data)
  arch = torch_parity.reference_config(cfg, model_name, batch_size, vocab, seq_len, num_ids)
  model = cls(arch)
  head = losses.ACTLossHead(model, loss_type=LOSS_FUNCTIONS[cfg.loss.type])
  head.train()
  o = cfg.opt
  optimizers = []
  if cfg.model.puzzle_emb_ndim > 0:
    optimizers.append(
      sparse_embedding.CastedSparseEmbeddingSignSGD_Distributed(
        model.puzzle_emb.buffers(),
        world_size=1,
        lr=o.puzzle_emb_lr,
        weight_decay=o.puzzle_emb_weight_decay,
      )
    )
  optimizers.append(
    adam_atan2_class()(head.parameters(), lr=o.lr, betas=(o.b1, o.b2), weight_decay=o.weight_decay)
  )
  ema = None
  if cfg.ema.enabled:
    ema = importlib.import_module('models.ema').EMAHelper(mu=cfg.ema.rate)
    ema.register(head)
  return dict(head=head, optimizers=optimizers, ema=ema, shapes=(vocab, seq_len, num_ids))


def random_batch(g, batch_size: int, vocab: int, seq_len: int, num_ids: int) -> dict:
  """Valid token ids (inputs, labels in [1, vocab)) and puzzle ids, int32 as the reference
  dataset yields them; `g` is a torch.Generator."""
  import torch

  def draw(low, high, shape):
    return torch.randint(low, high, shape, generator=g, dtype=torch.int32)

  return dict(
    inputs=draw(1, vocab, (batch_size, seq_len)),
    labels=draw(1, vocab, (batch_size, seq_len)),
    puzzle_identifiers=draw(0, num_ids, (batch_size,)),
  )


def train_step(step_fn, carry, batch: dict, parts: dict, batch_size: int):
  """One reference `train_batch` (see the module docstring) with the carry kept; returns the
  new carry and (forward_s, backward_s, optimizer_s)."""
  t0 = time.perf_counter()
  carry, loss, _, _, _ = step_fn(carry=carry, batch=batch, return_keys=[])
  t1 = time.perf_counter()
  ((1 / batch_size) * loss).backward()
  t2 = time.perf_counter()
  for opt in parts['optimizers']:
    opt.step()
    opt.zero_grad()
  if parts['ema'] is not None:
    parts['ema'].update(parts['head'])
  t3 = time.perf_counter()
  return carry, (t1 - t0, t2 - t1, t3 - t2)


def run(cfg, repo: str, model_name: str, flags_: Any) -> dict[str, Any]:
  """Builds the reference, runs 1 + --steps train steps and returns the printed figures."""
  import torch

  if flags_.steps < 1:
    raise torch_parity.ParityError('--steps must be at least 1')
  threads = flags_.threads or os.cpu_count()
  torch.set_num_threads(threads)
  torch.manual_seed(flags_.seed)
  base_rss_mb = _current_rss_mb()
  B = flags_.batch
  parts = build(cfg, repo, model_name, B)
  head = parts['head']
  step_fn = head
  if flags_.compile:
    # pretrain.py compiles the loss head; HRM's with dynamic=False, TRM's with the defaults.
    step_fn = torch.compile(head, dynamic=False) if model_name == 'hrm' else torch.compile(head)
  g = torch.Generator().manual_seed(flags_.seed)
  batches = [random_batch(g, B, *parts['shapes']) for _ in range(flags_.steps + 1)]
  carry = head.initial_carry(batches[0])
  t0 = time.perf_counter()
  carry, _ = train_step(step_fn, carry, batches[0], parts, B)
  warmup_s = time.perf_counter() - t0
  times = []
  for batch in batches[1:]:
    carry, t = train_step(step_fn, carry, batch, parts, B)
    times.append(t)
  fwd, bwd, opt = (float(np.mean(x)) for x in zip(*times))
  step_s = fwd + bwd + opt
  out = dict(
    torch=gemm_peak.library_name('torch'),
    model=model_name,
    task=cfg.data.name,
    batch=B,
    threads=threads,
    params=sum(p.numel() for p in head.parameters()),
    step_ms=f'{step_s * 1e3:.1f}',
    forward_ms=f'{fwd * 1e3:.1f}',
    backward_ms=f'{bwd * 1e3:.1f}',
    optimizer_ms=f'{opt * 1e3:.1f}',
    examples_per_s=f'{B / step_s:.2f}',
    base_rss_mb=f'{base_rss_mb:.0f}',
    peak_rss_mb=f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}',
  )
  if flags_.compile:
    out['compile_s'] = f'{warmup_s:.2f}'
  return out


def _current_rss_mb() -> float:
  """Resident set size now (Linux /proc), to tell the imports' share of peak_rss_mb."""
  try:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
  except OSError:
    return float('nan')


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file('config', None, 'Config file[:preset].', lock_config=True)
  flags.DEFINE_string('repo', None, 'Checkout of the reference repo (HRM or TRM).')
  flags.DEFINE_enum('model', None, sorted(torch_parity.REFERENCE), 'Which reference model.')
  flags.DEFINE_integer('batch', 32, 'Batch size (the reference global batch, one process).')
  flags.DEFINE_integer('steps', 3, 'Timed train steps (after one warm-up step).')
  flags.DEFINE_integer('threads', 0, 'torch.set_num_threads; 0: all cores.')
  flags.DEFINE_bool('compile', False, 'torch.compile the loss head, as pretrain.py does.')
  flags.DEFINE_integer('seed', 0, 'Seed of the weights and batches.')
  flags.mark_flags_as_required(['config', 'repo', 'model'])


def main(argv):
  """CLI: prints the figures as `name: value` lines; exit 2 on bad input."""
  del argv
  from absl import flags

  f = flags.FLAGS
  result = run(f.config, f.repo, f.model, f)
  for k, v in result.items():
    print(f'{k}: {v}')


def cli() -> None:
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags, errors=(torch_parity.ParityError,))


if __name__ == '__main__':
  cli()
