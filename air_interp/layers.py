"""The Transformer pieces of the shared stack: RMS norm, RoPE, attention, SwiGLU, post-norm block.

Parameters are stored in fp32 and cast to the input's dtype at use, so one checkpoint runs in
fp32 or bf16 (``forward_dtype``). The hook points of a call site are passed in by the caller:
a block has no hook points of its own, because the same block runs at every sub-step.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .hooks import AttnHooks, LayerHooks

try:  # optional, CUDA only
    from flash_attn import flash_attn_func  # type: ignore[import-not-found]
except ImportError:
    flash_attn_func = None

# For a normal truncated at +-2 std, the std of the truncated distribution is this fraction of
# the untruncated one; dividing by it makes the *truncated* std the requested one (JAX style).
_TRUNC2_STD = 0.8796256610342398


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Truncated normal init at +-2 std whose actual std is ``std``; ``std=0`` gives zeros."""
    if std == 0:
        return tensor.zero_()
    scale = std / _TRUNC2_STD
    return nn.init.trunc_normal_(tensor, mean=0.0, std=scale, a=-2 * scale, b=2 * scale)


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Weightless RMS norm computed in fp32 and cast back, as one fused kernel.

    PyTorch's kernel accumulates bf16 inputs in fp32 and rounds once, so it equals
    ``(x.float() * rsqrt(mean(x.float() ** 2) + eps)).to(x.dtype)`` bit for bit (tested).
    """
    return F.rms_norm(x, (x.shape[-1],), eps=eps)


def rms_norm_as_written(x: torch.Tensor, eps: float) -> torch.Tensor:
    """:func:`rms_norm` computed step by step, as the public code writes it. Used where the norm runs
    over the positions of a transposed tensor (TRM's mlp_t): there the fused kernel reduces in
    another order and the rollout drifts from the public code's (tests/test_public_trm.py)."""
    x32 = x.to(torch.float32)
    return (x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + eps)).to(x.dtype)


def _hook(point: Optional[nn.Module], x: torch.Tensor) -> torch.Tensor:
    return x if point is None else point(x)


class CastedLinear(nn.Module):
    """Linear layer without (or with zero-initialised) bias and truncated LeCun-normal weights."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), 1 / math.sqrt(in_features)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table stored in fp32, looked up in the forward dtype."""

    def __init__(self, num: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(num, dim), init_std))

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.embedding(ids, self.weight.to(dtype))


class Rotary:
    """RoPE tables (rotate-half convention), built per sequence length and device, in fp32."""

    def __init__(self, head_dim: int, theta: float) -> None:
        self.head_dim = head_dim
        self.theta = theta
        self._tables: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (length, device)
        if key not in self._tables:
            self._tables[key] = self._build(length, device)
        return self._tables[key]

    def _build(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Built outside inference mode: the cached tables are reused by later autograd passes.
        with torch.inference_mode(False), torch.no_grad():
            inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
            freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
            angles = torch.cat((freqs, freqs), dim=-1)
            return angles.cos().to(device), angles.sin().to(device)


def apply_rope(x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate ``x`` of shape (batch, pos, head, head_dim) in fp32 and cast back.

    ``x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = (-x2, x1)``, written per half so no
    rotated copy of ``x`` is made; IEEE negation and subtraction make it the same bits.
    """
    cos, sin = (t.unsqueeze(-2) for t in cos_sin)
    x1, x2 = x.float().chunk(2, dim=-1)
    (cos1, cos2), (sin1, sin2) = cos.chunk(2, dim=-1), sin.chunk(2, dim=-1)
    return torch.cat((x1 * cos1 - x2 * sin1, x2 * cos2 + x1 * sin2), dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Non-causal multi-head attention with a fused qkv projection and no biases."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.qkv = CastedLinear(d_model, 3 * d_model)
        self.out = CastedLinear(d_model, d_model)

    def forward(self, x: torch.Tensor, rope: Optional[tuple[torch.Tensor, torch.Tensor]],
                hooks: Optional["AttnHooks"] = None) -> torch.Tensor:
        batch, length, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim).unbind(2)
        if hooks is not None:
            q, k, v = hooks.hook_q(q), hooks.hook_k(k), hooks.hook_v(v)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if hooks is not None and hooks.needs_pattern():
            z = self._with_pattern(q, k, v, hooks)
        elif _slow_fused_backward(q):
            z = self._from_pattern(self._pattern(q, k), v)
        else:
            z = self._fused(q, k, v)
        z = _hook(hooks and hooks.hook_z, z)
        return self.out(z.reshape(batch, length, d_model))

    def _with_pattern(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hooks: "AttnHooks") -> torch.Tensor:
        """Attention with the probabilities materialised for the pattern hook.

        A hook that only reads the pattern leaves the output (and so the whole rollout) bit-identical
        to an unhooked run: the probabilities are a side computation, as in the public analysis
        scripts. Only a hook that edits them (returns another tensor or changes it in place) or a
        backward hook on them makes the output ``pattern @ v``.
        """
        with torch.inference_mode(False):  # a normal tensor even under inference mode: in-place edits show
            pattern = self._pattern(q, k)
        version = pattern._version
        hooked = hooks.hook_pattern(pattern)
        if hooked is not pattern or hooked._version != version or hooks.hook_pattern._backward_hooks:
            return self._from_pattern(hooked, v)
        return self._from_pattern(pattern, v) if _slow_fused_backward(q) else self._fused(q, k, v)

    def _pattern(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (batch, head, query, key) in fp32."""
        scores = (q.transpose(1, 2) @ k.permute(0, 2, 3, 1)).float() / math.sqrt(self.head_dim)
        return scores.softmax(dim=-1)

    @staticmethod
    def _from_pattern(pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (pattern.to(v.dtype) @ v.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    def _fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            out = flash_attn_func(q, k, v, causal=False)
            return out[0] if isinstance(out, tuple) else out
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)


def _slow_fused_backward(q: torch.Tensor) -> bool:
    """True where the fused kernel's backward is slow: bf16 on a CPU, where PyTorch's flash
    attention backward took 4x as long as the explicit form's at the CPU training size
    (docs/training.md, Speed)."""
    return q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.requires_grad and torch.is_grad_enabled()


class SwiGLU(nn.Module):
    """Gated MLP; inner size round(expansion * d * 2/3) rounded up to a multiple of 256."""

    def __init__(self, d_model: int, expansion: float) -> None:
        super().__init__()
        inner = -(round(expansion * d_model * 2 / 3) // -256) * 256
        self.gate_up = CastedLinear(d_model, 2 * inner)
        self.down = CastedLinear(inner, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm Transformer block: ``h = rms(h + attn(h)); h = rms(h + mlp(h))``.

    With ``mixer="mlp_t"`` (TRM) a SwiGLU over the ``positions`` replaces attention and, as in the
    public code, its residual is normed over the positions: ``h = rms(h^T + mlp_t(h^T))^T``.
    """

    def __init__(self, d_model: int, n_heads: int, expansion: float, eps: float, mixer: str = "attention",
                 positions: int = 0) -> None:
        super().__init__()
        if mixer == "mlp_t":
            self.mlp_t = SwiGLU(positions, expansion)
        else:
            self.attn = Attention(d_model, n_heads)
        self.mlp = SwiGLU(d_model, expansion)
        self.eps = eps

    def forward(self, h: torch.Tensor, rope: Optional[tuple[torch.Tensor, torch.Tensor]],
                hooks: Optional["LayerHooks"] = None) -> torch.Tensor:
        if hasattr(self, "mlp_t"):
            h_t = h.transpose(1, 2)
            mixed = _hook(hooks and hooks.hook_mlp_t_out, self.mlp_t(h_t).transpose(1, 2)).transpose(1, 2)
            h = rms_norm_as_written(h_t + mixed, self.eps).transpose(1, 2)
        else:
            attn_out = _hook(hooks and hooks.hook_attn_out, self.attn(h, rope, hooks and hooks.attn))
            h = rms_norm(h + attn_out, self.eps)
        h = _hook(hooks and hooks.hook_resid_mid, h)
        mlp_out = _hook(hooks and hooks.hook_mlp_out, self.mlp(h))
        return _hook(hooks and hooks.hook_resid_post, rms_norm(h + mlp_out, self.eps))
