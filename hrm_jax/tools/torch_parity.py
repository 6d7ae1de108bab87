r"""Numerical parity of hrm_jax with the reference PyTorch models, on CPU in fp32.

  python -m hrm_jax.tools.torch_parity --repo=PATH --model=hrm|trm|trm_mlp \
      --config=experiments/<task>.py[:preset] [--checkpoint=FILE] [--save_state_dict=FILE]

PATH is a checkout of the reference repo (`sapientinc/HRM` for hrm, `SamsungSAILMontreal/
TinyRecursiveModels` for trm and trm_mlp). Its model classes are imported from there; FlashAttention
(which HRM imports and which has no CPU build) is replaced by PyTorch's scaled-dot-product
attention in the same [batch, seq, heads, head_dim] layout. The reference model is built from
the config with `forward_dtype=float32` and either random weights (the zero-initialised q_head
and puzzle table are drawn at random too, so that every tensor affects the outputs) or
--checkpoint. Its state dict goes through `hrm_jax.convert_torch` into hrm_jax (compute dtype
forced to float32), and both run --segments ACT segments from the initial carry (H_init, L_init)
on the same random batch, in eval mode (no halting before M_max). Prints

  max_abs_err_logits: ...   max_abs_err_q_halt: ...   max_abs_err_q_continue: ...

(maxima over all segments) and exits 1 when one exceeds --tol. `noise_floor_*` is how far the
reference itself moves when its weights are perturbed by about one fp32 ulp: the closest any
port can match it (large for TRM-MLP at random init, whose recursion amplifies rounding; keep
--segments at 1 there). --save_state_dict writes the
reference model's state dict as its `pretrain.py` would (keys `_orig_mod.model.inner.*`, H_init
and L_init in bf16) with an `all_config.yaml` beside it: a stand-in for an official checkpoint
to try `python -m hrm_jax.convert_torch` on.

--train_steps=K compares training instead: from the same weights (random init as above), K
steps of the reference's `train_batch` (`tools.torch_reference`: its loss head, sparse sign-SGD,
lr lambda and EMA, Adam-atan2 transcribed from the CUDA kernel) and K hrm_jax train steps, on
the same K random global batches of --batch rows (--num_puzzle_ids ids, so that ids repeat),
each side carrying its ACT state (halted rows take the next batch's rows). --exploration=off
sets the halting exploration probability to 0 on both sides; =reference keeps the config's and
feeds the reference's draws to hrm_jax (`act.MIN_STEPS_KEY`). Prints

  train_loss_max_rel_err  q_halt_max_abs_err  halt_decision_mismatches  first_mismatch_step
  puzzle_emb_max_rel_err  params_max_rel_err  (ema_max_rel_err with EMA)

(--verbose: a table of every step) and exits 1 when the loss error exceeds --tol, a final
weight error --weights_tol, or a halting decision differs. Needs torch and what the reference
code imports: `pip install -e ".[parity]"`.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hrm_jax import config as config_lib
from hrm_jax import train_step as ts
from hrm_jax.models import act
from hrm_jax.tools import convert_torch

REFERENCE = {
  'hrm': ('models.hrm.hrm_act_v1', 'HierarchicalReasoningModel_ACTV1'),
  'trm': ('models.recursive_reasoning.trm', 'TinyRecursiveReasoningModel_ACTV1'),
  'trm_mlp': ('models.recursive_reasoning.trm', 'TinyRecursiveReasoningModel_ACTV1'),
}
BF16_BUFFERS = ('H_init', 'L_init')  # stored in the reference's forward dtype, bf16 by default


class ParityError(ValueError):
  """The reference repo, model choice or config cannot be compared."""


def _fake_flash_attn() -> types.ModuleType:
  """A `flash_attn` module whose `flash_attn_func` is SDPA over [B, S, H, head_dim] tensors."""
  import torch.nn.functional as F

  def flash_attn_func(q, k, v, causal=False, **unused):
    del unused
    out = F.scaled_dot_product_attention(
      q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
    )
    return out.transpose(1, 2)

  module = types.ModuleType('flash_attn')
  module.flash_attn_func = flash_attn_func
  return module


def import_reference(repo: str, model: str):
  """The reference ACT model class for `model`, imported from the checkout at `repo`."""
  module_name, class_name = REFERENCE[model]
  path = os.path.join(repo, *module_name.split('.')) + '.py'
  if not os.path.isfile(path):
    raise ParityError(f'{path} not found: --repo must be a checkout of the reference of {model!r}')
  # HRM tries flash_attn_interface (FA3), then flash_attn (FA2); neither runs on CPU tensors.
  fake = _fake_flash_attn()
  sys.modules['flash_attn_interface'] = fake
  sys.modules['flash_attn'] = fake
  from hrm_jax.tools import torch_reference

  torch_reference.import_checkout(repo)  # the checkout first on sys.path, pretrain.py's stubs
  import importlib

  return getattr(importlib.import_module(module_name), class_name)


def check_config(cfg, model: str) -> None:
  """Raises ParityError unless the config's model is the reference's `model`."""
  m = cfg.model
  if model == 'hrm':
    ok = m.arch == 'hrm' and m.token_mixer == 'attention' and m.gradient == 'one_step'
    hint = 'e.g. experiments/sudoku.py'
  else:
    mixer = 'mlp' if model == 'trm_mlp' else 'attention'
    ok = m.arch == 'trm' and m.H_layers == 0 and m.token_mixer == mixer
    hint = f'e.g. experiments/sudoku.py:{"trm_mlp" if mixer == "mlp" else "trm_att"}'
  if not ok:
    raise ParityError(f'--config does not describe the reference {model!r} model ({hint})')


def reference_config(cfg, model: str, batch_size: int, vocab: int, seq_len: int, num_ids: int):
  """The reference model's constructor dict for `cfg` (fp32 forward)."""
  m = cfg.model
  out = dict(
    batch_size=batch_size,
    seq_len=seq_len,
    vocab_size=vocab,
    num_puzzle_identifiers=num_ids,
    puzzle_emb_ndim=m.puzzle_emb_ndim,
    H_cycles=m.H_cycles,
    L_cycles=m.L_cycles,
    H_layers=m.H_layers,
    L_layers=m.L_layers,
    hidden_size=m.hidden_size,
    expansion=m.expansion,
    num_heads=m.num_heads,
    pos_encodings=m.pos_encodings,
    rms_norm_eps=m.rms_norm_eps,
    rope_theta=m.rope_theta,
    halt_max_steps=cfg.act.halt_max_steps,
    halt_exploration_prob=cfg.act.halt_exploration_prob,
    forward_dtype='float32',
  )
  if model != 'hrm':
    out.update(
      mlp_t=m.token_mixer == 'mlp',
      puzzle_emb_len=m.puzzle_emb_len,
      no_ACT_continue=not cfg.act.q_continue_loss,
    )
  return out


def _randomize(inner, seed: int) -> None:
  """Draws the zero/constant-initialised tensors (q_head, puzzle table) at random and rounds
  H_init/L_init to bf16, as the reference stores them, so a bf16 save is exact."""
  import torch

  g = torch.Generator().manual_seed(seed)
  D = inner.config.hidden_size
  with torch.no_grad():
    inner.q_head.weight.copy_(torch.randn(inner.q_head.weight.shape, generator=g) * D**-0.5)
    inner.q_head.bias.copy_(torch.randn(2, generator=g))
    if hasattr(inner, 'puzzle_emb'):
      w = inner.puzzle_emb.weights
      w.copy_(torch.randn(w.shape, generator=g) * D**-0.5)
    for name in BF16_BUFFERS:
      buf = getattr(inner, name)
      buf.copy_(buf.to(torch.bfloat16).float())


def saved_state_dict(model, bf16_buffers: bool = False) -> dict:
  """The reference model's state dict with the keys its pretrain.py saves (compiled loss head);
  `bf16_buffers`: H_init/L_init in bf16, as a bf16 run stores them."""
  import torch

  sd = {}
  for k, v in model.state_dict().items():
    if bf16_buffers and k.split('.')[-1] in BF16_BUFFERS:
      v = v.to(torch.bfloat16)
    sd['_orig_mod.model.' + k] = v.detach().clone()
  return sd


def reference_rollout(model, batch: dict, segments: int) -> list[tuple[np.ndarray, ...]]:
  """(logits [B, L, V], q_halt [B], q_continue [B]) of each of `segments` ACT calls (eval)."""
  import torch

  tb = {k: torch.from_numpy(v) for k, v in batch.items()}
  outs = []
  with torch.no_grad():
    carry = model.initial_carry(tb)
    for _ in range(segments):
      carry, o = model(carry=carry, batch=tb)
      outs.append(
        tuple(o[k].float().numpy() for k in ('logits', 'q_halt_logits', 'q_continue_logits'))
      )
  return outs


def jax_rollout(graphdef, state, batch: dict, segments: int) -> list[tuple[np.ndarray, ...]]:
  """The same `segments` segments in hrm_jax from (H_init, L_init), eval weights."""

  @jax.jit
  def segment(params, buffers, z_H, z_L, inputs, rows):
    model = nnx.merge(graphdef, params, buffers)
    (z_H, z_L), heads = model(z_H, z_L, inputs, rows)
    return z_H, z_L, heads

  model = nnx.merge(graphdef, ts.eval_params(state), state.buffers)
  z_H, z_L = model.initial_state(batch['inputs'].shape[0])
  rows = jnp.take(state.puzzle_emb, batch['puzzle_identifiers'], axis=0)
  outs = []
  for _ in range(segments):
    z_H, z_L, heads = segment(
      ts.eval_params(state), state.buffers, z_H, z_L, jnp.asarray(batch['inputs']), rows
    )
    outs.append(tuple(np.asarray(h) for h in heads))
  return outs


# ---------------------------------------------------------------------------------------------
# Training trajectories (--train_steps=K)


def random_batches(
  rng: np.random.Generator, steps: int, batch: int, vocab: int, seq_len: int, num_ids: int
) -> list[dict[str, np.ndarray]]:
  """`steps` global batches of random tokens: inputs [B, L] in [0, vocab), labels [B, L] in
  [1, vocab) with about one in eight -100 (ignored), puzzle_identifiers [B] in [0, num_ids)
  (with num_ids ~ B, ids repeat within a batch: the sparse optimizer's sum over duplicates)."""
  out = []
  for _ in range(steps):
    labels = rng.integers(1, vocab, (batch, seq_len), dtype=np.int32)
    labels[rng.random((batch, seq_len)) < 0.125] = -100
    out.append(
      dict(
        inputs=rng.integers(0, vocab, (batch, seq_len), dtype=np.int32),
        labels=labels,
        puzzle_identifiers=rng.integers(0, num_ids, (batch,), dtype=np.int32),
      )
    )
  return out


def jax_train_rollout(
  cfg, graphdef, state, batches: list[dict], min_halt_steps: Optional[list] = None
) -> tuple[list[dict[str, np.ndarray]], Any]:
  """hrm_jax's jitted train step over `batches`, carrying the ACT state from step to step.

  Returns (one record per step, final state). A record has `loss` (lm + q_weight·(q_halt +
  q_continue), the sum over the batch, as the reference's loss head returns it), `q_halt` and
  `q_continue` [B] (the step's forward: the heads on the carried z_H with the weights before the
  update), `halted` [B]. `min_halt_steps[k]` [B], where given, replaces step k's exploration draw.
  """
  cfg = config_lib.resolve(cfg, 1.0)
  step_fn = ts.jit_train_step(graphdef, cfg)
  heads = jax.jit(lambda p, b, z_H: nnx.merge(graphdef, p, b).heads(z_H)[1:])
  carry = ts.init_carry(graphdef, state, *batches[0]['inputs'].shape)
  records = []
  for k, batch in enumerate(batches):
    batch = dict(batch)
    if min_halt_steps is not None:
      batch[act.MIN_STEPS_KEY] = np.asarray(min_halt_steps[k], np.int32)
    params = state.params
    state, carry, m = step_fn(state, carry, batch)
    q_halt, q_cont = heads(params, state.buffers, carry.z_H)
    m = jax.device_get(m)
    loss = m['lm_loss'] + cfg.loss.q_weight * (m['q_halt_loss'] + m['q_continue_loss'])
    records.append(
      dict(
        loss=np.float64(loss),
        q_halt=np.asarray(q_halt),
        q_continue=np.asarray(q_cont),
        halted=np.asarray(carry.halted),
      )
    )
  return records, state


def _max_rel(got: np.ndarray, want: np.ndarray) -> float:
  """max |got − want| / max |want| (0 when both are all zero)."""
  scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
  diff = float(np.max(np.abs(np.asarray(got, np.float64) - want))) if np.size(want) else 0.0
  return diff / scale if scale else diff


def compare_trajectories(
  ref: list[dict], ours: list[dict], tol: float = 1e-4
) -> tuple[dict[str, float], list]:
  """(summary, per-step table) of two runs' step records (`jax_train_rollout`'s keys).

  train_loss_max_rel_err: max over steps of |loss − ref| / |ref|; steps_within_tol: how many
  steps from the first keep that error ≤ tol; q_halt_max_abs_err: max |q_halt − ref| over
  steps and rows; halt_decision_mismatches: rows whose halting differs, summed over steps;
  first_mismatch_step: the first such step (0: none). After a halting mismatch the two runs
  train on different rows, so later errors are no longer comparable.
  """
  table, mismatches, first = [], 0, 0
  for k, (r, o) in enumerate(zip(ref, ours), start=1):
    rel = abs(o['loss'] - r['loss']) / max(abs(r['loss']), 1e-30)
    dq = float(np.max(np.abs(o['q_halt'] - r['q_halt'])))
    bad = int(np.sum(o['halted'] != r['halted']))
    mismatches += bad
    first = first or (k if bad else 0)
    table.append((k, r['loss'], o['loss'], rel, dq, bad, int(np.sum(r['halted']))))
  within = next((row[0] - 1 for row in table if row[3] > tol), len(table))
  summary = dict(
    train_loss_max_rel_err=max(row[3] for row in table),
    steps_within_tol=float(within),
    q_halt_max_abs_err=max(row[4] for row in table),
    halt_decision_mismatches=float(mismatches),
    first_mismatch_step=float(first),
  )
  return summary, table


def weight_errors(ref: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> dict[str, float]:
  """{tensor name: `_max_rel`} over the tensors of both (ParityError when their names differ)."""
  if set(ref) != set(ours):
    raise ParityError(f'tensor names differ: {sorted(set(ref) ^ set(ours))}')
  return {k: _max_rel(ours[k], ref[k]) for k in sorted(ref)}


def compare_weights(ref: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> float:
  """The largest of `weight_errors`."""
  return max(weight_errors(ref, ours).values())


def run_training(
  cfg, repo: str, model_name: str, flags_: Any
) -> tuple[dict[str, float], list, list[tuple[str, float]]]:
  """K reference training steps and K hrm_jax train steps from the same weights on the same
  batches; returns (summary errors, per-step table, the five largest final weight errors as
  (tensor name, relative error))."""
  from hrm_jax.tools import torch_reference

  check_config(cfg, model_name)
  K, B = flags_.train_steps, flags_.batch
  cfg.model.compute_dtype = 'float32'
  cfg.train.update(steps=K, global_batch_size=B)
  if flags_.exploration == 'off':
    cfg.act.halt_exploration_prob = 0.0
  cls = import_reference(repo, model_name)
  vocab, seq_len = convert_torch.data_shapes(cfg.data)
  num_ids = flags_.num_puzzle_ids
  import torch

  torch.manual_seed(flags_.seed)
  ref = cls(reference_config(cfg, model_name, B, vocab, seq_len, num_ids))
  _randomize(ref.inner, flags_.seed)
  np_sd = {k: v.float().numpy() for k, v in saved_state_dict(ref).items()}
  _, graphdef, state, _ = convert_torch.convert_state_dict(cfg, np_sd)
  ema_rate = cfg.ema.rate if cfg.ema.enabled else None
  twin = _perturbed(ref, flags_.seed) if flags_.noise_floor else None
  batches = random_batches(np.random.default_rng(flags_.seed), K, B, vocab, seq_len, num_ids)

  def reference_run(model):
    torch.manual_seed(flags_.seed + 1)  # the same exploration draws in every reference run
    trainer = torch_reference.ReferenceTrainer(model, cfg, K, ema_rate)
    return trainer, [trainer.step(b) for b in batches]

  trainer, ref_records = reference_run(ref)
  draws = [r['min_halt_steps'] for r in ref_records] if flags_.exploration == 'reference' else None
  records, state = jax_train_rollout(cfg, graphdef, state, batches, draws)
  summary, table = compare_trajectories(ref_records, records, flags_.tol)
  state = jax.device_get(state)
  ours = convert_torch.to_torch_state_dict(state.params, state.buffers, state.puzzle_emb, prefix='')
  want = trainer.state_dict()
  table_key = convert_torch.PUZZLE_KEY
  if table_key in want:
    summary['puzzle_emb_max_rel_err'] = _max_rel(ours.pop(table_key), want.pop(table_key))
  errors = weight_errors(want, ours)
  summary['params_max_rel_err'] = max(errors.values())
  if cfg.ema.enabled:
    ema = convert_torch.to_torch_state_dict(state.ema_params, {}, None, prefix='')
    summary['ema_max_rel_err'] = compare_weights(trainer.ema_state_dict(), ema)
  if twin is not None:
    # The reference's own sensitivity: the same run from weights moved by about one fp32 ulp.
    twin_trainer, twin_records = reference_run(twin)
    floor, floor_table = compare_trajectories(ref_records, twin_records, flags_.tol)
    summary.update({f'noise_floor_{k}': v for k, v in floor.items()})
    # Per step: the reference's own loss and q_halt deviation beside ours.
    table = [row + (f[3], f[4]) for row, f in zip(table, floor_table)]
    want, twin_sd = trainer.state_dict(), twin_trainer.state_dict()
    if table_key in want:
      summary['noise_floor_puzzle_emb_max_rel_err'] = _max_rel(
        twin_sd.pop(table_key), want.pop(table_key)
      )
    summary['noise_floor_params_max_rel_err'] = compare_weights(want, twin_sd)
    if cfg.ema.enabled:
      summary['noise_floor_ema_max_rel_err'] = compare_weights(
        trainer.ema_state_dict(), twin_trainer.ema_state_dict()
      )
  worst = sorted(errors.items(), key=lambda kv: -kv[1])[:5]
  return summary, table, worst


def run(cfg, repo: str, model_name: str, flags_: Any) -> dict[str, float]:
  """Builds both models, runs them and returns {'max_abs_err_logits': ..., ...}."""
  import torch

  check_config(cfg, model_name)
  cfg.model.compute_dtype = 'float32'
  cls = import_reference(repo, model_name)
  vocab, seq_len = convert_torch.data_shapes(cfg.data)
  loaded = None
  num_ids = flags_.num_puzzle_ids
  if flags_.checkpoint:
    path = convert_torch.resolve_checkpoint(flags_.checkpoint)
    loaded = convert_torch.strip_prefixes(torch.load(path, map_location='cpu', weights_only=True))
    vocab = loaded['embed_tokens.embedding_weight'].shape[0]
    num_ids = loaded['puzzle_emb.weights'].shape[0] if 'puzzle_emb.weights' in loaded else 1
  B = flags_.batch
  torch.manual_seed(flags_.seed)
  ref = cls(reference_config(cfg, model_name, B, vocab, seq_len, num_ids))
  if loaded is None:
    _randomize(ref.inner, flags_.seed)
  else:
    ref.inner.load_state_dict(loaded, strict=True)
  ref.eval()
  sd = saved_state_dict(ref)
  if flags_.save_state_dict:
    arch = reference_config(cfg, model_name, B, vocab, seq_len, num_ids)
    _save(saved_state_dict(ref, bf16_buffers=True), flags_.save_state_dict, arch, model_name)
  rng = np.random.default_rng(flags_.seed)
  batch = dict(
    inputs=rng.integers(0, vocab, (B, seq_len), dtype=np.int32),
    labels=rng.integers(1, vocab, (B, seq_len), dtype=np.int32),
    puzzle_identifiers=rng.integers(0, num_ids, (B,), dtype=np.int32),
  )
  if not 1 <= flags_.segments <= cfg.act.halt_max_steps:
    raise ParityError(f'--segments must be in [1, act.halt_max_steps={cfg.act.halt_max_steps}]')
  want = reference_rollout(ref, batch, flags_.segments)
  np_sd = {k: v.float().numpy() for k, v in sd.items()}
  _, graphdef, state, _ = convert_torch.convert_state_dict(cfg, np_sd)
  got = jax_rollout(graphdef, state, batch, flags_.segments)
  result = {}
  for prefix, other in (
    ('max_abs_err', got),
    ('noise_floor', _perturbed_rollout(ref, batch, flags_)),
  ):
    for i, name in enumerate(('logits', 'q_halt', 'q_continue')):
      result[f'{prefix}_{name}'] = max(
        float(np.max(np.abs(w[i] - o[i]))) for w, o in zip(want, other)
      )
  result['max_abs_logits'] = max(float(np.max(np.abs(w[0]))) for w in want)
  return result


def _perturbed(ref, seed: int):
  """A copy of the reference model with every weight scaled by (1 + 2⁻²³·N(0, 1)), about one
  fp32 ulp.

  How far this moves the outputs (or a training run) is the reference's own fp32 noise floor:
  deep recursions (TRM-MLP at random init especially) amplify rounding differences by orders of
  magnitude, and no port can match the reference more closely than its own sensitivity to
  rounding.
  """
  import copy

  import torch

  twin = copy.deepcopy(ref)
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for p in twin.parameters():
      p.mul_(1 + 2.0**-23 * torch.randn(p.shape, generator=g))
  return twin


def _perturbed_rollout(ref, batch: dict, flags_: Any) -> list[tuple[np.ndarray, ...]]:
  """The reference rollout of `_perturbed(ref)`: the forward comparison's noise floor."""
  return reference_rollout(_perturbed(ref, flags_.seed), batch, flags_.segments)


def _save(sd: dict, path: str, arch: dict, model: str) -> None:
  """torch.save of `sd` at `path`, with the run's all_config.yaml (arch section) beside it."""
  import torch
  import yaml

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  torch.save(sd, path)
  arch = {k: v for k, v in arch.items() if k not in ('batch_size', 'seq_len', 'vocab_size')}
  arch.pop('num_puzzle_identifiers')
  arch['forward_dtype'] = 'bfloat16'
  module, cls = REFERENCE[model]
  arch['name'] = f'{module.removeprefix("models.")}@{cls}'
  with open(os.path.join(os.path.dirname(os.path.abspath(path)), 'all_config.yaml'), 'w') as f:
    yaml.safe_dump({'arch': arch}, f)


def define_flags() -> None:
  """The command's flags (defined only when it runs, see `hrm_jax.cli`)."""
  from absl import flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file('config', None, 'Config file[:preset].', lock_config=True)
  flags.DEFINE_string('repo', None, 'Checkout of the reference repo (HRM or TRM).')
  flags.DEFINE_enum('model', None, sorted(REFERENCE), 'Which reference model to compare.')
  flags.DEFINE_string('checkpoint', None, 'Reference state dict to load (default: random init).')
  flags.DEFINE_string('save_state_dict', None, 'Write the reference state dict here (.pt).')
  flags.DEFINE_integer('batch', 2, 'Batch size of the random inputs.')
  flags.DEFINE_integer('segments', 1, 'ACT segments to run and compare (from the initial carry).')
  flags.DEFINE_integer('num_puzzle_ids', 3, 'Puzzle-table rows at random init.')
  flags.DEFINE_integer('seed', 0, 'Seed of the weights and inputs.')
  flags.DEFINE_float(
    'tol', 1e-4, 'Largest error accepted: max-abs; with --train_steps, the relative loss error.'
  )
  flags.DEFINE_integer('train_steps', 0, 'K > 0: compare K training steps instead of a forward.')
  flags.DEFINE_enum(
    'exploration',
    'off',
    ['off', 'reference'],
    'Halting exploration with --train_steps: off (probability 0 on both sides), or the '
    "reference's draws fed to hrm_jax.",
  )
  flags.DEFINE_bool('verbose', False, 'With --train_steps: print a table of every step.')
  flags.DEFINE_bool(
    'noise_floor',
    False,
    'With --train_steps: also train the reference from weights moved by ~1 ulp and report how '
    'far its own run moves (noise_floor_*).',
  )
  flags.DEFINE_float(
    'weights_tol', 1e-3, 'With --train_steps: largest relative error of the final weights.'
  )
  flags.mark_flags_as_required(['config', 'repo', 'model'])


def main(argv):
  """CLI: prints the max-abs errors; exit 1 above --tol, 2 on bad input."""
  del argv
  from absl import flags

  f = flags.FLAGS
  if f.train_steps > 0:
    _train_main(f)
    return
  result = run(f.config, f.repo, f.model, f)
  for k, v in result.items():
    print(f'{k}: {v:.3e}')
  if f.save_state_dict:
    print(f'saved_state_dict: {f.save_state_dict}')
  worst = max(v for k, v in result.items() if k.startswith('max_abs_err'))
  if worst > f.tol:
    floor = max(v for k, v in result.items() if k.startswith('noise_floor'))
    print(f'FAIL: {worst:.3e} > tol {f.tol:g} (reference noise floor {floor:.3e})')
    sys.exit(1)
  print('OK')


def _train_main(f) -> None:
  """--train_steps: prints the summary (and with --verbose the per-step table); exit 1 when a
  relative error exceeds --tol or a halting decision differs."""
  summary, table, worst = run_training(f.config, f.repo, f.model, f)
  if f.verbose:
    floor = ' floor_rel_err floor_q_halt_abs_err' if f.noise_floor else ''
    print('step ref_loss loss rel_err q_halt_abs_err halt_mismatches halted' + floor)
    for k, r, o, rel, dq, bad, halted, *fl in table:
      extra = ''.join(f' {x:.2e}' for x in fl)
      print(f'{k} {r:.6e} {o:.6e} {rel:.2e} {dq:.2e} {bad} {halted}{extra}')
    print('largest final weight errors: ' + ', '.join(f'{k} {v:.2e}' for k, v in worst))
  for k, v in summary.items():
    print(f'{k}: {int(v) if k.endswith(("mismatches", "_step", "_tol")) else f"{v:.3e}"}')
  ours = {k: v for k, v in summary.items() if not k.startswith('noise_floor')}
  weights = max(v for k, v in ours.items() if k.endswith('rel_err') and not k.startswith('train'))
  loss = summary['train_loss_max_rel_err']
  mismatches = int(summary['halt_decision_mismatches'])
  if loss > f.tol or weights > f.weights_tol or mismatches:
    print(
      f'FAIL: loss relative error {loss:.3e} (tol {f.tol:g}), weights {weights:.3e} '
      f'(tol {f.weights_tol:g}), {mismatches} halting decisions differ'
    )
    sys.exit(1)
  print('OK')


def cli() -> None:
  from hrm_jax import cli as cli_lib

  cli_lib.run(main, define_flags, errors=(ParityError, convert_torch.ConversionError))


if __name__ == '__main__':
  cli()
