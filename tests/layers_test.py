"""Layer numerics against the formulas of spec §1."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import nnx

from hrm_jax.models import layers


class RmsNormTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_formula_in_fp32(self):
    x = jax.random.normal(jax.random.key(0), (2, 5, 16)) * 3.0
    out = self.variant(layers.rms_norm)(x.astype(jnp.bfloat16))
    x64 = np.asarray(x.astype(jnp.bfloat16), np.float64)
    want = x64 / np.sqrt(np.mean(x64**2, -1, keepdims=True) + 1e-5)
    assert out.dtype == jnp.bfloat16
    chex.assert_trees_all_close(np.asarray(out, np.float64), want, rtol=1e-2)
    out32 = self.variant(layers.rms_norm)(x)
    chex.assert_trees_all_close(
      np.asarray(out32, np.float64),
      np.asarray(x, np.float64)
      / np.sqrt(np.mean(np.asarray(x, np.float64) ** 2, -1, keepdims=True) + 1e-5),
      rtol=1e-5,
    )

  def test_axis(self):
    x = jax.random.normal(jax.random.key(1), (3, 7, 4))
    out = layers.rms_norm(x, axis=1)
    chex.assert_trees_all_close(jnp.mean(out**2, axis=1), jnp.ones((3, 4)), rtol=1e-4)


class InitTest(parameterized.TestCase):
  @parameterized.parameters(0.044194, 1.0)
  def test_trunc_normal_statistics(self, std):
    x = layers.trunc_normal_init(std)(jax.random.key(0), (400_000,))
    assert abs(float(jnp.std(x)) / std - 1.0) < 0.01
    assert abs(float(jnp.mean(x))) < 0.01 * std
    # Truncated at two "untruncated" standard deviations c = std / 0.8796 (spec §1.1).
    c = std / 0.87962566103423978
    assert float(jnp.max(jnp.abs(x))) <= 2 * c * (1 + 1e-6)
    assert float(jnp.max(jnp.abs(x))) > 1.95 * c

  def test_zero_std_is_zeros(self):
    chex.assert_trees_all_equal(
      layers.trunc_normal_init(0.0)(jax.random.key(0), (3, 2)), jnp.zeros((3, 2))
    )

  def test_dense_is_lecun_and_biasless(self):
    d = layers.dense(1536, 512, dtype=jnp.float32, rngs=nnx.Rngs(0))
    assert d.bias is None
    chex.assert_shape(d.kernel[...], (1536, 512))
    assert abs(float(jnp.std(d.kernel[...])) * math.sqrt(1536) - 1.0) < 0.01


class SwiGLUTest(parameterized.TestCase):
  @parameterized.parameters((512, 4, 1536), (64, 4, 256), (97, 4, 512), (128, 2, 256))
  def test_width_rule(self, hidden, expansion, want):
    assert layers.swiglu_width(hidden, expansion) == want

  def test_forward_formula(self):
    m = layers.SwiGLU(8, 4, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 3, 8))
    gu = x @ m.gate_up_proj.kernel[...]
    inter = gu.shape[-1] // 2
    gate, up = gu[..., :inter], gu[..., inter:]
    want = (gate * jax.nn.sigmoid(gate) * up) @ m.down_proj.kernel[...]
    chex.assert_trees_all_close(m(x), want, rtol=1e-5, atol=1e-6)


def test_rope_rotate_half():
  S, K = 6, 8
  cos, sin = layers.rope_tables(S, K, 10000.0)
  chex.assert_shape((cos, sin), (S, K))
  x = np.asarray(jax.random.normal(jax.random.key(0), (1, S, 2, K)))
  out = np.asarray(layers.apply_rope(jnp.asarray(x), (cos, sin)))
  inv = 10000.0 ** (-np.arange(0, K, 2) / K)
  for t in range(S):
    ang = np.concatenate([t * inv, t * inv])
    rot = np.concatenate([-x[0, t, :, K // 2 :], x[0, t, :, : K // 2]], -1)
    np.testing.assert_allclose(
      out[0, t], x[0, t] * np.cos(ang) + rot * np.sin(ang), rtol=1e-5, atol=1e-6
    )
  # A rotation: norms are preserved, position 0 is the identity.
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
  np.testing.assert_allclose(out[0, 0], x[0, 0], rtol=1e-6)


def test_attention_matches_manual_softmax():
  D, H = 16, 2
  attn = layers.Attention(D, H, dtype=jnp.float32, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 5, D))
  rope = layers.rope_tables(5, D // H)
  qkv = (x @ attn.qkv_proj.kernel[...]).reshape(2, 5, 3 * H, D // H)
  q, k, v = qkv[:, :, :H], qkv[:, :, H : 2 * H], qkv[:, :, 2 * H :]
  q, k = layers.apply_rope(q, rope), layers.apply_rope(k, rope)
  scores = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(D // H)
  o = jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(scores, -1), v).reshape(2, 5, D)
  chex.assert_trees_all_close(attn(x, rope), o @ attn.o_proj.kernel[...], rtol=1e-4, atol=1e-5)


def test_block_is_post_norm():
  blk = layers.Block(16, 2, 4, 1e-5, dtype=jnp.float32, rngs=nnx.Rngs(0))
  x = 5.0 * jax.random.normal(jax.random.key(1), (2, 5, 16))
  out = blk(x, layers.rope_tables(5, 8))
  # Every block ends in RMSNorm: unit RMS per token.
  chex.assert_trees_all_close(jnp.sqrt(jnp.mean(out**2, -1)), jnp.ones((2, 5)), rtol=1e-4)
  h = layers.rms_norm(x + blk.self_attn(x, layers.rope_tables(5, 8)))
  chex.assert_trees_all_close(out, layers.rms_norm(h + blk.mlp(h)), rtol=1e-5, atol=1e-6)


def test_reasoning_module_adds_injection_first():
  mod = layers.ReasoningModule(2, 16, 2, 4, 1e-5, dtype=jnp.float32, rngs=nnx.Rngs(0))
  z, inj = jax.random.normal(jax.random.key(1), (2, 2, 4, 16))
  chex.assert_trees_all_close(mod(z, inj, None), mod(z + inj, jnp.zeros_like(z), None))


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float32])
def test_compute_dtype_params_fp32(dtype):
  blk = layers.Block(16, 2, 4, 1e-5, dtype=dtype, rngs=nnx.Rngs(0))
  for p in jax.tree.leaves(nnx.state(blk, nnx.Param)):
    assert p.dtype == jnp.float32
  out = blk(jnp.ones((1, 3, 16), dtype), layers.rope_tables(3, 8))
  assert out.dtype == dtype


def test_mlp_token_mixer_normalises_over_the_sequence_axis():
  """TRM-MLP (§4.4): SwiGLU of width S along the sequence, then RMSNorm over S, not D."""
  S, D = 7, 16
  blk = layers.Block(
    D, 2, 4, 1e-5, dtype=jnp.float32, rngs=nnx.Rngs(0), token_mixer='mlp', seq_len=S
  )
  assert not hasattr(blk, 'self_attn')
  assert blk.mlp_t.gate_up_proj.kernel[...].shape == (S, 2 * layers.swiglu_width(S, 4))
  x = 3.0 * jax.random.normal(jax.random.key(1), (2, S, D))
  # Reference: transpose to [B, D, S], mix and normalise over the last (sequence) axis.
  xt = jnp.swapaxes(x, 1, 2)
  h = jnp.swapaxes(layers.rms_norm(xt + blk.mlp_t(xt)), 1, 2)
  chex.assert_trees_all_close(jnp.sqrt(jnp.mean(h**2, axis=1)), jnp.ones((2, D)), rtol=1e-4)
  assert not np.allclose(jnp.sqrt(jnp.mean(h**2, axis=2)), 1.0, rtol=1e-2)
  chex.assert_trees_all_close(blk(x, None), layers.rms_norm(h + blk.mlp(h)), rtol=1e-5, atol=1e-6)


def test_mlp_token_mixer_needs_the_sequence_length():
  with pytest.raises(ValueError, match='sequence length'):
    layers.Block(16, 2, 4, 1e-5, dtype=jnp.float32, rngs=nnx.Rngs(0), token_mixer='mlp')


@pytest.mark.parametrize('chunk', [0, 64])  # one piece; three chunks of 64, the last padded
def test_attention_matches_xla_attention_and_its_gradient(chunk):
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 150, 3, 8)) for i in range(3))
  attend = functools.partial(layers.attention, chunk=chunk)
  want = jax.nn.dot_product_attention(q, k, v)
  chex.assert_trees_all_close(attend(q, k, v), want, atol=1e-5)

  def loss(attend, q, k, v):
    return jnp.sum(jnp.sin(attend(q, k, v)))

  got = jax.grad(functools.partial(loss, attend), argnums=(0, 1, 2))(q, k, v)
  ref = jax.grad(functools.partial(loss, jax.nn.dot_product_attention), argnums=(0, 1, 2))(q, k, v)
  chex.assert_trees_all_close(got, ref, atol=1e-5)
