"""Pure train and evaluation steps: ACT segment, loss, gradients, both optimizer updates, EMA.

One step serves every arch of `models/model.py` (HRM, TRM and the ablations): the config picks
the network, the gradient schedule, the halting rule and whether the Q-continue target (an
extra no-grad segment) and the EMA of the weights are computed.

No I/O and no host synchronisation here. `train.py` jits these once with shardings and buffer
donation; static arguments (`graphdef`, `cfg`) are hashable (a Flax GraphDef and a
FrozenConfigDict).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from hrm_jax import losses, optim
from hrm_jax.models import act, layers
from hrm_jax.models import model as model_lib


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes, except the ACT carry.

  step: int32 scalar, optimizer steps taken. params: pure dict of trainable arrays (fp32).
  opt_state: Adam-atan2 state. puzzle_emb: [num_puzzle_identifiers, E] table, trained only
  by sparse sign-SGD. buffers: pure dict of non-trainable arrays (H_init, L_init). key: PRNG
  key from which step t draws `fold_in(key, t)`. ema_params: the exponential moving average
  of `params` when `ema.enabled` (TRM §4.5), else None.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  puzzle_emb: jax.Array
  buffers: Any
  key: jax.Array
  ema_params: Any = None


def build_model(cfg: ml_collections.ConfigDict, vocab_size: int, seq_len: int, seed: int):
  """Builds the network named by `cfg.model.arch` with initial weights from `seed`."""
  model_cfg = model_lib.ModelConfig.from_config(cfg.model)
  return model_lib.ReasoningModel(model_cfg, vocab_size, seq_len, rngs=nnx.Rngs(seed))


def split_model(model: nnx.Module):
  """(graphdef, params, buffers): the static structure and two pure dicts of arrays."""
  graphdef, params, buffers = nnx.split(model, nnx.Param, layers.Buffer)
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(buffers)


def schedules(cfg: ml_collections.ConfigDict):
  """(lr schedule for the weights, lr schedule for the puzzle embedding), both §5.3."""
  o = cfg.opt
  total = cfg.train.total_steps
  return (
    optim.lr_schedule(o.lr, o.lr_warmup_steps, total, o.lr_min_ratio),
    optim.lr_schedule(o.puzzle_emb_lr, o.lr_warmup_steps, total, o.lr_min_ratio),
  )


def optimizer(cfg: ml_collections.ConfigDict):
  """Adam-atan2 over all trainable parameters (§5.1)."""
  return optim.adam_atan2(schedules(cfg)[0], cfg.opt.b1, cfg.opt.b2, cfg.opt.weight_decay)


def init_state(
  cfg: ml_collections.ConfigDict, vocab_size: int, seq_len: int, num_puzzle_identifiers: int
):
  """(graphdef, TrainState) at step 0 for the dataset sizes given; puzzle table zeros (§1.1)."""
  model = build_model(cfg, vocab_size, seq_len, cfg.seed)
  graphdef, params, buffers = split_model(model)
  table = jnp.zeros((num_puzzle_identifiers, cfg.model.puzzle_emb_ndim), jnp.float32)
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=optimizer(cfg).init(params),
    puzzle_emb=table,
    buffers=buffers,
    key=jax.random.key_data(jax.random.key(cfg.seed + 1)),
    # The average starts from the initial weights, as the reference's EMAHelper.register.
    ema_params=jax.tree.map(jnp.copy, params) if cfg.ema.enabled else None,
  )
  return graphdef, state


def ema_update(ema_params, params, rate: float):
  """ema ← rate·ema + (1 − rate)·params, leaf by leaf (fp32), after every step (§4.5)."""
  return jax.tree.map(lambda e, p: rate * e + (1.0 - rate) * p, ema_params, params)


def eval_params(state: TrainState):
  """The weights evaluation and export use: the EMA average when kept, else the raw ones.

  Puzzle embeddings and H_init/L_init are never averaged (§4.5): they come from `state`.
  """
  return state.params if state.ema_params is None else state.ema_params


def init_carry(graphdef, state: TrainState, batch_size: int, seq_len: int) -> act.Carry:
  """An all-halted ACT carry for a batch of `batch_size` rows (§3.1)."""
  model = nnx.merge(graphdef, state.params, state.buffers)
  return act.empty_carry(
    batch_size,
    (model.total_len, model.cfg.hidden_size),
    seq_len,
    model.dtype,
    model.L_init.shape[0],
  )


def init_sharded(
  cfg: ml_collections.ConfigDict,
  vocab_size: int,
  seq_len: int,
  num_puzzle_identifiers: int,
  batch_size: int,
  mesh,
):
  """(graphdef, state, carry) of `init_state` and `init_carry`, created where they live.

  `jax.eval_shape` traces the initialisation for its shapes, and `jax.jit` with the mesh's
  shardings as `out_shardings` (`mesh.state_sharding`, `mesh.carry_sharding`: a
  `sharding.Mesh`) runs it, so each device computes only its own shards: a sharded ARC puzzle
  table (1.8 GB) is never built whole on one device. The values are `init_state`'s.
  """
  graphdefs = []

  def init():
    graphdef, state = init_state(cfg, vocab_size, seq_len, num_puzzle_identifiers)
    graphdefs.append(graphdef)  # static: the same structure at every trace
    return state, init_carry(graphdef, state, batch_size, seq_len)

  state_shape, carry_shape = jax.eval_shape(init)
  shardings = (mesh.state_sharding(state_shape), mesh.carry_sharding(carry_shape))
  state, carry = jax.jit(init, out_shardings=shardings)()
  return graphdefs[0], state, carry


def train_step(
  state: TrainState,
  carry: act.Carry,
  batch: dict,
  *,
  graphdef,
  cfg: ml_collections.FrozenConfigDict,
):
  """One ACT segment of deep supervision with its optimizer update (§3.1-3.2, §5.4).

  batch: dict of int32 arrays `inputs` [B, L], `labels` [B, L] (-100 = ignore),
  `puzzle_identifiers` [B], the global batch (sharded on the `data` axis under a mesh); an
  int32 [B] `act.MIN_STEPS_KEY` entry, where present, replaces the exploration draw (parity
  runs against the reference feed it the reference's draws).
  Returns (new state, new carry with detached states, metrics): the sums of
  losses.metric_sums plus per-step scalars `lr`, `grad_norm` (global L2 norm of the weight and
  puzzle-row gradients) and `nonfinite` (1.0 when the loss or gradient was not finite).
  """
  M_max = cfg.act.halt_max_steps
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  model0 = nnx.merge(graphdef, state.params, state.buffers)
  z_H0, z_L0 = model0.initial_state(carry.z_H.shape[0])
  carry = act.reset_halted(carry, batch, z_H0, z_L0)
  ids = carry.puzzle_identifiers
  rows = optim.gather_rows(state.puzzle_emb, ids)
  steps = carry.steps + 1
  is_last = steps >= M_max

  def loss_fn(params, rows):
    model = nnx.merge(graphdef, params, state.buffers)
    (z_H, z_L), (logits, q_halt, q_cont) = model(carry.z_H, carry.z_L, carry.inputs, rows)
    target = None
    if cfg.act.q_continue_loss:
      # PQN-style bootstrap: one more segment from the new states with the current weights.
      nxt = jax.lax.stop_gradient(model(z_H, z_L, carry.inputs, rows)[1])
      target = act.q_continue_target(nxt[1], nxt[2], is_last)
    total, stats = losses.act_loss(
      logits, carry.labels, q_halt, q_cont, target, cfg.loss.type, cfg.loss.q_weight
    )
    return total / cfg.train.global_batch_size, ((z_H, z_L), q_halt, q_cont, stats)

  grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
  (_, ((z_H, z_L), q_halt, q_cont, stats)), (g_params, g_rows) = grad_fn(state.params, rows)

  lr_sched, emb_sched = schedules(cfg)
  t = state.step + 1
  table = state.puzzle_emb
  if cfg.model.puzzle_emb_ndim > 0:
    table = optim.sparse_sign_sgd(table, ids, g_rows, emb_sched(t), cfg.opt.puzzle_emb_weight_decay)
  updates, opt_state = optimizer(cfg).update(g_params, state.opt_state, state.params)
  params = jax.tree.map(jnp.add, state.params, updates)

  halted = act.halt_decision(
    steps,
    q_halt,
    q_cont,
    M_max=M_max,
    key=key,
    exploration_prob=cfg.act.halt_exploration_prob,
    halt_rule=cfg.act.halt_rule,
    training=True,
    min_steps_B=batch.get(act.MIN_STEPS_KEY),
  )
  new_carry = carry.replace(
    z_H=jax.lax.stop_gradient(z_H), z_L=jax.lax.stop_gradient(z_L), steps=steps, halted=halted
  )
  metrics = losses.metric_sums(stats, halted, steps, q_halt, carry.inputs, carry.labels)
  ema_params = state.ema_params
  if ema_params is not None:
    ema_params = ema_update(ema_params, params, cfg.ema.rate)
  new_state = state.replace(
    step=t, params=params, opt_state=opt_state, puzzle_emb=table, ema_params=ema_params
  )
  # Divergence guard: the host stops the run on a non-finite loss or gradient (train.py); with
  # train.skip_nonfinite the step is instead dropped here (weights, moments, table, EMA and carry
  # kept). The step counter advances, so the data and RNG streams stay aligned with the step, and
  # so does Adam-atan2's count: the weights' lr clock (count) and the puzzle table's (step)
  # must not drift apart.
  grad_norm = optax.tree.norm((g_params, g_rows))
  finite = jnp.isfinite(grad_norm) & jnp.isfinite(stats['lm_loss'])
  if cfg.train.skip_nonfinite:
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    skipped = state.replace(step=t, opt_state=state.opt_state._replace(count=opt_state.count))
    new_state = keep(new_state, skipped)
    new_carry = keep(new_carry, carry.replace(steps=carry.steps))
    metrics = jax.tree.map(lambda m: jnp.where(finite, m, 0.0), metrics)
  metrics.update(lr=lr_sched(t), grad_norm=grad_norm, nonfinite=1.0 - finite.astype(jnp.float32))
  return new_state, new_carry, metrics


def jit_train_step(graphdef, cfg: ml_collections.ConfigDict, **jit_kwargs):
  """`train_step` bound to (graphdef, cfg) and jitted; `jit_kwargs` go to `jax.jit`."""
  fn = functools.partial(train_step, graphdef=graphdef, cfg=ml_collections.FrozenConfigDict(cfg))
  return jax.jit(fn, **jit_kwargs)


def eval_step(
  params,
  buffers,
  puzzle_emb: jax.Array,
  batch: dict,
  *,
  graphdef,
  cfg: ml_collections.FrozenConfigDict,
  M_max: int,
):
  """Runs M_max segments on a batch (no Q-based halting, §3.1 step 5) and scores the last.

  Returns (metric sums of the final segment, predictions int32 [B, L], q_halt [B]).
  Raising M_max beyond the training value is the paper's inference-time scaling.
  """
  model = nnx.merge(graphdef, params, buffers)
  B = batch['inputs'].shape[0]
  rows = optim.gather_rows(puzzle_emb, batch['puzzle_identifiers'])
  x = model.embed(batch['inputs'], rows)

  def segment(state, _):
    return model.segment(*state, x), None

  (z_H, _), _ = jax.lax.scan(segment, model.initial_state(B), None, length=M_max)
  logits, q_halt, q_cont = model.heads(z_H)
  _, stats = losses.act_loss(
    logits, batch['labels'], q_halt, q_cont, None, cfg.loss.type, cfg.loss.q_weight
  )
  halted = jnp.ones((B,), bool)
  steps = jnp.full((B,), M_max, jnp.int32)
  metrics = losses.metric_sums(stats, halted, steps, q_halt, batch['inputs'], batch['labels'])
  return metrics, jnp.argmax(logits, -1).astype(jnp.int32), q_halt


def count_params(params) -> int:
  """Trainable parameters (the papers' count: puzzle table and buffers excluded)."""
  return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))
