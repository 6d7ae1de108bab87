"""The recursive reasoning networks: HRM, TRM and their ablations as one module (spec §1-4).

`model.arch` picks which networks exist and how a segment uses them; everything else
(embeddings, heads, initial states, the ACT step, loss and optimizers) is shared:

  'hrm'          — f_L (L_layers) and f_H (H_layers), separate weights; HRM §2.
  'trm'          — one network (L_layers) for both the z- and the y-update, TRM §4.2; with
                   H_layers > 0 the y-update gets its own network (the "separate f_H, f_L"
                   ablation). The reference's TRM config has H_layers 0 ("ignored").
  'trm_single_z' — one network and one carried state (TRM Table 2 "single z", §4.7).
  'transformer'  — the direct-prediction baseline (§4.7): H_layers blocks applied once per
                   segment to (z_H + x) with full gradient; H_cycles/L_cycles are unused.

The gradient schedule (`model.gradient`: one_step, last_cycle, full) and the token mixer
(`model.token_mixer`: attention, or mlp for TRM-MLP) are independent of the arch.

The puzzle-embedding table is *not* part of the module: it is a separate array in the train
state, trained sparsely by sign-SGD (spec §1.11, §5.2). The caller gathers the batch's rows and
passes them to `embed`, so their gradient comes out as one row per example.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from hrm_jax.models import layers, recurrence

POS_ENCODINGS = ('rope', 'learned', 'none')
ARCHS = ('hrm', 'trm', 'trm_single_z', 'transformer')


DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def compute_dtype(name: str):
  """Maps a config string ('float32', 'bfloat16', 'float16') to a JAX dtype."""
  if name not in DTYPES:
    raise ValueError(f'model.compute_dtype must be one of {sorted(DTYPES)}, got {name!r}')
  return DTYPES[name]


def puzzle_prefix_len(cfg: Any) -> int:
  """Number of puzzle-embedding prefix positions P (§1.9): HRM ceil(ndim/hidden), TRM fixed."""
  if cfg.puzzle_emb_ndim <= 0:
    return 0
  if cfg.get('puzzle_emb_len', 0):
    return int(cfg.puzzle_emb_len)
  return -(cfg.puzzle_emb_ndim // -cfg.hidden_size)


def has_separate_f_H(cfg: Any) -> bool:
  """Whether `cfg` (the model group) builds an H_level network of its own."""
  return cfg.arch in ('hrm', 'transformer') or (cfg.arch == 'trm' and cfg.H_layers > 0)


def has_f_L(cfg: Any) -> bool:
  """Whether `cfg` (the model group) builds an L_level network."""
  return cfg.arch != 'transformer'


class ReasoningModel(nnx.Module):
  """The networks of `cfg.arch` (see the module docstring), built for the dataset's sizes.

  Attribute names follow the reference state dicts (embed_tokens, lm_head, q_head, H_level,
  L_level, H_init, L_init; `mlp_t` for the sequence mixer) so checkpoints map one to one.
  H_level / L_level are None where the arch has no such network.
  """

  def __init__(self, cfg: Any, vocab_size: int, seq_len: int, *, rngs: nnx.Rngs):
    D = cfg.hidden_size
    dtype = compute_dtype(cfg.compute_dtype)
    if cfg.arch not in ARCHS:
      raise ValueError(f'model.arch must be one of {ARCHS}, got {cfg.arch!r}')
    if cfg.pos_encodings not in POS_ENCODINGS:
      raise ValueError(
        f'model.pos_encodings must be one of {POS_ENCODINGS}, got {cfg.pos_encodings!r}'
      )
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
      remat=cfg.get('remat', 'none'),
    )
    self.H_level = module(cfg.H_layers) if has_separate_f_H(cfg) else None
    self.L_level = module(cfg.L_layers) if has_f_L(cfg) else None
    # Stored in fp32 (the reference keeps bf16 buffers); cast to the compute dtype at use.
    init_state = layers.trunc_normal_init(1.0)
    self.H_init = layers.Buffer(init_state(rngs.params(), (D,)))
    self.L_init = layers.Buffer(init_state(rngs.params(), (D,)))

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
    """(z_H, z_L) = (H_init, L_init) broadcast to [B, P+L, D] in the compute dtype."""
    shape = (batch_size, self.total_len, self.cfg.hidden_size)
    return (
      jnp.broadcast_to(self.H_init[...].astype(self.dtype), shape),
      jnp.broadcast_to(self.L_init[...].astype(self.dtype), shape),
    )

  def segment(self, z_H: jax.Array, z_L: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One ACT segment of `cfg.arch` from detached states: (z_H, z_L) -> (z_H, z_L), [B, S, D].

    The output heads read the returned z_H (TRM's y; single-z's z).
    """
    c = self.cfg
    if c.arch == 'transformer':
      # One pass per segment, all of it differentiated; z_L is carried along unused.
      return self.f_H(z_H, x), z_L
    if c.arch == 'trm_single_z':
      return recurrence.single_z_segment(self.f_L, z_L, x, c.H_cycles, c.L_cycles, c.gradient)
    return recurrence.hrm_segment(
      self.f_L, self.f_H, z_H, z_L, x, c.H_cycles, c.L_cycles, c.gradient
    )

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
