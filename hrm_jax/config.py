"""Shared config defaults, validation and run-time resolution.

`experiments/<task>.py` start from `base_config(task)` (the shared defaults plus the task's
`data` group, `hrm_jax/tasks/<task>.py`) and override what their recipe changes. The `model`
group is validated by `models.model.ModelConfig`, the frozen value the network is built from.
Sizes that come from the data (vocab, seq_len, number of puzzle ids) are never in a config:
they are read from the dataset's metadata at run time.
"""

from __future__ import annotations

import importlib.util
import math

import ml_collections

from hrm_jax import losses
from hrm_jax.models import model as model_lib


def base_config(task: str = 'sudoku') -> ml_collections.ConfigDict:
  """The shared defaults of both reference repos (spec §2.1, §5.6 `cfg_pretrain.yaml`), with
  the `data` group of `task` (`hrm_jax.tasks.<task>.data_config()`)."""
  from hrm_jax import tasks  # the task modules import this one for ConfigError

  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = dict(
    arch='hrm',  # hrm | trm | trm_single_z | trm_multi_z | transformer (hrm_jax/models/model.py)
    hidden_size=512,
    num_heads=8,
    expansion=4.0,
    H_layers=4,  # TRM: 0 = the y-update shares the z-update's network
    L_layers=4,
    H_cycles=2,
    L_cycles=2,
    pos_encodings='rope',
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    puzzle_emb_ndim=512,
    puzzle_emb_len=0,  # 0: ceil(puzzle_emb_ndim / hidden_size) prefix slots (HRM)
    compute_dtype='bfloat16',
    gradient='one_step',  # one_step (HRM) | last_cycle (TRM) | full (all cycles; ablation)
    token_mixer='attention',  # or 'mlp': SwiGLU over the sequence axis (TRM-MLP, §4.4)
    # What the backward pass recomputes instead of storing (layers.REMAT): 'dots' keeps only
    # the projections' outputs and runs attention in recomputed query chunks (README benchmark:
    # 2-4x less train-step memory, no slower on CPU); 'attention' chunks attention only;
    # 'block' keeps block inputs only (least memory for TRM); 'none'.
    remat='dots',
  )
  # EMA of the trainable weights (TRM §4.5): evaluation uses the average, training the raw ones.
  c.ema = dict(enabled=False, rate=0.999)
  c.act = dict(
    halt_max_steps=16,
    halt_exploration_prob=0.1,
    halt_rule='q_continue',  # HRM: halt when q_halt > q_continue; 'zero': q_halt > 0 (TRM)
    q_continue_loss=True,  # HRM's bootstrapped Q-continue target (extra no-grad segment)
  )
  c.loss = dict(type='stablemax', q_weight=0.5)
  c.opt = dict(
    lr=1e-4,
    lr_min_ratio=1.0,
    lr_warmup_steps=2000,
    b1=0.9,
    b2=0.95,
    weight_decay=0.1,
    puzzle_emb_lr=1e-2,
    puzzle_emb_weight_decay=0.1,
  )
  c.train = dict(
    global_batch_size=768,
    epochs=100000,
    eval_interval=10000,  # epochs between evaluations, as the reference counts them
    steps=0,  # total optimizer steps; 0: floor(epochs · groups · mean examples / batch) (§5.5)
    eval_every=0,  # steps between evaluations; 0: from eval_interval
    log_every=50,
    total_steps=0,  # resolved at run time from `steps` or `epochs`; do not set
    # A non-finite loss or gradient stops the run (keeping the last good checkpoint); True
    # drops such a step instead and goes on (the `nonfinite` metric counts them).
    skip_nonfinite=False,
  )
  c.eval = dict(
    batch_size=0,  # global eval batch; 0: train.global_batch_size
    halt_max_steps=0,  # M_max at evaluation; 0: act.halt_max_steps. Raise it to scale.
    max_examples=0,  # evaluate the first N test examples only; 0: all
    # ARC: pool pass@K votes over every evaluation of the run (the TRM reference always does);
    # False: each evaluation votes with its own checkpoint's predictions only.
    aggregate_votes=False,
  )
  # every_steps 0: checkpoint at each evaluation. dir: where the checkpoints go, default
  # '<workdir>/checkpoints' (any path orbax writes: another disk or bucket).
  c.ckpt = dict(every_steps=0, max_to_keep=3, dir='')
  # Devices: one `data` mesh axis over all devices of all hosts (hrm_jax/sharding.py).
  c.mesh = dict(
    shard_puzzle_emb=False,  # split the puzzle table's rows over the devices (ARC: 1.8 GB)
    prefetch=2,  # global batches built and sent to the devices ahead of the step; 0: none
  )
  c.log = dict(
    tensorboard=True,  # also write TensorBoard scalars to <workdir>/tensorboard
    wandb=False,  # also send them to Weights & Biases (pip install -e ".[wandb]")
    wandb_project='hrm_jax',
    wandb_run_name='',  # '': W&B's own name
  )
  c.data = tasks.get(task).data_config()
  return c


def from_preset(
  presets: dict, preset: str, source: str, task: str = 'sudoku'
) -> ml_collections.ConfigDict:
  """`base_config(task)` changed by `presets[preset or 'default']`, a function editing it in
  place.

  `source` (the experiment file) names where the preset was looked up in the error for an
  unknown name.
  """
  preset = preset or 'default'
  if preset not in presets:
    raise ValueError(f'unknown preset {preset!r} for {source}; choose one of {sorted(presets)}')
  c = base_config(task)
  presets[preset](c)
  return c


def use_cpu_recipe(c: ml_collections.ConfigDict) -> None:
  """Sets the small HRM and schedule of every task's `cpu` preset on `c`, in place: hidden 64,
  2 heads, one block per module, N = T = 2, M_max 8, fp32 (bf16 gains nothing on CPUs without
  bf16 units, README benchmark), batch 64, 2000 steps, Adam-atan2 lr 1e-3 with 100 warm-up
  steps and cosine decay to 0.1, weight decays 0.1. Tuned on Sudoku (README table)."""
  c.model.update(
    hidden_size=64,
    num_heads=2,
    H_layers=1,
    L_layers=1,
    H_cycles=2,
    L_cycles=2,
    compute_dtype='float32',
    puzzle_emb_ndim=64,
  )
  c.act.update(halt_max_steps=8)
  c.train.update(global_batch_size=64, steps=2000, eval_every=500, log_every=50)
  c.eval.update(batch_size=250)
  c.opt.update(
    lr=1e-3,
    lr_min_ratio=0.1,
    puzzle_emb_lr=1e-3,
    lr_warmup_steps=100,
    weight_decay=0.1,
    puzzle_emb_weight_decay=0.1,
  )


def use_trm(
  c: ml_collections.ConfigDict,
  *,
  T: int,
  n: int,
  puzzle_emb_len: int = 16,
  token_mixer: str = 'attention',
  ema_rate: float = 0.999,
) -> None:
  """Sets TRM's model, halting and EMA (spec §4) on `c`, in place: one 2-layer network, T
  recursions of n z-updates and one y-update, gradient through the last recursion, halting on
  q_halt > 0 with the halt BCE only, EMA of the weights. Every task's TRM presets use this."""
  c.model.update(
    arch='trm',
    H_layers=0,
    L_layers=2,
    H_cycles=T,
    L_cycles=n,
    puzzle_emb_len=puzzle_emb_len,
    gradient='last_cycle',
    token_mixer=token_mixer,
    # The sequence mixer is position-aware by construction; TRM-Att keeps RoPE (§4.4).
    pos_encodings='none' if token_mixer == 'mlp' else 'rope',
  )
  c.act.update(halt_rule='zero', q_continue_loss=False)
  c.ema.update(enabled=True, rate=ema_rate)


# The TRM paper's ablation family (Tables 1-2, §4.7) as changes to a 2-layer TRM config: name ->
# {dotted field: value}. The Sudoku presets (`experiments/sudoku.py`) apply the first five to the
# paper's TRM-MLP, `hrm_jax.tools.ablate` all of them to a CPU TRM at equal wall time.
TRM_ABLATIONS = {
  'act_continue': {'act.halt_rule': 'q_continue', 'act.q_continue_loss': True},
  'separate_nets': {'model.H_layers': 2},  # the y-update gets its own 2-layer network
  'no_ema': {'ema.enabled': False},
  'attention': {'model.token_mixer': 'attention', 'model.pos_encodings': 'rope'},
  'one_step_grad': {'model.gradient': 'one_step'},
  'single_z': {'model.arch': 'trm_single_z'},
  'multi_z': {'model.arch': 'trm_multi_z'},  # the reference's trm_hier6 (n latent features)
  # HRM at equal parameters: the 2 layers split into f_L and f_H of one block each, N = T = 2,
  # the 1-step gradient, HRM's halting (Q-continue target) and no EMA (HRM has none).
  'hrm': {
    'model.arch': 'hrm',
    'model.H_layers': 1,
    'model.L_layers': 1,
    'model.H_cycles': 2,
    'model.L_cycles': 2,
    'model.gradient': 'one_step',
    'act.halt_rule': 'q_continue',
    'act.q_continue_loss': True,
    'ema.enabled': False,
  },
  # The direct-prediction transformer at equal parameters: the same 2 blocks applied once per
  # segment with full gradient, the reference baseline's training setup (§4.7): it halts on
  # q_halt > q_continue but never passes `compute_target_q`, so its continue head gets no loss.
  'direct': {
    'model.arch': 'transformer',
    'model.H_layers': 2,
    'act.halt_rule': 'q_continue',
    'act.q_continue_loss': False,
    'ema.enabled': False,
  },
}


def apply(c: ml_collections.ConfigDict, changes: dict) -> ml_collections.ConfigDict:
  """`c` with each `{'group.field': value}` of `changes` set, in place (and returned);
  ConfigError naming a field that `c` does not have."""
  for key, value in changes.items():
    group, _, field = key.rpartition('.')
    node = c
    for part in filter(None, group.split('.')):
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or field not in node:
      raise ConfigError(f'invalid config: {key}: no such field')
    node[field] = value
  return c


def shrink(
  c: ml_collections.ConfigDict,
  *,
  hidden_size: int = 32,
  batch_size: int = 4,
  steps: int = 1,
  eval_every: int | None = None,
  log_every: int | None = None,
  eval_batch_size: int | None = None,
  halt_max_steps: int | None = None,
  lr: float | None = None,
  lr_warmup_steps: int | None = 1,
) -> ml_collections.ConfigDict:
  """`c` at test size, in place (and returned): the one shrinking of the `tiny` preset and of
  the tests. Keeps what distinguishes a preset (arch, gradient, token mixer, cycles, prefix
  length, halting rule, EMA), so a few steps exercise its code path.

  Model: `hidden_size` (and puzzle_emb_ndim, unless 0), ≤ 2 layers per network, fp32, 2 heads
  (a preset's 12 are kept: the `direct` baseline's non-dividing count, head_dim 2, o_proj
  24 -> 32). Schedule: global batch `batch_size`, `steps` optimizer steps, an evaluation every
  `eval_every` (default: at the end), eval batch `eval_batch_size` (default `batch_size`);
  `lr_warmup_steps` 1 gives the full lr from step 1, so that one step visibly moves every weight
  (even q_head's bias −5). `log_every`, `halt_max_steps`, `lr` (also the puzzle-embedding lr)
  and `lr_warmup_steps` are kept when None. Data sizes are the caller's (they are per task).
  """
  m = c.model
  m.update(
    hidden_size=hidden_size,
    num_heads=12 if m.num_heads == 12 else 2,
    H_layers=min(m.H_layers, 2),
    L_layers=min(m.L_layers, 2),
    puzzle_emb_ndim=hidden_size if m.puzzle_emb_ndim else 0,
    compute_dtype='float32',
  )
  c.train.update(global_batch_size=batch_size, steps=steps, eval_every=eval_every or steps)
  if log_every is not None:
    c.train.log_every = log_every
  c.eval.batch_size = eval_batch_size or batch_size
  if halt_max_steps is not None:
    c.act.halt_max_steps = halt_max_steps
  if lr is not None:
    c.opt.update(lr=lr, puzzle_emb_lr=lr)
  if lr_warmup_steps is not None:
    c.opt.lr_warmup_steps = lr_warmup_steps
  return c


class ConfigError(ValueError):
  """An invalid config value; the message names the field (e.g. `train.global_batch_size`)."""


def _check(cond: bool, field: str, msg: str):
  if not cond:
    raise ConfigError(f'invalid config: {field}: {msg}')


def validate(cfg: ml_collections.ConfigDict, num_devices: int = 1) -> None:
  """Raises ConfigError naming the field for impossible values, before anything compiles."""
  a, t = cfg.act, cfg.train
  try:
    model_lib.ModelConfig.from_config(cfg.model)  # the model group validates itself
  except (ValueError, TypeError) as e:
    raise ConfigError(f'invalid config: {e}') from None
  _check(0.0 <= cfg.ema.rate < 1.0, 'ema.rate', f'must be in [0, 1), got {cfg.ema.rate}')
  _check(a.halt_max_steps >= 1, 'act.halt_max_steps', f'must be >= 1, got {a.halt_max_steps}')
  _check(0.0 <= a.halt_exploration_prob <= 1.0, 'act.halt_exploration_prob', 'must be in [0, 1]')
  _check(a.halt_rule in ('q_continue', 'zero'), 'act.halt_rule', f'unknown rule {a.halt_rule!r}')
  _check(
    cfg.loss.type in losses.LOSS_TYPES,
    'loss.type',
    f'must be one of {losses.LOSS_TYPES}, got {cfg.loss.type!r}',
  )
  _check(t.global_batch_size >= 1, 'train.global_batch_size', 'must be >= 1')
  _check(
    t.global_batch_size % num_devices == 0,
    'train.global_batch_size',
    f'{t.global_batch_size} is not divisible by the {num_devices} devices',
  )
  eval_batch = cfg.eval.batch_size or t.global_batch_size
  _check(
    eval_batch % num_devices == 0,
    'eval.batch_size',
    f'{eval_batch} is not divisible by the {num_devices} devices',
  )
  _check(t.steps >= 0 and t.eval_every >= 0, 'train.steps', 'must be >= 0')
  _check(t.log_every >= 1, 'train.log_every', f'must be >= 1, got {t.log_every}')
  _check(cfg.mesh.prefetch >= 0, 'mesh.prefetch', f'must be >= 0, got {cfg.mesh.prefetch}')
  _check(cfg.opt.lr_warmup_steps >= 0, 'opt.lr_warmup_steps', 'must be >= 0')
  _check(0.0 <= cfg.opt.lr_min_ratio <= 1.0, 'opt.lr_min_ratio', 'must be in [0, 1]')
  o = cfg.opt
  # `not (x > 0)` also catches NaN, which compares false with everything.
  _check(math.isfinite(o.lr) and o.lr > 0, 'opt.lr', f'must be a finite number > 0, got {o.lr}')
  for name in ('puzzle_emb_lr', 'weight_decay', 'puzzle_emb_weight_decay'):
    v = o[name]
    _check(math.isfinite(v) and v >= 0, f'opt.{name}', f'must be a finite number >= 0, got {v}')
  for name in ('b1', 'b2'):
    _check(0.0 <= o[name] < 1.0, f'opt.{name}', f'must be in [0, 1), got {o[name]}')
  _check(
    cfg.ckpt.max_to_keep >= 1,
    'ckpt.max_to_keep',
    f'must be >= 1 (how many checkpoints to keep), got {cfg.ckpt.max_to_keep}',
  )
  _check(cfg.ckpt.every_steps >= 0, 'ckpt.every_steps', 'must be >= 0 (0: at each evaluation)')
  _check(cfg.eval.max_examples >= 0, 'eval.max_examples', 'must be >= 0 (0: all)')
  _check(
    cfg.eval.halt_max_steps >= 0, 'eval.halt_max_steps', 'must be >= 0 (0: act.halt_max_steps)'
  )
  _check(
    not cfg.log.get('wandb') or importlib.util.find_spec('wandb') is not None,
    'log.wandb',
    'W&B logging needs the wandb package: pip install -e ".[wandb]" from the checkout',
  )


def resolve(cfg: ml_collections.ConfigDict, steps_per_epoch: float) -> ml_collections.ConfigDict:
  """A copy with every derived field filled in: train.total_steps and train.eval_every from the
  data (§5.5), eval.batch_size and eval.halt_max_steps from their training counterparts."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  t = cfg.train
  t.total_steps = t.steps or max(1, math.floor(t.epochs * steps_per_epoch))
  if not t.eval_every:
    t.eval_every = max(1, math.floor(t.eval_interval * steps_per_epoch))
  cfg.eval.batch_size = cfg.eval.batch_size or t.global_batch_size
  cfg.eval.halt_max_steps = cfg.eval.halt_max_steps or cfg.act.halt_max_steps
  return cfg


# Fields a rerun on an existing workdir may change: how long to train, how and when to
# evaluate, log and checkpoint, where the data lives. Anything else makes it another run.
RESUMABLE_FIELDS = (
  'train.steps',
  'train.epochs',
  'train.eval_interval',
  'train.eval_every',
  'train.log_every',
  'train.skip_nonfinite',
  'eval.',
  'ckpt.',
  'mesh.prefetch',
  'model.remat',  # memory/speed only: the same computation
  'log.',
  'data.path',
  'data.csv_dir',
  # The same data either way: format=tfds reads the TFDS dataset whose fields are the run's
  # (hrm_jax/data/tfds/configs.py checks); also absent from runs saved before them.
  'data.format',
  'data.tfds_name',
  'data.tfds_data_dir',
)


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def run_differences(saved: dict, cfg: ml_collections.ConfigDict) -> list[str]:
  """'field: saved -> now' for each field of `cfg` that differs from the `saved` config
  (`cfg.to_dict()` of an earlier run) and that a resumed run may not change (see
  RESUMABLE_FIELDS). `train.total_steps` is derived and ignored."""
  old, new = _flatten(saved), _flatten(cfg.to_dict())
  diffs = []
  for k in sorted(old.keys() | new.keys()):
    if k == 'train.total_steps' or any(k.startswith(f) for f in RESUMABLE_FIELDS):
      continue
    a, b = old.get(k, '<absent>'), new.get(k, '<absent>')
    if a != b and not (isinstance(a, (list, tuple)) and list(a) == list(b or [])):
      diffs.append(f'{k}: {a!r} -> {b!r}')
  return diffs
