"""The reference PyTorch training code, run on CPU beside hrm_jax (`tools.torch_parity`).

Imports come from a checkout of `sapientinc/HRM` or `SamsungSAILMontreal/TinyRecursiveModels`:
the model class, `models.losses.ACTLossHead`, the sparse-embedding sign-SGD optimizer
(`models.sparse_embedding`), the learning-rate lambda of `pretrain.py` and TRM's
`models.ema.EMAHelper`. What `pretrain.py` imports only for logging, config files or CUDA is
stubbed (wandb, coolname, hydra, omegaconf, and `adam_atan2`, whose fused kernel has no CPU
build); `AdamATan2` below transcribes that kernel to PyTorch. `ReferenceTrainer.step` is the
body of the reference's `train_batch` (forward through the loss head, backward of loss/B, the
two optimizers in the reference's order with the scheduled lr, EMA), recording what the
comparison needs. Needs torch and what the reference imports (`pip install -e ".[parity]"`).
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import types
from typing import Any, Optional

import numpy as np
import torch


class AdamATan2(torch.optim.Optimizer):
  """Adam-atan2 as the reference's fused CUDA kernel (`adam_atan2/csrc/adam_atan2.cu`) computes it.

  Per tensor, with the step counter t incremented first (fp32, per tensor), bias corrections
  c1 = 1 − β1^t and c2 = 1 − β2^t in double, then cast to fp32 as the kernel's opmath:
    p ← p·(1 − lr·λ);  m ← lerp(m, g, 1 − β1);  v ← lerp(v, g², 1 − β2)
    p ← p − (lr / c1)·atan2(m, sqrt(v) / sqrt(c2))
  The kernel's lerp is fma(t, v1, fma(−t, v0, v0)) = v0 + t·(v1 − v0) for t < 0.5, which is
  PyTorch's `lerp` (the kernel's own comment).
  """

  def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), weight_decay: float = 1e-2):
    super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

  @torch.no_grad()
  def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
    del closure
    for group in self.param_groups:
      beta1, beta2 = group['betas']
      lr, wd = group['lr'], group['weight_decay']
      for p in group['params']:
        if p.grad is None:
          continue
        state = self.state[p]
        if not state:
          state['step'] = torch.zeros((), dtype=torch.float32)
          state['exp_avg'] = torch.zeros_like(p)
          state['exp_avg_sq'] = torch.zeros_like(p)
        state['step'] += 1
        t = float(state['step'])
        c1, c2 = 1 - beta1**t, 1 - beta2**t
        opmath = torch.float32
        step_size = torch.tensor(lr / c1, dtype=opmath)
        wd_alpha = torch.tensor(1 - lr * wd, dtype=opmath)
        c2_sqrt = torch.tensor(math.sqrt(c2), dtype=opmath)
        g = p.grad.to(opmath)
        m, v = state['exp_avg'], state['exp_avg_sq']
        p.mul_(wd_alpha)
        m.lerp_(g, 1 - beta1)
        v.lerp_(g * g, 1 - beta2)
        p.sub_(step_size * torch.atan2(m, v.sqrt() / c2_sqrt))


def _stub(name: str, **attrs: Any) -> None:
  module = types.ModuleType(name)
  module.__dict__.update(attrs)
  sys.modules[name] = module


def import_checkout(repo: str) -> None:
  """Puts the checkout at `repo` first on sys.path, with pretrain.py's logging, config and
  CUDA-only imports stubbed (they do nothing a training step needs)."""
  for name in ('wandb', 'coolname'):
    _stub(name)
  _stub('hydra', main=lambda **kw: lambda fn: fn)
  _stub('omegaconf', DictConfig=dict, OmegaConf=None)
  _stub('adam_atan2', AdamATan2=AdamATan2)
  path = os.path.abspath(repo)
  if path not in sys.path:
    sys.path.insert(0, path)


def reference_module(name: str):
  """`importlib.import_module(name)` from the checkout set up by `import_checkout`."""
  return importlib.import_module(name)


def reference_lr(step: int, base_lr: float, warmup: int, total: int, min_ratio: float) -> float:
  """The reference's `cosine_schedule_with_warmup_lr_lambda` (pretrain.py) at optimizer step
  `step` (1-based: train_batch increments the counter first)."""
  fn = reference_module('pretrain').cosine_schedule_with_warmup_lr_lambda
  return fn(
    current_step=step,
    base_lr=base_lr,
    num_warmup_steps=round(warmup),
    num_training_steps=total,
    min_ratio=min_ratio,
  )


class _RecordDraws:
  """Records what `torch.rand_like` and `torch.randint_like` return inside the block (the ACT
  wrapper's exploration draws), passing the calls through unchanged."""

  def __enter__(self):
    self.rand, self.randint = [], []
    self._rand, self._randint = torch.rand_like, torch.randint_like

    def rand_like(*a, **k):
      out = self._rand(*a, **k)
      self.rand.append(out.clone())
      return out

    def randint_like(*a, **k):
      out = self._randint(*a, **k)
      self.randint.append(out.clone())
      return out

    torch.rand_like, torch.randint_like = rand_like, randint_like
    return self

  def __exit__(self, *exc):
    torch.rand_like, torch.randint_like = self._rand, self._randint
    return False


class ReferenceTrainer:
  """The reference's training state and `train_batch` for one model (CPU, fp32).

  model: the reference ACT model (already built and initialised); puzzle_emb_ndim > 0 adds the
  sparse sign-SGD optimizer before Adam-atan2, as `create_model`; ema_rate (TRM) registers
  `EMAHelper` on the loss head after initialisation, as `pretrain.py`.
  """

  def __init__(self, model, cfg, total_steps: int, ema_rate: Optional[float] = None):
    losses = reference_module('models.losses')
    self.head = losses.ACTLossHead(model, loss_type=cfg.loss.type + '_cross_entropy')
    self.head.train()
    o = cfg.opt
    self.cfg, self.total_steps, self.step_count = cfg, total_steps, 0
    self.optimizers, self.base_lrs = [], []
    if cfg.model.puzzle_emb_ndim > 0:
      sparse = reference_module('models.sparse_embedding')
      self.optimizers.append(
        sparse.CastedSparseEmbeddingSignSGD_Distributed(
          model.inner.puzzle_emb.buffers(),
          lr=0,
          weight_decay=o.puzzle_emb_weight_decay,
          world_size=1,
        )
      )
      self.base_lrs.append(o.puzzle_emb_lr)
    self.optimizers.append(
      AdamATan2(self.head.parameters(), lr=0, weight_decay=o.weight_decay, betas=(o.b1, o.b2))
    )
    self.base_lrs.append(o.lr)
    self.ema = None
    if ema_rate is not None:
      self.ema = reference_module('models.ema').EMAHelper(mu=ema_rate)
      self.ema.register(self.head)
    self.carry = None

  def step(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One `train_batch`: returns loss (the head's total, a scalar), q_halt, q_continue and
    halted [B] after the step, and min_halt_steps [B] (the exploration draw, 0 = none)."""
    self.step_count += 1
    tb = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
    if self.carry is None:
      self.carry = self.head.initial_carry(tb)
    with _RecordDraws() as draws:
      self.carry, loss, _, outputs, _ = self.head(
        carry=self.carry, batch=tb, return_keys=['q_halt_logits', 'q_continue_logits']
      )
    B = tb['inputs'].shape[0]
    ((1 / B) * loss).backward()
    o = self.cfg.opt
    for optim, base in zip(self.optimizers, self.base_lrs):
      lr = reference_lr(self.step_count, base, o.lr_warmup_steps, self.total_steps, o.lr_min_ratio)
      for group in optim.param_groups:
        group['lr'] = lr
      optim.step()
      optim.zero_grad()
    if self.ema is not None:
      self.ema.update(self.head)
    p = self.cfg.act.halt_exploration_prob
    min_steps = np.zeros(B, np.int32)
    if draws.rand:  # training with M_max > 1: one coin and one count per row
      explore = draws.rand[0].numpy() < p
      min_steps = (explore * draws.randint[0].numpy()).astype(np.int32)
    return dict(
      loss=np.float64(loss.detach().item()),
      q_halt=outputs['q_halt_logits'].float().numpy(),
      q_continue=outputs['q_continue_logits'].float().numpy(),
      halted=self.carry.halted.numpy().copy(),
      min_halt_steps=min_steps,
    )

  def state_dict(self) -> dict[str, np.ndarray]:
    """The model's tensors (keys without the loss-head/ACT prefixes), fp32 numpy."""
    return {
      k.removeprefix('model.').removeprefix('inner.'): v.detach().float().numpy().copy()
      for k, v in self.head.state_dict().items()
    }

  def ema_state_dict(self) -> dict[str, np.ndarray]:
    """The EMA shadow of every trainable tensor (keys as `state_dict`)."""
    return {
      k.removeprefix('model.').removeprefix('inner.'): v.detach().float().numpy().copy()
      for k, v in self.ema.state_dict().items()
    }
