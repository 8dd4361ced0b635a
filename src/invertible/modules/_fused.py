"""Fused affine-coupling kernels: few ops and an analytic backward for the blocks' hot paths.

In eager PyTorch every elementwise op is a dispatch, an allocation, a full pass over memory and
an autograd node; a coupling block does about 25 of them next to the one real piece of work, its
subnet. The kernels here compute the same maps with as few passes as the math allows and
hand-written first-order gradients (:class:`torch.autograd.Function`; a backward with
``create_graph=True`` raises, and blocks take plain ops with ``fused_kernels = False``):

* :class:`AffineHalf`: ``y = x e^{s} + t`` of one half, ``s = κ f(α r_s)``, ``t = β r_t`` from
  one subnet output ``r = [r_s, r_t]``, optionally written straight into ``cat(other, y)``
  (Glow, one-sided and condition-only couplings);
* :class:`AllInOneCore`: AllInOneBlock's coupling, global affine map and hard permutation in
  one node, ``y = P((x_1, x_2 e^{s} + t) ⊙ scale + offset)``;
* :func:`affine_half_inverse`: the no-grad inverse, in place on a caller-owned buffer.

A clamp activation ``f`` is a :class:`ClampKind` (value, and the gradient through it from
saved values). The arithmetic runs in the wider of the data's and the subnet output's dtype
(float32 for a bf16 subnet under autocast) and log-dets are summed in at least float32.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from ._affine import ClampActivation, acc_dtype, atan_clamp, sigmoid_clamp, tanh_clamp
from ._common import is_tracing

__all__ = [
    "ALL_IN_ONE_INVERSE_MIN_ELEMENTS",
    "ALL_IN_ONE_MIN_ELEMENTS",
    "ATAN_KIND",
    "FUSED_CLAMPS",
    "FUSED_MIN_ELEMENTS",
    "SIGMOID_KIND",
    "TANH_KIND",
    "AffineHalf",
    "AllInOneCore",
    "ClampKind",
    "Coefficients",
    "affine_half",
    "affine_half_inverse",
    "all_in_one_core",
    "coupling_step",
    "first_order_only",
    "fused_clamp_kind",
    "glow_couple",
]

Grads = Tuple[Optional[Tensor], ...]

#: A Python Function's forward and backward are Python calls, a fixed cost per call that
#: autograd's C++ nodes do not pay; the fused kernels win only from some tensor size on. Measured
#: (eager, 1 thread, paired A/B against plain autograd ops; + means fused is faster): couplings,
#: per transformed half, 32K elements -2.5 %, 256K +5 %. AllInOneBlock (whole input; train /
#: no-grad forward / inverse), after its plain path was slimmed: 16K (CFlow decoders) -6 / -10 /
#: -1 %, 64K (W1) -1 / -4 / +4 %, 128K +3 / -1 / +6 %, 256K +4 / +4 / +7 %, 512K (W2)
#: +4 / +3 / +8 %. Thresholds in elements (the AllInOneBlock inverse has its own):
FUSED_MIN_ELEMENTS = 65536
ALL_IN_ONE_MIN_ELEMENTS = 131072
ALL_IN_ONE_INVERSE_MIN_ELEMENTS = 32768


# --- clamp activations: f(z) and the gradient through f ------------------------------------------


def _tanh_value(z: Tensor) -> Tensor:
    """``tanh(z)``."""
    return torch.tanh(z)


def _sigmoid_value(z: Tensor) -> Tensor:
    """``2 (sigmoid(z) - 0.5)``."""
    return torch.sigmoid(z).sub_(0.5).mul_(2.0)


def _atan_value(z: Tensor) -> Tensor:
    """``0.636 atan(z)`` (FrEIA's literal, not 2/π)."""
    return torch.atan(z).mul_(0.636)


def _grad_from_value(g: Tensor, z: Tensor, f: Tensor, out: Tensor) -> None:
    """``out = g (1 - f^2)``: the slope of tanh, and twice that of ``2 sigmoid - 1``."""
    torch.ops.aten.tanh_backward.grad_input(g, f, grad_input=out)


def _grad_atan(g: Tensor, z: Tensor, f: Tensor, out: Tensor) -> None:
    """``out = g / (1 + z^2)``: the slope of ``atan``."""
    torch.div(g, torch.addcmul(torch.ones((), dtype=z.dtype, device=z.device), z, z), out=out)


class ClampKind(NamedTuple):
    """A clamp activation of the fused kernels.

    ``value(z) = f(z)``; ``grad(g, z, f, out)`` writes ``g f'(z) / factor`` into ``out``
    (``factor`` is the constant the kernels fold into ``g`` beforehand); ``needs_z``: whether
    ``grad`` reads ``z`` (else only ``f`` is saved).
    """

    value: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor, Tensor, Tensor, Tensor], None]
    factor: float
    needs_z: bool


TANH_KIND = ClampKind(_tanh_value, _grad_from_value, 1.0, False)
SIGMOID_KIND = ClampKind(_sigmoid_value, _grad_from_value, 0.5, False)
ATAN_KIND = ClampKind(_atan_value, _grad_atan, 0.636, True)

#: The coupling blocks' built-in clamp activations (by identity) and their fused forms.
FUSED_CLAMPS: Dict[ClampActivation, ClampKind] = {
    atan_clamp: ATAN_KIND,
    tanh_clamp: TANH_KIND,
    sigmoid_clamp: SIGMOID_KIND,
}


def fused_clamp_kind(f_clamp: ClampActivation, x: Tensor, rev: bool, halves: int = 1
                     ) -> Optional[ClampKind]:
    """The fused form of a coupling's clamp activation, if a call on ``x`` should use it.

    None (plain autograd ops) for a custom clamp callable; while ``torch.jit.trace``,
    ``torch.compile`` or ``torch.export`` trace the call (plain ops give them a graph they can
    fuse and export); for an inverse that needs gradients (the fused inverse runs without
    autograd); and below ``FUSED_MIN_ELEMENTS`` elements per half (``x`` split in ``halves``).
    """
    if is_tracing() or (rev and torch.is_grad_enabled()):
        return None
    if x.numel() < halves * FUSED_MIN_ELEMENTS:
        return None
    return FUSED_CLAMPS.get(f_clamp)


class Coefficients(NamedTuple):
    """How a subnet output ``r`` gives ``s = κ f(α r[:, :n])`` and ``t = β r[:, n:]``."""

    kind: ClampKind
    alpha: float
    clamp: float
    beta: float
    n: int


def first_order_only() -> None:
    """Raise unless gradients are off, i.e. unless this backward runs without ``create_graph``.

    The hand-written backward passes compute first-order gradients from values saved without
    a graph; differentiating them again would silently drop terms, so it is refused.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            "invertible's fused coupling kernels give first-order gradients only; backward with "
            "create_graph=True (higher-order gradients, gradient penalties) needs plain autograd "
            "ops: set `fused_kernels = False` on the block (or on its class)."
        )


# --- shared pieces -------------------------------------------------------------------------------


def _as_dtype(r: Tensor, like: Tensor) -> Tensor:
    """``r`` in the arithmetic dtype: the wider of ``r``'s and ``like``'s (no copy if equal)."""
    if r.dtype == like.dtype:
        return r
    return r.to(torch.promote_types(r.dtype, like.dtype))


def _cast(g: Tensor, dtype: torch.dtype) -> Tensor:
    """``g`` in ``dtype`` (e.g. a bf16 subnet output's under autocast)."""
    return g if g.dtype == dtype else g.to(dtype)


def _nonbatch(t: Tensor) -> Tuple[int, ...]:
    """Every dim but the batch dim 0."""
    return tuple(range(1, t.dim()))


def _half_forward(x: Tensor, r: Tensor, co: Coefficients, out: Optional[Tensor], keep: bool
                  ) -> Tuple[Tensor, Tensor, Tuple[Optional[Tensor], ...]]:
    """``y = x e^{κ f} + β r_t`` (into ``out`` if given) and ``κ Σ f`` (at least float32).

    ``keep``: also return ``(e^{s}, f, z)`` for the backward; otherwise work in place.
    """
    z = r[:, : co.n]
    if co.alpha != 1.0:
        z = torch.mul(z, co.alpha)
    f = co.kind.value(z)
    ld = f.sum(dim=_nonbatch(f), dtype=acc_dtype(f.dtype)).mul_(co.clamp)
    e = torch.mul(f, co.clamp).exp_() if keep else f.mul_(co.clamp).exp_()
    t = r[:, co.n :]
    if co.beta == 1.0:
        y = torch.addcmul(t, x, e, out=out)
    else:
        y = torch.add(torch.mul(x, e, out=None if keep else e), t, alpha=co.beta, out=out)
    return y, ld, ((e, f, z if co.kind.needs_z else None) if keep else ())


def _half_backward(ctx: Any, x: Tensor, saved: Tuple[Tensor, ...], g_y: Tensor, g_ld: Tensor
                   ) -> Tuple[Tensor, Tensor]:
    """``(∂L/∂x, ∂L/∂r)`` of one affine half from ``saved = (e^{s}, f, z)``.

    ``∂x = g e^{s}``; ``∂r_t = β g``; ``∂r_s = (∂x · x + g_{ld}) κ α f'(z)``.
    """
    co: Coefficients = ctx.co
    e, f, z = saved
    g_r = g_y.new_empty((g_y.shape[0], 2 * co.n, *g_y.shape[2:]))
    torch.mul(g_y, co.beta, out=g_r[:, co.n :])
    g_x = g_y * e
    k = co.clamp * co.alpha * co.kind.factor
    g_ld_k = torch.mul(g_ld, k).view((g_y.shape[0],) + (1,) * (g_y.dim() - 1))
    co.kind.grad(torch.addcmul(g_ld_k, g_x, x, value=k), z, f, g_r[:, : co.n])
    return _cast(g_x, x.dtype), _cast(g_r, ctx.r_dtype)


def _with_prefix(x: Tensor, other: Optional[Tensor], dtype: torch.dtype
                 ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(out, out[:, C_other:])`` with ``out[:, :C_other] = other``, or ``(None, None)``."""
    if other is None:
        return None, None
    split, dtype = other.shape[1], torch.promote_types(dtype, other.dtype)
    out = x.new_empty((x.shape[0], split + x.shape[1], *x.shape[2:]), dtype=dtype)
    out[:, :split] = other
    return out, out[:, split:]


def _affine_half(x: Tensor, r: Tensor, log_det: Optional[Tensor], other: Optional[Tensor],
                 co: Coefficients, keep: bool) -> Tuple[Tensor, Tensor, Tuple[Any, ...]]:
    """The forward of :class:`AffineHalf`: output, log-det and what its backward needs."""
    r = _as_dtype(r, x)
    out, y_out = _with_prefix(x, other, r.dtype)
    y, ld, saved = _half_forward(x, r, co, y_out, keep)
    if log_det is not None:
        ld = ld.add_(log_det)
    return (y if out is None else out), ld.to(y.dtype), saved


class AffineHalf(torch.autograd.Function):
    r"""``y = x e^{s} + t`` with ``s = κ f(α r_s)``, ``t = β r_t``; log-det ``κ Σ f``.

    ``apply(x, r, log_det, other, co)``: ``log_det`` (``(B,)`` or None) is added to the result;
    with ``other`` the output is ``cat(other, y)`` (dim 1), written in place of a separate cat.
    Saves ``x`` (an input), ``e^{s}`` and ``f`` (and ``z`` for atan); backward:
    ``∂x = g e^{s}``, ``∂r_t = β g``, ``∂r_s = (∂x · x + g_{ld}) κ α f'(z)``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, r: Tensor, log_det: Optional[Tensor],
                other: Optional[Tensor], co: Coefficients) -> Tuple[Tensor, Tensor]:
        """The affine map (see the class docstring)."""
        out, ld, saved = _affine_half(x, r, log_det, other, co, keep=True)
        ctx.save_for_backward(x, *saved)
        ctx.co, ctx.r_dtype, ctx.split = co, r.dtype, None if other is None else other.shape[1]
        return out, ld

    @staticmethod
    def backward(ctx: Any, g_out: Tensor, g_ld: Tensor) -> Grads:
        """Analytic gradients for ``x``, ``r``, ``log_det`` and ``other`` (first order only)."""
        first_order_only()
        g_other, g_y = None, g_out
        if ctx.split is not None:
            g_y = g_out[:, ctx.split :]
            g_other = g_out[:, : ctx.split] if ctx.needs_input_grad[3] else None
        x, *saved = ctx.saved_tensors
        g_x, g_r = _half_backward(ctx, x, tuple(saved), g_y, g_ld)
        return g_x, g_r, (g_ld if ctx.needs_input_grad[2] else None), g_other, None


def affine_half(x: Tensor, r: Tensor, log_det: Optional[Tensor], other: Optional[Tensor],
                co: Coefficients) -> Tuple[Tensor, Tensor]:
    """:class:`AffineHalf` while gradients are on; without autograd, in place, when off."""
    if torch.is_grad_enabled():
        return AffineHalf.apply(x, r, log_det, other, co)
    return _affine_half(x, r, log_det, other, co, keep=False)[:2]


def affine_half_inverse(y: Tensor, r: Tensor, co: Coefficients,
                        out: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """No-grad inverse of :class:`AffineHalf`: ``x = (y - t) e^{-s}``, log-det ``-κ Σ f``.

    Writes ``x`` into ``out`` when given (which may be ``y`` itself, in place).
    """
    r = _as_dtype(r, y)
    z = r[:, : co.n]
    f = co.kind.value(torch.mul(z, co.alpha) if co.alpha != 1.0 else z)
    ld = f.sum(dim=_nonbatch(f), dtype=acc_dtype(f.dtype)).mul_(-co.clamp)
    x = torch.sub(y, r[:, co.n :], alpha=co.beta, out=out)
    x.mul_(f.mul_(-co.clamp).exp_())
    return x, ld.to(x.dtype)


def coupling_step(kind: ClampKind, clamp: float, x: Tensor, r: Tensor, rev: bool,
                  log_det: Optional[Tensor] = None, other: Optional[Tensor] = None,
                  out: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """A coupling block's affine map ``x e^{s} + t``, ``s = clamp f(r_s)``, ``t = r_t``.

    Forward (:func:`affine_half`): ``log_det`` is added, the result is ``cat(other, y)`` if
    ``other`` is given. ``rev``: the no-grad inverse, written into ``out`` if given.
    """
    co = Coefficients(kind, 1.0, clamp, 1.0, x.shape[1])
    if rev:
        return affine_half_inverse(x, r, co, out=out)
    return affine_half(x, r, log_det, other, co)


def glow_couple(x1: Tensor, x2: Tensor, subnet1: Callable[[Tensor], Tensor],
                subnet2: Callable[[Tensor], Tensor], kind: ClampKind, clamp: float, rev: bool
                ) -> Tuple[Tensor, Tensor]:
    """Glow's two affine halves (``subnet_k`` maps the other half to ``[s_raw, t]``).

    Forward: ``y1 = x1 e^{s2} + t2`` from ``subnet2(x2)``, then ``y2`` from ``subnet1(y1)``,
    written into one ``cat(y1, y2)``; inverse (no grad): ``x2`` first, then ``x1``, each
    written into its half of the output.
    """
    if not rev:
        y1, log_det = coupling_step(kind, clamp, x1, subnet2(x2), False)
        return coupling_step(kind, clamp, x2, subnet1(y1), False, log_det, other=y1)
    c1, r1 = x1.shape[1], subnet1(x1)
    dtype = torch.promote_types(x1.dtype, r1.dtype)
    out = x1.new_empty((x1.shape[0], c1 + x2.shape[1], *x1.shape[2:]), dtype=dtype)
    x2, j2 = coupling_step(kind, clamp, x2, r1, True, out=out[:, c1:])
    j1 = coupling_step(kind, clamp, x1, subnet2(x2), True, out=out[:, :c1])[1]
    return out, j1 + j2


# --- AllInOneBlock -------------------------------------------------------------------------------


def _core(x1: Tensor, x2: Tensor, r: Tensor, scale: Tensor, offset: Tensor,
          index: Optional[Tensor], co: Coefficients, n_pixels: int, keep: bool
          ) -> Tuple[Tensor, Tensor, Tuple[Any, ...]]:
    """The forward of :class:`AllInOneCore`: output, log-det and what its backward needs."""
    r = _as_dtype(r, x1)
    c1 = x1.shape[1]
    u = x1.new_empty((x1.shape[0], c1 + x2.shape[1], *x1.shape[2:]), dtype=r.dtype)
    u[:, :c1] = x1
    _, ld, saved = _half_forward(x2, r, co, u[:, c1:], keep)
    wide = torch.promote_types(torch.promote_types(u.dtype, scale.dtype), offset.dtype)
    in_place = not keep and wide == u.dtype
    v = torch.addcmul(offset, u, scale, out=u if in_place else None)
    ld = ld.add_(torch.log(scale).sum(dtype=acc_dtype(scale.dtype)).mul_(n_pixels))
    y = v if index is None else v.index_select(1, index)
    return y, ld.to(v.dtype), ((*saved, u) if keep else ())


class AllInOneCore(torch.autograd.Function):
    r"""AllInOneBlock's affine coupling, global affine map and hard permutation in one node.

    ``apply(x1, x2, r, scale, offset, index, index_inv, co, n_pixels)``:
    ``u = (x_1, x_2 e^{s} + t)``, ``v = u ⊙ scale + offset``, ``y = v[:, index]`` (``index``
    None: ``y = v``), log-det ``κ Σ f + n_pix Σ_c ln scale_c``. Backward:
    ``g_v = g[:, index_inv]``, ``∂offset = Σ g_v``, ``∂scale = Σ g_v u + n_pix Σ g_{ld} / scale``,
    ``g_u = g_v scale``, then the affine half as in :class:`AffineHalf`.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x1: Tensor, x2: Tensor, r: Tensor, scale: Tensor,
                offset: Tensor, index: Optional[Tensor], index_inv: Optional[Tensor],
                co: Coefficients, n_pixels: int) -> Tuple[Tensor, Tensor]:
        """The block's forward map (see the class docstring)."""
        y, ld, saved = _core(x1, x2, r, scale, offset, index, co, n_pixels, keep=True)
        ctx.save_for_backward(x2, *saved, scale, index_inv)
        ctx.co, ctx.r_dtype, ctx.c1, ctx.n_pixels = co, r.dtype, x1.shape[1], n_pixels
        ctx.reduce = (0, *range(2, x1.dim()))
        return y, ld

    @staticmethod
    def backward(ctx: Any, g_y: Tensor, g_ld: Tensor) -> Grads:
        """Analytic gradients for ``x1``, ``x2``, ``r``, ``scale`` and ``offset`` (first order)."""
        first_order_only()
        x2, e, f, z, u, scale, index_inv = ctx.saved_tensors
        g_v = g_y if index_inv is None else g_y.index_select(1, index_inv)
        g_offset = g_v.sum(dim=ctx.reduce, keepdim=True)
        g_scale = (g_v * u).sum(dim=ctx.reduce, keepdim=True)
        g_scale = torch.addcdiv(g_scale, g_ld.sum(), scale, value=ctx.n_pixels)
        g_u = g_v * scale
        g_x2, g_r = _half_backward(ctx, x2, (e, f, z), g_u[:, ctx.c1 :], g_ld)
        return (g_u[:, : ctx.c1], g_x2, g_r, _cast(g_scale, scale.dtype),
                _cast(g_offset, scale.dtype), None, None, None, None)


def all_in_one_core(x1: Tensor, x2: Tensor, r: Tensor, scale: Tensor, offset: Tensor,
                    index: Optional[Tensor], index_inv: Optional[Tensor], co: Coefficients,
                    n_pixels: int) -> Tuple[Tensor, Tensor]:
    """:class:`AllInOneCore` while gradients are on; without autograd, in place, when off."""
    if torch.is_grad_enabled():
        return AllInOneCore.apply(x1, x2, r, scale, offset, index, index_inv, co, n_pixels)
    return _core(x1, x2, r, scale, offset, index, co, n_pixels, keep=False)[:2]
