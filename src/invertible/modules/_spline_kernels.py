"""Pure kernels of the binned splines: parameter constraints, bin search, RQ and linear bin maps."""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import is_tracing

__all__ = ["LOG_E_MINUS_1", "MAX_BIN_RATIO", "affine_tails", "binned_spline",
           "check_discriminant", "clamp_domain", "constrain_affine_tails",
           "constrain_fixed_square", "constrain_identity_tails", "identity_tails",
           "knot_derivatives", "knot_extras", "linear_spline", "rational_quadratic_spline",
           "soft_bound", "split_parameters"]

Params = Dict[str, Tensor]
#: ``spline(x, left=, right=, bottom=, top=, <extra>_left=, ..., rev=) -> (value, forward
#: log-derivative)`` for elements inside a bin, e.g. :func:`rational_quadratic_spline`.
SplineFn = Callable[..., Tuple[Tensor, Tensor]]
#: ``tails(v, widths, heights, left, bottom, rev) -> (value, forward log-derivative)``.
TailsFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, bool], Tuple[Tensor, Tensor]]

#: ``ln(e - 1)``: ``softplus(raw + ln(e - 1))`` is 1 for ``raw = 0``.
LOG_E_MINUS_1 = math.log(math.e - 1.0)
#: Keys that describe the bins themselves; every other key holds per-knot extras (``deltas``).
CORE_KEYS = ("widths", "heights", "left", "bottom", "total_width")


def clamp_domain(v: Tensor, domain_clamping: Optional[float]) -> Tensor:
    """``v`` unchanged without clamping, else the soft clamp ``dc * tanh(v / dc)``."""
    if domain_clamping is None:
        return v
    return domain_clamping * torch.tanh(v / domain_clamping)


def split_parameters(raw: Tensor, n: int, counts: Dict[str, int]) -> Params:
    """Split raw parameters ``(B, n*P, *S)`` into ``{key: (B, *S, n, count)}`` in ``counts`` order.

    Channel ``j`` owns the raw channels ``[j*P, (j+1)*P)``, ``P = sum(counts.values())``.
    """
    p = raw.movedim(1, -1)
    p = p.reshape(*p.shape[:-1], n, sum(counts.values()))
    return dict(zip(counts, torch.split(p, list(counts.values()), dim=-1)))


def _bin_sizes(raw: Tensor, extent: Tensor, min_size: Tensor) -> Tensor:
    """``m + softplus(raw + ln(exp(extent/K - m) - 1))``: raw zeros give ``extent/K`` per bin."""
    bins = raw.shape[-1]
    return min_size + F.softplus(raw + torch.log(torch.expm1(extent / bins - min_size)))


def constrain_affine_tails(
    p: Params, domain: Tensor, min_bin_sizes: Tensor, default_width: Tensor,
    domain_clamping: Optional[float],
) -> Params:
    """Bins with minimum sizes around the default domain ``(left, right, bottom, top)``.

    ``left = raw_left + d0``, ``bottom = raw_bottom + d2``, bin sizes from :func:`_bin_sizes`;
    then widths and ``left`` are scaled by ``clamp_domain(W)/W`` and heights and ``bottom`` by
    ``clamp_domain(H)/H`` (``W``, ``H`` the totals). Extra keys pass through unchanged.
    """
    d = domain.to(p["widths"].dtype)
    m = min_bin_sizes.to(p["widths"].dtype)
    w = _bin_sizes(p["widths"], d[1] - d[0], m[0])
    h = _bin_sizes(p["heights"], d[3] - d[2], m[1])
    total_w, total_h = w.sum(-1, keepdim=True), h.sum(-1, keepdim=True)
    rho_x = clamp_domain(total_w, domain_clamping) / total_w
    rho_y = clamp_domain(total_h, domain_clamping) / total_h
    return {
        **p,
        "widths": w * rho_x,
        "heights": h * rho_y,
        "left": (p["left"] + d[0]) * rho_x,
        "bottom": (p["bottom"] + d[2]) * rho_y,
    }


def constrain_identity_tails(
    p: Params, domain: Tensor, min_bin_sizes: Tensor, default_width: Tensor,
    domain_clamping: Optional[float],
) -> Params:
    """A square domain ``[-T/2, T/2]^2`` centred at 0, bins from softmaxes.

    ``T = clamp_domain(default_width * softplus(raw_total_width + ln(e - 1)))``,
    ``w = T softmax(raw_widths)``, ``h = T softmax(raw_heights)``; ``domain`` (its y-range) and
    ``min_bin_sizes`` are not used.
    """
    width = default_width.to(p["widths"].dtype)
    total = clamp_domain(width * F.softplus(p["total_width"] + LOG_E_MINUS_1), domain_clamping)
    return {
        **p,
        "widths": total * torch.softmax(p["widths"], dim=-1),
        "heights": total * torch.softmax(p["heights"], dim=-1),
        "left": -0.5 * total,
        "bottom": -0.5 * total,
    }


def soft_bound(u: Tensor, limit: float) -> Tensor:
    """``u / (1 + |u| / limit)``: slope 1 at 0, strictly inside ``(-limit, limit)``."""
    return u / (1.0 + u.abs() / limit)


#: In the fixed square no bin is wider (or taller) than ``MAX_BIN_RATIO`` times another.
MAX_BIN_RATIO = 1e3
#: The bound of the fixed square's softmax logits: ``exp(2 * limit) = MAX_BIN_RATIO``.
_LOGIT_LIMIT = 0.5 * math.log(MAX_BIN_RATIO)


def constrain_fixed_square(
    p: Params, domain: Tensor, min_bin_sizes: Tensor, default_width: Tensor,
    domain_clamping: Optional[float],
) -> Params:
    """The fixed square ``[-T/2, T/2]^2`` of Durkan et al.'s splines, ``T`` = the default
    domain's width: ``w = T softmax(b(raw_widths))``, ``h = T softmax(b(raw_heights))``,
    ``left = bottom = -T/2``, where ``b`` = :func:`soft_bound` to ``±ln(MAX_BIN_RATIO)/2``.

    Bounding the logits keeps the ratio of any two widths (or of any two heights) below
    ``MAX_BIN_RATIO``, so no bin collapses to a sliver that the training data alone decide.
    Nothing about the domain is learned (``domain``, ``min_bin_sizes`` and ``domain_clamping``
    are not used)."""
    total = default_width.to(p["widths"].dtype)
    corner = (-0.5 * total).expand_as(p["widths"][..., :1])
    return {
        **p,
        "widths": total * torch.softmax(soft_bound(p["widths"], _LOGIT_LIMIT), dim=-1),
        "heights": total * torch.softmax(soft_bound(p["heights"], _LOGIT_LIMIT), dim=-1),
        "left": corner,
        "bottom": corner,
    }


def knot_derivatives(raw_deltas: Tensor, widths: Tensor, heights: Tensor) -> Tensor:
    """All ``K + 1`` knot derivatives ``[H/W, softplus(raw + ln(e - 1)), H/W]`` (C^1 at edges)."""
    tail_slope = heights.sum(-1, keepdim=True) / widths.sum(-1, keepdim=True)
    inner = F.softplus(raw_deltas + LOG_E_MINUS_1)
    return torch.cat([tail_slope, inner, tail_slope], dim=-1)


def affine_tails(
    v: Tensor, widths: Tensor, heights: Tensor, left: Tensor, bottom: Tensor, rev: bool
) -> Tuple[Tensor, Tensor]:
    """The line through both domain corners: ``y = (H/W) x + bottom - (H/W) left``."""
    scale = heights.sum(-1, keepdim=True) / widths.sum(-1, keepdim=True)
    shift = bottom - scale * left
    out = (v - shift) / scale if rev else scale * v + shift
    return out, torch.log(scale).expand_as(out)


def identity_tails(
    v: Tensor, widths: Tensor, heights: Tensor, left: Tensor, bottom: Tensor, rev: bool
) -> Tuple[Tensor, Tensor]:
    """Exactly the identity outside the domain, log-derivative 0."""
    return v, torch.zeros_like(v)


def knot_extras(keys: Sequence[str]) -> Tuple[Tuple[str, str, str], ...]:
    """``(key, key_left, key_right)`` for every per-knot extra key (not in :data:`CORE_KEYS`).

    Resolved once per block, so that :func:`binned_spline` compares no strings per call.
    """
    return tuple((k, f"{k}_left", f"{k}_right") for k in keys if k not in CORE_KEYS)


def binned_spline(
    x: Tensor,
    p: Params,
    spline: SplineFn,
    tails: TailsFn,
    rev: bool = False,
    extras: Optional[Sequence[Tuple[str, str, str]]] = None,
) -> Tuple[Tensor, Tensor]:
    """Apply a per-element binned spline to ``x`` of shape ``(B, ..., n)``.

    ``p`` holds constrained parameters ``(B, ..., n, count)``. Knots are ``[left, left +
    cumsum(widths)]`` and ``[bottom, bottom + cumsum(heights)]``; an element is inside when
    ``knot_0 < v <= knot_K`` (x-knots forward, y-knots in reverse). Inside elements go through
    ``spline`` in the bin ``searchsorted(knots, v)`` (left side), the others through ``tails``.
    Outside elements enter ``spline`` at the first knot, a safe point, so no NaN reaches the
    gradients. Returns the values and the forward map's log-derivative per element (also when
    ``rev``, at the recovered points). ``extras`` is :func:`knot_extras` of ``p``'s keys
    (computed here when ``None``).
    """
    w, h, left, bottom = p["widths"], p["heights"], p["left"], p["bottom"]
    kx = torch.cat([left, left + torch.cumsum(w, dim=-1)], dim=-1)
    ky = torch.cat([bottom, bottom + torch.cumsum(h, dim=-1)], dim=-1)
    knots = ky if rev else kx
    v = x.unsqueeze(-1)
    inside = (v > knots[..., :1]) & (v <= knots[..., -1:])
    safe = torch.where(inside, v, knots[..., :1]).contiguous()
    upper = torch.searchsorted(knots, safe).clamp(1, w.shape[-1])
    lower = upper - 1
    bin_params = {
        "left": kx.gather(-1, lower).squeeze(-1),
        "right": kx.gather(-1, upper).squeeze(-1),
        "bottom": ky.gather(-1, lower).squeeze(-1),
        "top": ky.gather(-1, upper).squeeze(-1),
    }
    for key, key_left, key_right in knot_extras(list(p)) if extras is None else extras:
        bin_params[key_left] = p[key].gather(-1, lower).squeeze(-1)
        bin_params[key_right] = p[key].gather(-1, upper).squeeze(-1)
    y_in, log_d_in = spline(safe.squeeze(-1), **bin_params, rev=rev)
    y_out, log_d_out = tails(v, w, h, left, bottom, rev)
    inside = inside.squeeze(-1)
    return (torch.where(inside, y_in, y_out.squeeze(-1)),
            torch.where(inside, log_d_in, log_d_out.squeeze(-1)))


def check_discriminant(disc: Tensor) -> None:
    """Raise ``RuntimeError`` if any discriminant is negative (skipped while tracing/compiling)."""
    if is_tracing() or disc.numel() == 0:
        return
    if bool((disc < 0).any()):
        raise RuntimeError(
            "rational_quadratic_spline: negative discriminant in the inverse (most negative "
            f"value {float(disc.min()):.6g}); the spline parameters are not monotone or the "
            "inputs lie outside their bins."
        )


def _rq_log_derivative(xi: Tensor, slope: Tensor, d_left: Tensor, d_right: Tensor) -> Tensor:
    """``ln dy/dx`` of the RQ bin map at ``xi``: ``ln(numerator) - ln(denominator)``."""
    t = xi * (1.0 - xi)
    denominator = slope + (d_right + d_left - 2.0 * slope) * t
    numerator = slope**2 * (d_right * xi**2 + 2.0 * slope * t + d_left * (1.0 - xi) ** 2)
    return torch.log(numerator) - torch.log(denominator**2)


def rational_quadratic_spline(
    x: Tensor, left: Tensor, right: Tensor, bottom: Tensor, top: Tensor,
    deltas_left: Tensor, deltas_right: Tensor, rev: bool = False,
) -> Tuple[Tensor, Tensor]:
    r"""Monotone rational-quadratic map of one bin (elementwise); returns ``(out, log_jac)``.

    With ``xi = (x - x_k)/dx``, ``s = dy/dx`` and knot derivatives ``d_l``, ``d_r``:
    ``y = y_k + dy [s xi^2 + d_l xi(1-xi)] / [s + (d_r + d_l - 2s) xi(1-xi)]``. The inverse
    solves ``a xi^2 + b xi + c = 0`` with ``r = y - y_k``, ``D = d_r + d_l - 2s``,
    ``a = dy(s - d_l) + rD``, ``b = dy d_l - rD``, ``c = -s r`` as
    ``xi = 2c / (-b - sqrt(b^2 - 4ac))``. ``log_jac`` is always the *forward* log-derivative
    (at the recovered point in reverse).

    References: Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows", NeurIPS 2019
    (arXiv:1906.04032).

    Raises:
        RuntimeError: (reverse, not while tracing/compiling) a negative discriminant.
    """
    dx, dy = right - left, top - bottom
    slope = dy / dx
    if rev:
        r = x - bottom
        curvature = deltas_right + deltas_left - 2.0 * slope
        a = dy * (slope - deltas_left) + r * curvature
        b = dy * deltas_left - r * curvature
        c = -slope * r
        disc = b**2 - 4.0 * a * c
        check_discriminant(disc)
        xi = 2.0 * c / (-b - torch.sqrt(disc))
        return left + xi * dx, _rq_log_derivative(xi, slope, deltas_left, deltas_right)
    xi = (x - left) / dx
    t = xi * (1.0 - xi)
    denominator = slope + (deltas_right + deltas_left - 2.0 * slope) * t
    y = bottom + dy * (slope * xi**2 + deltas_left * t) / denominator
    return y, _rq_log_derivative(xi, slope, deltas_left, deltas_right)


def linear_spline(
    x: Tensor, left: Tensor, right: Tensor, bottom: Tensor, top: Tensor, rev: bool = False
) -> Tuple[Tensor, Tensor]:
    """Linear map of one bin: ``y = y_k + (dy/dx)(x - x_k)``; returns ``(out, ln dy - ln dx)``."""
    dx, dy = right - left, top - bottom
    log_jac = torch.log(dy) - torch.log(dx)
    if rev:
        return left + (x - bottom) * dx / dy, log_jac
    return bottom + (dy / dx) * (x - left), log_jac
