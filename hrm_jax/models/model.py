"""The recursive reasoning networks: HRM, TRM and their ablations as one module (spec §1-4).

`model.arch` picks which networks exist and how a segment uses them; everything else
(embeddings, heads, initial states, the ACT step, loss and optimizers) is shared:

  'hrm'          — f_L (L_layers) and f_H (H_layers), separate weights; HRM §2.
  'trm'          — one network (L_layers) for both the z- and the y-update, TRM §4.2; with
                   H_layers > 0 the y-update gets its own network (the "separate f_H, f_L"
                   ablation). The reference's TRM config has H_layers 0 ("ignored").
  'trm_single_z' — one network and one carried state (TRM Table 2 "single z", §4.7).
  'trm_multi_z'  — one network, the answer y and n = L_cycles latent features z_1..z_n, each
                   updated once per cycle from their sum (TRM Table 2 "multi-scale z", the
                   reference's `trm_hier6.py`); z_L holds them side by side, [B, S, n·D].
  'transformer'  — the direct-prediction baseline (§4.7): H_layers blocks applied once per
                   segment to (z_H + x) with full gradient; H_cycles/L_cycles are unused.

The gradient schedule (`model.gradient`: one_step, last_cycle, full) and the token mixer
(`model.token_mixer`: attention, or mlp for TRM-MLP) are independent of the arch.

The puzzle-embedding table is *not* part of the module: it is a separate array in the train
state, trained sparsely by sign-SGD (spec §1.11, §5.2). The caller gathers the batch's rows and
passes them to `embed`, so their gradient comes out as one row per example.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from hrm_jax.models import layers, recurrence

POS_ENCODINGS = ('rope', 'learned', 'none')
ARCHS = ('hrm', 'trm', 'trm_single_z', 'trm_multi_z', 'transformer')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The `model` config group as a frozen, validated value (hashable: the graphdef holding it
  can be a static jit argument). Build it with `from_config(cfg.model)`; the defaults are the
  HRM paper's (spec §2.1). Field meanings: `hrm_jax/config.py` `base_config`."""

  arch: str = 'hrm'
  hidden_size: int = 512
  num_heads: int = 8
  expansion: float = 4.0
  H_layers: int = 4
  L_layers: int = 4
  H_cycles: int = 2
  L_cycles: int = 2
  pos_encodings: str = 'rope'
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-5
  puzzle_emb_ndim: int = 512
  puzzle_emb_len: int = 0
  compute_dtype: str = 'bfloat16'
  gradient: str = 'one_step'
  token_mixer: str = 'attention'
  remat: str = 'dots'

  @classmethod
  def from_config(cls, model_cfg: Any) -> 'ModelConfig':
    """From a ConfigDict/dict/ModelConfig of the model group; ValueError('model.<field>: ...')
    for an unknown field or an impossible value."""
    if isinstance(model_cfg, cls):
      return model_cfg
    values = dict(model_cfg.items())
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(f'model.{unknown[0]}: unknown field; the model fields are {sorted(names)}')
    return cls(**values)

  def __post_init__(self):
    def check(cond: bool, field: str, msg: str):
      if not cond:
        raise ValueError(f'model.{field}: {msg}')

    check(self.arch in ARCHS, 'arch', f'must be one of {ARCHS}, got {self.arch!r}')
    for f in ('hidden_size', 'num_heads', 'H_cycles', 'L_cycles'):
      check(getattr(self, f) >= 1, f, f'must be >= 1, got {getattr(self, f)}')
    if has_f_L(self):
      check(self.L_layers >= 1, 'L_layers', f'must be >= 1, got {self.L_layers}')
    if has_separate_f_H(self):
      check(self.H_layers >= 1, 'H_layers', f'must be >= 1, got {self.H_layers}')
    check(
      self.token_mixer in layers.TOKEN_MIXERS,
      'token_mixer',
      f'must be one of {layers.TOKEN_MIXERS}, got {self.token_mixer!r}',
    )
    # head_dim = hidden // num_heads need not divide evenly: the reference's 12-head baseline
    # has head_dim 42 and an o_proj from 504 to 512 (spec §4.7).
    check(
      self.num_heads <= self.hidden_size, 'num_heads', f'must be <= hidden_size {self.hidden_size}'
    )
    check(
      (self.hidden_size // self.num_heads) % 2 == 0 or self.pos_encodings != 'rope',
      'num_heads',
      'RoPE needs an even head dimension',
    )
    check(
      self.pos_encodings in POS_ENCODINGS,
      'pos_encodings',
      f'must be one of {POS_ENCODINGS}, got {self.pos_encodings!r}',
    )
    check(self.remat in layers.REMAT, 'remat', f'must be one of {layers.REMAT}, got {self.remat!r}')
    check(
      self.gradient in recurrence.GRADIENT_MODES,
      'gradient',
      f'must be one of {recurrence.GRADIENT_MODES}, got {self.gradient!r}',
    )
    check(self.puzzle_emb_ndim >= 0, 'puzzle_emb_ndim', 'must be >= 0')
    check(self.puzzle_emb_len >= 0, 'puzzle_emb_len', 'must be >= 0')
    check(
      self.compute_dtype in DTYPES,
      'compute_dtype',
      f'must be one of {sorted(DTYPES)}, got {self.compute_dtype!r}',
    )

  @property
  def dtype(self):
    """The compute dtype as a JAX dtype."""
    return DTYPES[self.compute_dtype]


def puzzle_prefix_len(cfg: Any) -> int:
  """Number of puzzle-embedding prefix positions P (§1.9): HRM ceil(ndim/hidden), TRM fixed."""
  if cfg.puzzle_emb_ndim <= 0:
    return 0
  if cfg.puzzle_emb_len:
    return int(cfg.puzzle_emb_len)
  return -(cfg.puzzle_emb_ndim // -cfg.hidden_size)


def has_separate_f_H(cfg: Any) -> bool:
  """Whether `cfg` (the model group) builds an H_level network of its own."""
  return cfg.arch in ('hrm', 'transformer') or (cfg.arch == 'trm' and cfg.H_layers > 0)


def z_L_features(cfg: Any) -> int:
  """How many D-wide features z_L holds: L_cycles for trm_multi_z, else 1.

  The reference's `trm_hier6.py` always carries 6 and needs L_cycles <= 6; at L_cycles = 6 (its
  config) the two agree, and with fewer cycles its unused features would be constants.
  """
  return cfg.L_cycles if cfg.arch == 'trm_multi_z' else 1


def has_f_L(cfg: Any) -> bool:
  """Whether `cfg` (the model group) builds an L_level network."""
  return cfg.arch != 'transformer'


class ReasoningModel(nnx.Module):
  """The networks of `cfg.arch` (see the module docstring), built for the dataset's sizes.

  Attribute names follow the reference state dicts (embed_tokens, lm_head, q_head, H_level,
  L_level, H_init, L_init; `mlp_t` for the sequence mixer) so checkpoints map one to one.
  H_level / L_level are None where the arch has no such network.
  """

  def __init__(self, cfg: ModelConfig, vocab_size: int, seq_len: int, *, rngs: nnx.Rngs):
    cfg = ModelConfig.from_config(cfg)
    D = cfg.hidden_size
    dtype = cfg.dtype
    self.cfg = cfg
    self.dtype = dtype
    self.prefix_len = puzzle_prefix_len(cfg)
    self.total_len = seq_len + self.prefix_len
    embed_init = layers.trunc_normal_init(1.0 / math.sqrt(D))
    self.embed_tokens = nnx.Embed(
      vocab_size, D, embedding_init=embed_init, dtype=dtype, param_dtype=jnp.float32, rngs=rngs
    )
    if cfg.pos_encodings == 'learned':
      self.embed_pos = nnx.Param(embed_init(rngs.params(), (self.total_len, D)))
    self.lm_head = layers.dense(D, vocab_size, dtype=dtype, rngs=rngs)
    # Q head starts at weight 0, bias -5: both halting logits ≈ sigmoid⁻¹(0.0067) (§1.1).
    self.q_head = layers.dense(
      D,
      2,
      dtype=dtype,
      rngs=rngs,
      use_bias=True,
      kernel_init=nnx.initializers.zeros,
      bias_init=nnx.initializers.constant(-5.0),
    )
    module = lambda n: layers.ReasoningModule(  # noqa: E731
      n,
      D,
      cfg.num_heads,
      cfg.expansion,
      cfg.rms_norm_eps,
      dtype=dtype,
      rngs=rngs,
      token_mixer=cfg.token_mixer,
      seq_len=self.total_len,
      remat=cfg.remat,
    )
    self.H_level = module(cfg.H_layers) if has_separate_f_H(cfg) else None
    self.L_level = module(cfg.L_layers) if has_f_L(cfg) else None
    # Stored in fp32 (the reference keeps bf16 buffers); cast to the compute dtype at use.
    init_state = layers.trunc_normal_init(1.0)
    self.H_init = layers.Buffer(init_state(rngs.params(), (D,)))
    # trm_multi_z: one initial vector per latent feature, as the reference's L1_init..L6_init.
    self.L_init = layers.Buffer(init_state(rngs.params(), (z_L_features(cfg) * D,)))

  def rope(self) -> Optional[layers.Rope]:
    """RoPE tables over all P+L positions, or None when RoPE is off."""
    if self.cfg.pos_encodings != 'rope':
      return None
    return layers.rope_tables(
      self.total_len, self.cfg.hidden_size // self.cfg.num_heads, self.cfg.rope_theta
    )

  def embed(self, inputs_BxL: jax.Array, puzzle_rows_BxE: Optional[jax.Array]) -> jax.Array:
    """Input embedding x [B, P+L, D] = sqrt(D)·([puzzle prefix; token embeddings] (+pos)) (§1.9).

    `puzzle_rows_BxE` are the batch's rows of the puzzle-embedding table (E = puzzle_emb_ndim),
    zero-padded to P·D values and reshaped to P prefix positions.
    """
    D = self.cfg.hidden_size
    e = self.embed_tokens(inputs_BxL)
    if self.prefix_len:
      B = inputs_BxL.shape[0]
      pad = self.prefix_len * D - puzzle_rows_BxE.shape[-1]
      prefix = jnp.pad(puzzle_rows_BxE.astype(self.dtype), ((0, 0), (0, pad)))
      e = jnp.concatenate([prefix.reshape(B, self.prefix_len, D), e], axis=1)
    if self.cfg.pos_encodings == 'learned':
      # 1/sqrt(2) keeps the sum at unit scale (reference constant 0.707106781).
      e = 0.707106781 * (e + self.embed_pos[...].astype(self.dtype))
    return (math.sqrt(D) * e).astype(self.dtype)

  def f_L(self, z_L: jax.Array, injection: jax.Array) -> jax.Array:
    """Low-level module: z_L ← f_L(z_L + injection), [B, S, D] -> [B, S, D]."""
    return self.L_level(z_L, injection, self.rope())

  def f_H(self, z_H: jax.Array, injection: jax.Array) -> jax.Array:
    """High-level module: z_H ← f_H(z_H + injection), [B, S, D] -> [B, S, D].

    TRM without a separate H_level uses its single network (L_level) here.
    """
    net = self.L_level if self.H_level is None else self.H_level
    return net(z_H, injection, self.rope())

  def initial_state(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """(z_H, z_L) = (H_init, L_init) broadcast to [B, P+L, D] in the compute dtype
    ([B, P+L, n·D] for z_L of trm_multi_z)."""
    shape = (batch_size, self.total_len)
    return (
      jnp.broadcast_to(self.H_init[...].astype(self.dtype), (*shape, self.H_init.shape[0])),
      jnp.broadcast_to(self.L_init[...].astype(self.dtype), (*shape, self.L_init.shape[0])),
    )

  def cells(self, x: jax.Array) -> tuple[recurrence.Step, recurrence.Step]:
    """(low, high): the state updates (z_H, z_L) -> (z_H, z_L) a segment of `cfg.arch`
    schedules, with input embedding x [B, S, D] (`recurrence.hrm_cells`, `single_z_cells`;
    the transformer's `high` is its one pass over z_H + x, and it has no `low`)."""
    if self.cfg.arch == 'transformer':
      return None, lambda s: (self.f_H(s[0], x), s[1])
    if self.cfg.arch == 'trm_single_z':
      return recurrence.single_z_cells(self.f_L, x)
    if self.cfg.arch == 'trm_multi_z':
      return recurrence.multi_z_cells(self.f_L, x, z_L_features(self.cfg))
    return recurrence.hrm_cells(self.f_L, self.f_H, x)

  def segment(
    self,
    z_H: jax.Array,
    z_L: jax.Array,
    x: jax.Array,
    record: Optional[recurrence.Record] = None,
  ):
    """One ACT segment of `cfg.arch` from detached states: (z_H, z_L) -> (z_H, z_L), [B, S, D].

    The output heads read the returned z_H (TRM's y; single-z's z). With `record`
    (`recurrence.schedule`), returns ((z_H, z_L), per-step records [K, ...]) with
    K = N·(T + 1) steps, or K = 1 for the transformer.
    """
    c = self.cfg
    if c.arch == 'transformer':
      # One pass per segment, all of it differentiated; z_L is carried along unused.
      new = self.cells(x)[1]((z_H, z_L))
      if record is None:
        return new
      return new, jax.tree.map(lambda r: r[None], record((z_H, z_L), new))
    N, T = c.H_cycles, c.L_cycles
    if c.arch == 'trm_single_z':  # one carried state: z is the carried z_L
      return recurrence.single_z_segment(self.f_L, z_L, x, N, T, c.gradient, record)
    if c.arch == 'trm_multi_z':
      return recurrence.schedule(*self.cells(x), (z_H, z_L), N, T, c.gradient, record)
    return recurrence.hrm_segment(self.f_L, self.f_H, z_H, z_L, x, N, T, c.gradient, record)

  def heads(self, z_H: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Output heads (§1.10): logits [B, L, V] fp32 (prefix dropped), q_halt [B], q_continue [B]."""
    logits = self.lm_head(z_H)[:, self.prefix_len :].astype(jnp.float32)
    q = self.q_head(z_H[:, 0]).astype(jnp.float32)
    return logits, q[:, 0], q[:, 1]

  def __call__(self, z_H, z_L, inputs_BxL, puzzle_rows_BxE):
    """Embeds, runs one segment and reads the heads.

    Returns ((z_H, z_L), (logits [B,L,V], q_halt [B], q_continue [B])); the returned states
    still carry gradient: the caller detaches them before carrying them on.
    """
    x = self.embed(inputs_BxL, puzzle_rows_BxE)
    z_H, z_L = self.segment(z_H, z_L, x)
    return (z_H, z_L), self.heads(z_H)
