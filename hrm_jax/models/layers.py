"""Transformer building blocks shared by HRM and TRM (spec §1).

Parameters are stored in fp32 and cast to the compute dtype at use (`nnx.Linear(dtype=...)`
does that cast); RMSNorm and RoPE always run in fp32 (spec §1.2).
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

# Standard deviation of a standard normal truncated to [-2, 2]; dividing by it makes the
# truncated sample have exactly the requested std, as the reference `trunc_normal_init_`
# and Flax's `variance_scaling(..., 'truncated_normal')` do (spec §1.1).
_TRUNC_STD = 0.87962566103423978

Rope = tuple[jax.Array, jax.Array]  # (cos, sin), each [S, head_dim] fp32


class Buffer(nnx.Variable):
  """A non-trainable array (H_init, L_init): never differentiated, decayed or averaged."""


def trunc_normal_init(std: float) -> nnx.Initializer:
  """Initializer drawing N(0, std²) truncated at ±2 std-units, with true std = `std` (§1.1).

  `std == 0` gives zeros. Equal to the reference's `trunc_normal_init_` and, for a dense
  kernel with std = 1/sqrt(fan_in), to Flax's `lecun_normal()`.
  """

  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    if std == 0:
      return jnp.zeros(shape, dtype)
    x = jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
    return (x * (std / _TRUNC_STD)).astype(dtype)

  return init


def dense(
  d_in: int, d_out: int, *, dtype, rngs: nnx.Rngs, use_bias: bool = False, **kwargs
) -> nnx.Linear:
  """Bias-less (by default) linear layer with truncated LeCun init, std 1/sqrt(d_in) (§1.1).

  The kernel is [d_in, d_out], the transpose of torch's `CastedLinear.weight`.
  """
  kwargs.setdefault('kernel_init', trunc_normal_init(1.0 / math.sqrt(d_in)))
  return nnx.Linear(
    d_in, d_out, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, rngs=rngs, **kwargs
  )


def rms_norm(x: jax.Array, eps: float = 1e-5, axis: int = -1) -> jax.Array:
  """Parameter-free RMSNorm over `axis`, computed in fp32, returned in x.dtype (§1.3)."""
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=axis, keepdims=True) + eps)
  return y.astype(x.dtype)


def swiglu_width(hidden: int, expansion: float) -> int:
  """SwiGLU inner width: round(expansion·hidden·2/3) rounded up to a multiple of 256 (§1.4)."""
  inter = round(expansion * hidden * 2 / 3)
  return -(inter // -256) * 256


def rope_tables(seq_len: int, head_dim: int, theta: float = 10000.0) -> Rope:
  """Rotate-half RoPE tables for positions 0..seq_len-1 (puzzle prefix included), §1.6.

  Returns (cos, sin), each [seq_len, head_dim] fp32, with the angle table
  concat(freqs, freqs) over the head dimension.
  """
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  freqs = jnp.outer(jnp.arange(seq_len, dtype=jnp.float32), inv_freq)
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x_BxSxHxK: jax.Array, rope: Rope) -> jax.Array:
  """x·cos + rotate_half(x)·sin in fp32, returned in x.dtype (§1.6). x: [B, S, H, head_dim]."""
  cos, sin = rope
  x = x_BxSxHxK.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  out = x * cos[None, :, None, :] + rotated * sin[None, :, None, :]
  return out.astype(x_BxSxHxK.dtype)


class SwiGLU(nnx.Module):
  """down(SiLU(gate) ⊙ up) with a fused [gate | up] projection (§1.4). [..., d] -> [..., d]."""

  def __init__(self, hidden: int, expansion: float, *, dtype, rngs: nnx.Rngs):
    inter = swiglu_width(hidden, expansion)
    self.gate_up_proj = dense(hidden, 2 * inter, dtype=dtype, rngs=rngs)
    self.down_proj = dense(inter, hidden, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    gate, up = jnp.split(self.gate_up_proj(x), 2, axis=-1)
    return self.down_proj(jax.nn.silu(gate) * up)


def attention_implementation(dtype, head_dim: int) -> Optional[str]:
  """'cudnn' (the fused flash-attention kernel) on a GPU in bf16/fp16 with a head dimension
  cuDNN takes (a multiple of 8, at most 128); None (XLA's fused softmax(QKᵀ)V) otherwise: on
  CPU and TPU, in fp32 (cuDNN's fused kernel is half precision only) and for odd head sizes
  such as the 12-head baseline's 42. Decided at trace time from the default backend."""
  if (
    jax.default_backend() == 'gpu'
    and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    and head_dim % 8 == 0
    and head_dim <= 128
  ):
    return 'cudnn'
  return None


ATTENTION_CHUNK = 64  # query rows per chunk of `attention` (fastest on CPU at S ≈ 900)


def _attend_BxHxSxK(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """softmax(q kᵀ/√K) v for q [B, H, Q, K], k, v [B, H, S, K] -> [B, H, Q, K], fp32 softmax;
  the normalisation divides the [Q, K] output instead of the [Q, S] probabilities."""
  scores = jnp.einsum('bhqd,bhkd->bhqk', q, k, preferred_element_type=jnp.float32)
  scores = scores * (q.shape[-1] ** -0.5)
  p = jnp.exp(scores - jnp.max(scores, axis=-1, keepdims=True))
  o = jnp.einsum('bhqk,bhkd->bhqd', p.astype(v.dtype), v, preferred_element_type=jnp.float32)
  return (o / jnp.sum(p, axis=-1, keepdims=True)).astype(q.dtype)


def attention(
  q_BxSxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array, chunk: int = ATTENTION_CHUNK
) -> jax.Array:
  """softmax(QKᵀ/√K)V, non-causal, unmasked: [B, S, H, K] each -> [B, S, H, K] (§1.5).

  Computed heads-major ([B, H, S, K]): on CPU the forward is 2-3× faster than
  `jax.nn.dot_product_attention`, forward + backward 1.1-1.4× (Sudoku and maze sizes). With
  `chunk` > 0 and S > 2·chunk, `chunk` query rows at a time under `jax.lax.scan`, each chunk
  recomputed in the backward pass: only one chunk's [B, H, chunk, S] probabilities exist at a
  time, forward or backward, instead of the full [B, H, S, S] kept for the gradient — for a
  30×30 maze (S = 901) 15 MB instead of 416 MB per layer at batch 8. Remat works here because
  the backward of a scan runs chunk by chunk; around an unrolled layer stack XLA's CPU scheduler
  recomputes everything at once.
  """
  B, S, H, K = q_BxSxHxK.shape
  q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q_BxSxHxK, k_BxSxHxK, v_BxSxHxK))  # [B, H, S, K]
  if chunk <= 0 or S <= 2 * chunk:
    return jnp.swapaxes(_attend_BxHxSxK(q, k, v), 1, 2)
  n = -(-S // chunk)
  # Padded query rows attend like any other and are cut off at the end; keys are not padded.
  q = jnp.pad(q, ((0, 0), (0, 0), (0, n * chunk - S), (0, 0)))
  q_NxBxHxCxK = jnp.moveaxis(q.reshape(B, H, n, chunk, K), 2, 0)
  attend = jax.checkpoint(lambda q_c: _attend_BxHxSxK(q_c, k, v))
  _, o_NxBxHxCxK = jax.lax.scan(lambda c, q_c: (c, attend(q_c)), None, q_NxBxHxCxK)
  o_BxSxHxK = jnp.moveaxis(o_NxBxHxCxK, 0, 2).reshape(B, H, n * chunk, K).swapaxes(1, 2)
  return o_BxSxHxK[:, :S]


class Attention(nnx.Module):
  """Non-causal, unmasked multi-head self-attention with a fused qkv projection (§1.5).

  The qkv output is laid out per token as [query heads | key heads | value heads], each head
  `head_dim` contiguous values, as in the reference. head_dim = hidden // num_heads, so the
  output projection reads num_heads·head_dim values (504 for the 12-head baseline).
  """

  def __init__(self, hidden: int, num_heads: int, *, dtype, rngs: nnx.Rngs, remat: bool = False):
    self.remat = remat
    self.num_heads = num_heads
    self.head_dim = hidden // num_heads
    width = num_heads * self.head_dim
    self.qkv_proj = dense(hidden, 3 * width, dtype=dtype, rngs=rngs)
    self.o_proj = dense(width, hidden, dtype=dtype, rngs=rngs)

  def __call__(self, x_BxSxD: jax.Array, rope: Optional[Rope]) -> jax.Array:
    B, S, _ = x_BxSxD.shape
    qkv = self.qkv_proj(x_BxSxD).reshape(B, S, 3 * self.num_heads, self.head_dim)
    q, k, v = jnp.split(qkv, 3, axis=2)
    if rope is not None:
      q, k = apply_rope(q, rope), apply_rope(k, rope)
    # No mask: padding and puzzle-prefix positions are attended to, as in the reference
    # (spec §11a #14).
    impl = attention_implementation(q.dtype, self.head_dim)
    if impl is None:
      o = attention(q, k, v, ATTENTION_CHUNK if self.remat else 0)
    else:
      o = jax.nn.dot_product_attention(q, k, v, is_causal=False, implementation=impl)
    return self.o_proj(o.reshape(B, S, self.num_heads * self.head_dim))


TOKEN_MIXERS = ('attention', 'mlp')
# What the backward pass recomputes instead of storing (Block `remat`): nothing; attention
# (chunked `attention`); attention and every elementwise op, keeping matmul outputs ('dots');
# the whole block from its input ('block').
REMAT = ('none', 'attention', 'dots', 'block')


class Block(nnx.Module):
  """Post-norm block: h ← RMSNorm(h + Mix(h)); h ← RMSNorm(h + SwiGLU(h)) (§1.7, §4.4).

  token_mixer 'attention': Mix = self-attention, normalised over channels. 'mlp' (TRM-MLP,
  the reference's `mlp_t`): Mix = a SwiGLU of width `seq_len` applied along the sequence axis
  and the first RMSNorm taken over the *sequence* axis, as the reference does by normalising
  the transposed [B, D, S] tensor over its last axis (spec §4.4 [OBS]).
  """

  def __init__(
    self,
    hidden: int,
    num_heads: int,
    expansion: float,
    eps: float,
    *,
    dtype,
    rngs: nnx.Rngs,
    token_mixer: str = 'attention',
    seq_len: int = 0,
    remat: str = 'none',
  ):
    if token_mixer not in TOKEN_MIXERS:
      raise ValueError(f'token_mixer must be one of {TOKEN_MIXERS}, got {token_mixer!r}')
    if remat not in REMAT:
      raise ValueError(f'remat must be one of {REMAT}, got {remat!r}')
    self.remat = remat
    self.eps = eps
    self.token_mixer = token_mixer
    if token_mixer == 'mlp':
      if seq_len < 1:
        raise ValueError(f"token_mixer 'mlp' needs the sequence length, got {seq_len}")
      self.mlp_t = SwiGLU(seq_len, expansion, dtype=dtype, rngs=rngs)
    else:
      self.self_attn = Attention(hidden, num_heads, dtype=dtype, rngs=rngs, remat=remat != 'none')
    self.mlp = SwiGLU(hidden, expansion, dtype=dtype, rngs=rngs)

  def __call__(self, h_BxSxD: jax.Array, rope: Optional[Rope]) -> jax.Array:
    if self.remat == 'block':  # keeps only the block's input for the backward pass
      return jax.checkpoint(self._forward)(h_BxSxD, rope)
    if self.remat == 'dots':  # keeps the projections' outputs, recomputes the rest
      policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable
      return jax.checkpoint(self._forward, policy=policy)(h_BxSxD, rope)
    return self._forward(h_BxSxD, rope)

  def _forward(self, h_BxSxD: jax.Array, rope: Optional[Rope]) -> jax.Array:
    if self.token_mixer == 'mlp':
      h_BxDxS = jnp.swapaxes(h_BxSxD, 1, 2)
      h = jnp.swapaxes(rms_norm(h_BxDxS + self.mlp_t(h_BxDxS), self.eps), 1, 2)
    else:
      h = rms_norm(h_BxSxD + self.self_attn(h_BxSxD, rope), self.eps)
    return rms_norm(h + self.mlp(h), self.eps)


class ReasoningModule(nnx.Module):
  """A stack of blocks applied to (state + injection), the injection added first (§1.8).

  `block_kwargs` (token_mixer, seq_len) go to every `Block`.
  """

  def __init__(
    self,
    num_layers: int,
    hidden: int,
    num_heads: int,
    expansion: float,
    eps: float,
    *,
    dtype,
    rngs: nnx.Rngs,
    **block_kwargs,
  ):
    self.layers = nnx.List(
      [
        Block(hidden, num_heads, expansion, eps, dtype=dtype, rngs=rngs, **block_kwargs)
        for _ in range(num_layers)
      ]
    )

  def __call__(
    self, z_BxSxD: jax.Array, injection_BxSxD: Optional[jax.Array], rope: Optional[Rope]
  ) -> jax.Array:
    """Blocks applied to z + injection ([B, S, D] each; injection None = no injection)."""
    h = z_BxSxD if injection_BxSxD is None else z_BxSxD + injection_BxSxD
    for layer in self.layers:
      h = layer(h, rope)
    return h
