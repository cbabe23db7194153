"""Two-dimensional convolution and pooling for the image models.

Convolutions come in two implementations with identical parameters and
identical results (`conv_impl`):

* ``'lax'``: `lax.conv_general_dilated` (flax's `nn.Conv`).
* ``'patches'``: the (padded) image is cut into kh x kw shifted slices that
  are concatenated on the channel axis (pure data movement) and multiplied by
  the kernel reshaped to a matrix. The filter gradient is then a matmul
  (patches^T x output-gradient) and the input gradient a matmul followed by
  shifted adds. On XLA:CPU this beats `'lax'` several-fold for training:
  its filter gradient runs at ~9 GFLOP/s, and vmapped over clients with
  their own weights it becomes a grouped convolution; here a vmap gives a
  batched matmul (figures in BUILD_NOTES.md). It is the CPU default.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ('lax', 'patches')


def default_conv_impl(backend: str | None = None) -> str:
  """`'patches'` on CPU, `'lax'` on GPU/TPU (see the module docstring)."""
  return 'patches' if (backend or jax.default_backend()) == 'cpu' else 'lax'


class Conv(nn.Module):
  """2-D convolution, NHWC, with `nn.Conv`'s parameters and initialisers.

  y[b, h, w, o] = sum_{i, dh, dw} x[b, h+dh, w+dw, i] kernel[dh, dw, i, o] + bias[o]
  """
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: str = 'SAME'
  use_bias: bool = True
  impl: str = 'lax'

  @nn.compact
  def __call__(self, x):  # x: f32[B, H, W, Cin]
    cin = x.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*self.kernel_size, cin, self.features))
    if self.impl == 'lax':
      y = jax.lax.conv_general_dilated(
          x, kernel, self.strides, self.padding,
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    else:
      y = patches(x, self.kernel_size, self.strides, self.padding) @ (
          kernel.reshape(-1, self.features))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    return y


def patches(x: jax.Array, kernel_size: tuple[int, int],
            strides: tuple[int, int], padding: str) -> jax.Array:
  """Image patches by slicing: f32[B, H, W, C] -> f32[B, H', W', kh * kw * C].

  Features are ordered (kh, kw, C), matching an HWIO kernel reshaped to
  [kh * kw * C, O]. Unlike `lax.conv_general_dilated_patches` (a convolution
  with a one-hot kernel, more FLOPs than the convolution itself) this is only
  data movement, and so is its transpose.
  """
  (kh, kw), (sh, sw) = kernel_size, strides
  pads = jax.lax.padtype_to_pads(x.shape[1:3], kernel_size, strides, padding)
  x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  h = (x.shape[1] - kh) // sh + 1
  w = (x.shape[2] - kw) // sw + 1
  return jnp.concatenate([
      x[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw, :]
      for i in range(kh) for j in range(kw)
  ], axis=-1)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, VALID: f32[B, H, W, C] -> f32[B, H//2, W//2, C].

  A reshape and a max, whose gradient is an elementwise mask; XLA:CPU's
  select-and-scatter (the gradient of `nn.max_pool`) is ~7x slower.
  """
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
