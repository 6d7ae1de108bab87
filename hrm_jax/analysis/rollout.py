"""Intermediate states of a trained model: load a workdir, run it segment by segment and cycle by
cycle, and return the z_H/z_L trajectories, the decoded predictions and the Q values.

The rollout runs the model's own segment (`model.segment`, the schedule of
`models/recurrence.py`) in its recording mode, which adds the per-step states and residuals as
scan outputs: the analysed computation is the trained and evaluated one by construction.
TRM reuses the names: z_H is its answer state y, z_L its latent z (`models/model.py`).

One *step* is one cell evaluation. A segment of `hrm`/`trm`/`trm_single_z` has K = N·(T + 1)
steps — N cycles of T low-level steps then one high-level step (N = H_cycles, T = L_cycles) —
and a `transformer` segment has K = 1 (one high-level pass). An episode has M segments.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hrm_jax import evaluate, optim, tasks
from hrm_jax import train_step as ts
from hrm_jax import workdir as workdir_lib
from hrm_jax.data import format as data_format
from hrm_jax.data import loader
from hrm_jax.models import recurrence

LOW, HIGH = 0, 1  # step kinds: which module a step updates
KEEP = ('none', 'segments', 'steps')


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A model ready for analysis: resolved config, graph, weights and the dataset sizes.

  `state.params` are the weights analysis uses (the EMA average when the run kept one, see
  `train_step.eval_params`); `step` is the checkpoint's step (0 for a fresh init).
  """

  cfg: ml_collections.ConfigDict
  graphdef: Any
  state: ts.TrainState
  meta: data_format.Metadata
  step: int
  workdir: str

  def model(self) -> nnx.Module:
    """The network as an NNX module with the analysis weights merged in."""
    return nnx.merge(self.graphdef, self.state.params, self.state.buffers)


def load(workdir: str, cfg: Optional[ml_collections.ConfigDict] = None) -> Loaded:
  """Restores the latest checkpoint of `workdir` (`evaluate.load_trained`), trained with `cfg`
  (default: the config the run saved in the workdir).

  Returns a `Loaded` whose params are `train_step.eval_params` of the restored state (the EMA
  average when the run kept one).
  """
  cfg = cfg if cfg is not None else workdir_lib.saved_config(workdir)
  if cfg is None:
    raise FileNotFoundError(f'{workdir} holds no config.json: pass the training config')
  cfg, graphdef, state, step, meta = evaluate.load_trained(cfg, workdir)
  return Loaded(cfg, graphdef, state.replace(params=ts.eval_params(state)), meta, step, workdir)


def random_init(loaded: Loaded) -> Loaded:
  """The same config at its initial weights (seed `cfg.seed`, the trained run's own start;
  puzzle-embedding table zeros), for the untrained baselines of the analyses."""
  cfg, m = loaded.cfg, loaded.meta
  rows = loaded.state.puzzle_emb.shape[0]  # padded when the run sharded the table
  _, state = ts.init_state(cfg, m.vocab_size, m.seq_len, rows)
  # The trained graphdef describes the same structure; sharing it shares compiled rollouts.
  return Loaded(cfg, loaded.graphdef, state, m, 0, loaded.workdir)


def eval_batches(
  loaded: Loaded, num_examples: int = 0, batch_size: int = 0, data_dir: Optional[str] = None
):
  """Yields numpy batches (`inputs`, `labels` [b, L], `puzzle_identifiers` [b]) of the first
  `num_examples` (0: all) test examples of `data_dir` (default: the workdir's dataset, built
  from the config if missing), in file order, b = min(batch_size or eval.batch_size,
  num_examples). Rows past the end are padding as in `loader.eval_batches`: inputs pad_id and
  labels all ignored (`analysis.valid_rows` drops them), so every batch has the same shape."""
  if data_dir is None:
    data_dir = tasks.prepare_data(loaded.cfg, loaded.workdir)
  split = tasks.load_split(data_dir, 'test')
  batch_size = batch_size or loaded.cfg.eval.batch_size
  if num_examples:
    batch_size = min(batch_size, num_examples)
  seen = 0
  for batch in loader.eval_batches(split, batch_size):
    if num_examples and seen >= num_examples:
      return
    extra = seen + batch_size - num_examples if num_examples else 0
    if extra > 0:
      batch = dict(batch)
      batch['inputs'] = batch['inputs'].copy()
      batch['inputs'][-extra:] = split.metadata.pad_id
      batch['labels'] = np.where(
        np.arange(batch_size)[:, None] < batch_size - extra,
        batch['labels'],
        data_format.IGNORE_LABEL_ID,
      )
    seen += batch_size
    yield batch


def step_kinds(model_cfg: Any, baseline: bool = False) -> np.ndarray:
  """int [K]: the module each step of one segment updates (LOW = 0 or HIGH = 1).

  `baseline`: the plain recurrent baseline (see `rollout`) — the same K steps, all LOW.
  """
  if model_cfg.arch == 'transformer':
    kinds = [HIGH]
  else:
    kinds = ([LOW] * model_cfg.L_cycles + [HIGH]) * model_cfg.H_cycles
  if baseline:
    if model_cfg.arch == 'transformer':
      raise ValueError('the recurrent baseline iterates f_L; arch transformer has none')
    kinds = [LOW] * len(kinds)
  return np.asarray(kinds, np.int32)


def _norm_B(d: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(jnp.square(d.astype(jnp.float32)), axis=(1, 2)))


@functools.partial(jax.jit, static_argnames=('graphdef', 'M', 'keep', 'baseline'))
def _rollout(params, buffers, puzzle_emb, inputs, puzzle_ids, *, graphdef, M, keep, baseline):
  model = nnx.merge(graphdef, params, buffers)
  x = model.embed(inputs, optim.gather_rows(puzzle_emb, puzzle_ids))
  c = model.cfg

  def record(before, after):
    out = dict(res_H=_norm_B(after[0] - before[0]), res_L=_norm_B(after[1] - before[1]))
    if keep == 'steps':
      out['z_H'], out['z_L'] = after
    return out

  def segment(state, _):
    if baseline:  # the same f_L steps as a segment has evaluations; z_H never updated
      low, _ = model.cells(x)
      state, recs = recurrence.schedule(low, low, state, c.H_cycles, c.L_cycles, 'full', record)
    else:
      state, recs = model.segment(*state, x, record=record)
    z_H, z_L = state
    # The baseline never updates z_H, so its answer is read from the state that moves.
    logits, q_halt, q_continue = model.heads(z_L if baseline else z_H)
    out = dict(
      preds=jnp.argmax(logits, -1).astype(jnp.int32), q_halt=q_halt, q_continue=q_continue, **recs
    )
    if keep == 'segments':
      out['z_H'], out['z_L'] = z_H, z_L
    return state, out

  _, outs = jax.lax.scan(segment, model.initial_state(inputs.shape[0]), None, length=M)
  return outs


@dataclasses.dataclass
class Trajectory:
  """One rollout of M segments on a batch of B examples (numpy arrays).

  z_H, z_L: the states, [M, K, B, S, D] after every step (keep='steps'), [M, B, S, D] after
    every segment (keep='segments'), or None (keep='none'). S = puzzle prefix + seq_len.
  res_H, res_L: [M, K, B] forward residuals ‖z^k − z^{k−1}‖ (Frobenius over S×D, fp32) of each
    state at every step; a state a step does not update has residual 0.
  step_kind: [K] LOW/HIGH per step. preds: [M, B, L] argmax decodings after each segment.
  q_halt, q_continue: [M, B] Q logits after each segment.
  """

  res_H: np.ndarray
  res_L: np.ndarray
  step_kind: np.ndarray
  preds: np.ndarray
  q_halt: np.ndarray
  q_continue: np.ndarray
  z_H: Optional[np.ndarray] = None
  z_L: Optional[np.ndarray] = None


def rollout(
  loaded: Loaded,
  batch: dict,
  M: Optional[int] = None,
  keep: str = 'segments',
  baseline: bool = False,
) -> Trajectory:
  """Runs `loaded`'s model M segments (default: eval.halt_max_steps) from its initial state on
  `batch` (`inputs` [B, L], `puzzle_identifiers` [B]), step by step, as evaluation does (no Q
  halting), and returns the `Trajectory`.

  `baseline=True` runs the plain recurrent baseline of the forward-residual figure: the same
  model's f_L applied for the same M·K steps with z_H frozen at its initial state (no high-level
  update). It is the HRM with its hierarchy removed and nothing else changed — same weights, same
  input injection z_H⁰ + x, same number of evaluations — so any difference in how the residuals
  decay is the high-level update's doing; its predictions are read from z_L.
  """
  if keep not in KEEP:
    raise ValueError(f'keep must be one of {KEEP}, got {keep!r}')
  M = M or loaded.cfg.eval.halt_max_steps
  kinds = step_kinds(loaded.cfg.model, baseline)  # raises first for a baseline without f_L
  s = loaded.state
  outs = jax.device_get(
    _rollout(
      s.params,
      s.buffers,
      s.puzzle_emb,
      jnp.asarray(batch['inputs']),
      jnp.asarray(batch['puzzle_identifiers']),
      graphdef=loaded.graphdef,
      M=int(M),
      keep=keep,
      baseline=bool(baseline),
    )
  )
  return Trajectory(step_kind=kinds, **outs)
