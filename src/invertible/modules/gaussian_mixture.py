"""A Gaussian mixture model as an invertible map, its parameters given as conditions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from .._errors import InvertibleAssertionError
from ._common import Dims, Outputs, ShapeList, is_int, same_shape, vector_size
from .base import InvertibleModule, check_tensors

__all__ = ["GaussianMixtureModel"]

#: The checked input and conditions of a call: ``(x, w, mu, U_entries, i)``.
Checked = Tuple[Tensor, Tensor, Tensor, Tensor, Any]


# --- kernels ---------------------------------------------------------------------------------


def n_cholesky_entries(d: int) -> int:
    """Entries of an upper-triangular ``d x d`` factor: ``d (d + 1) / 2``."""
    return d * (d + 1) // 2


def upper_factor(entries: Tensor, mask_diagonal: Tensor, mask_upper: Tensor) -> Tensor:
    r"""Build :math:`U` ``(..., d, d)`` from ``entries (..., d(d+1)/2)``.

    The first ``d`` entries are :math:`\ln U_{jj}`, the rest fill the strict upper triangle in
    row-major order (the order in which a boolean mask enumerates it).
    """
    d = mask_diagonal.shape[0]
    zeros = entries.new_zeros(*entries.shape[:-1], d, d)
    diagonal = zeros.masked_scatter(mask_diagonal, torch.exp(entries[..., :d]).contiguous())
    return diagonal + zeros.masked_scatter(mask_upper, entries[..., d:].contiguous())


def whiten(x: Tensor, mu: Tensor, U: Tensor) -> Tensor:
    """``z = U (x - mu)`` over the last dim, batched over the leading dims."""
    return (U @ (x - mu).unsqueeze(-1)).squeeze(-1)


def colour(z: Tensor, mu: Tensor, U: Tensor) -> Tensor:
    """``x = mu + U⁻¹ z`` by a triangular solve, batched over the leading dims."""
    z = z.expand(*U.shape[:-1])
    return mu + torch.linalg.solve_triangular(U, z.unsqueeze(-1), upper=True).squeeze(-1)


def select_component(t: Tensor, index: Tensor) -> Tensor:
    """Row ``index[b]`` of ``t[b]`` for every sample: ``(B, K, ...) -> (B, ...)``."""
    shaped = index.reshape(-1, *([1] * (t.dim() - 1))).expand(-1, 1, *t.shape[2:])
    return t.gather(1, shaped).squeeze(1)


def component_index(block: str, i: Any, w: Tensor) -> Tensor:
    """The chosen component per sample (int64 ``(B,)``) from a tensor, or an int seed."""
    if is_int(i):
        i = GaussianMixtureModel.pick_mixture_component(w, seed=int(i))
    if not isinstance(i, Tensor):
        raise TypeError(
            f"{block}: the component condition i must be a tensor of indices, an int seed or None,"
            f" got {type(i).__name__}."
        )
    if i.is_floating_point() or i.is_complex() or i.dtype == torch.bool:
        raise TypeError(
            f"{block}: the component condition i must hold integer indices, got dtype {i.dtype}."
        )
    batch = w.shape[0]
    if i.numel() not in (1, batch):
        raise ValueError(
            f"{block}: i must hold one component index per sample ({batch}) or a single one, got "
            f"shape {tuple(i.shape)}."
        )
    return i.reshape(-1).to(device=w.device, dtype=torch.long).expand(batch)


# --- the module ------------------------------------------------------------------------------


class GaussianMixtureModel(InvertibleModule):
    r"""Maps data to standard-normal latents under a Gaussian mixture given as conditions.

    Component k of sample b has mean :math:`\mu_k` and precision :math:`U_k^T U_k`, with
    :math:`U_k` upper triangular. For a chosen component :math:`i_b`:
    forward :math:`z_b = U_{i_b}(x_b - \mu_{i_b})`, reverse :math:`x_b = \mu_{i_b} + U_{i_b}^{-1}
    z_b`, log-det :math:`\sum_j \ln (U_{i_b})_{jj}` (negated in reverse). With ``i=None`` every
    component is applied at once: output ``(B, K, d)`` and log-det ``(B, K)``; either direction
    takes ``(B, d)`` (broadcast over the components) or ``(B, K, d)`` (one point per component,
    e.g. the forward's own output). That log-det cannot be accumulated by a ``GraphINN``, so
    call the module directly or with ``jac=False``.

    ``exact_inverse`` is ``False``: the component index is a condition that may be ``None``
    (every component at once, not a bijection of the input) or an int seed, which a
    memory-efficient container cannot reproduce when it recomputes the input by inversion.

    Conditions ``c = [w, mu, U_entries, i]``: ``w (B, K)`` weights (positive, summing to 1; only
    used to draw components), ``mu (B, K, d)``, ``U_entries (B, K, d(d+1)/2)`` (the first ``d``
    are the log-diagonal of :math:`U`, the rest its strict upper triangle in row-major order), and
    ``i``: an index tensor ``(B,)``, an ``int`` seed for :meth:`pick_mixture_component`, or None.

    The masks ``mask_upper``/``mask_diagonal`` are non-persistent buffers: they follow
    ``.to(device)`` (FrEIA's plain attributes did not) but add no ``state_dict`` keys. The module
    has no parameters; the conditions must have the input's dtype and device.

    Args:
        dims_in: one vector shape ``[(d,)]``.
        dims_c: the shapes of ``[w, mu, U_entries, i]``: ``(K,)``, ``(K, d)``, ``(K, d(d+1)/2)``
            and any shape for ``i`` (e.g. ``(0,)`` for a placeholder ``ConditionNode``).

    Raises:
        ValueError: a non-vector input or ``dims_c`` that does not describe a mixture.
    """

    exact_inverse = False
    mask_upper: Tensor
    mask_diagonal: Tensor

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims]) -> None:
        super().__init__(dims_in, dims_c)
        d = vector_size("GaussianMixtureModel", self.dims_in)
        self._check_dims_c(d)
        ones = torch.ones(d, d, dtype=torch.bool)
        self.register_buffer("mask_upper", torch.triu(ones, diagonal=1), persistent=False)
        self.register_buffer("mask_diagonal", torch.eye(d, dtype=torch.bool), persistent=False)

    def _check_dims_c(self, d: int) -> None:
        """``dims_c`` must be ``[(K,), (K, d), (K, d(d+1)/2), <any>]``."""
        if len(self.dims_c) != 4 or len(self.dims_c[0]) != 1:
            raise ValueError(
                f"GaussianMixtureModel needs 4 conditions [w (K,), mu (K, {d}), U (K, "
                f"{n_cholesky_entries(d)}), i], got dims_c={self.dims_c}."
            )
        k = self.dims_c[0][0]
        expected = [(k,), (k, d), (k, n_cholesky_entries(d))]
        if self.dims_c[:3] != expected:
            raise ValueError(
                f"GaussianMixtureModel with d={d} and K={k} needs condition shapes w, mu, U = "
                f"{expected}, got {self.dims_c[:3]}."
            )

    def forward(  # type: ignore[override]  # FrEIA's signature: c is required
        self, x: Sequence[Tensor], c: Sequence[Any], rev: bool = False, jac: bool = True
    ) -> Outputs:
        """Whiten (forward) or colour (reverse) under the chosen or all components.

        The log-det is always returned: ``(B,)``, or ``(B, K)`` with ``i=None``.
        """
        x_in, w, mu, entries, i = self._checked_call(x, c, rev)
        if i is not None:  # the type of a condition, not a tensor value
            index = component_index("GaussianMixtureModel", i, w)
            mu, entries = select_component(mu, index), select_component(entries, index)
        elif x_in.dim() == 2:
            x_in = x_in.unsqueeze(1)
        U = upper_factor(entries, self.mask_diagonal, self.mask_upper)
        log_det = entries[..., : self.mask_diagonal.shape[0]].sum(dim=-1)
        if rev:
            return [colour(x_in, mu, U)], -log_det
        return [whiten(x_in, mu, U)], log_det

    def _checked_call(self, x: Any, c: Any, rev: bool) -> Checked:
        """The one input, ``(B, d)`` or, with ``i=None``, also ``(B, K, d)``, and the conditions
        ``w, mu, U_entries`` (of the input's batch, dtype and device) and ``i``.

        The same checks as every block's (:func:`check_tensors`), called directly: ``i`` may be
        ``None`` or an int rather than a tensor, and the input may carry a component axis.

        Raises:
            InvertibleAssertionError: several inputs (an ``assert`` in FrEIA).
            ValueError: not four conditions; wrong shapes or batch sizes.
            TypeError: non-tensors, or conditions of another dtype than the input.
        """
        owner = "GaussianMixtureModel"
        if isinstance(x, (list, tuple)) and len(x) != 1:
            raise InvertibleAssertionError(f"{owner} can only use 1 input, got {len(x)} inputs.")
        if not isinstance(c, (list, tuple)) or len(c) != 4:
            got = len(c) if isinstance(c, (list, tuple)) else type(c).__name__
            raise ValueError(f"{owner} needs the conditions [w, mu, U_entries, i], got {got}.")
        every = c[3] is None and isinstance(x, (list, tuple)) and getattr(x[0], "ndim", 0) == 3
        what = "reverse input" if rev else "input"
        shape = self.dims_c[1] if every else self.dims_in[0]  # (K, d) or (d,)
        (x_in,) = check_tensors(owner, what, x, [shape], True, self.mask_diagonal)
        w, mu, entries = check_tensors(owner, "condition", list(c[:3]), self.dims_c[:3], True, x_in)
        if not torch.jit.is_tracing() and w.shape[0] != x_in.shape[0]:
            raise ValueError(
                f"{owner}: the conditions have batch size {w.shape[0]}, but the {what} has "
                f"{x_in.shape[0]} (shape {tuple(x_in.shape)})."
            )
        return x_in, w, mu, entries, c[3]

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape ``[(d,)]`` (the fixed-component form)."""
        return same_shape("GaussianMixtureModel", input_dims)

    @staticmethod
    def pick_mixture_component(w: Tensor, seed: Optional[int] = None) -> Tensor:
        """Draw one component per sample with probabilities ``w (B, K)``; int32 ``(B,)``.

        Uses a private ``torch.Generator`` on ``w.device`` (seeded with ``seed`` if it is an
        int, else randomly), never the global one: ``u = rand(B, 1)``, index
        ``sum(u > cumsum(w))`` (clamped to ``K - 1`` against rounding in the cumulative sum).
        """
        generator = torch.Generator(device=w.device)
        if is_int(seed):
            generator.manual_seed(seed)
        else:
            generator.seed()
        u = torch.rand(w.shape[0], 1, generator=generator, device=w.device)
        index = (u > torch.cumsum(w, dim=1)).sum(dim=1)
        return index.clamp(max=w.shape[1] - 1).to(torch.int32)

    @staticmethod
    def normalize_weights(w: Tensor) -> Tensor:
        """``softmax(w - w.max(), dim=-1)``: raw scores to mixture weights."""
        return torch.softmax(w - w.max(), dim=-1)

    @staticmethod
    def nll_loss(w: Tensor, z: Tensor, log_jacobian: Tensor) -> Tensor:
        r"""Per-sample :math:`-\ln \sum_k w_k \exp(-\tfrac12 |z_k|^2 + \ell_k)`, computed stably.

        Args:
            w: weights ``(B, K)``; z: latents ``(B, K, d)``; log_jacobian: ``(B, K)``.
        """
        a = -0.5 * (z**2).sum(dim=-1) + log_jacobian
        top = a.max(dim=1, keepdim=True).values.detach()
        return -(top.squeeze(1) + torch.log((w * torch.exp(a - top)).sum(dim=1)))

    @staticmethod
    def nll_upper_bound(w: Tensor, z: Tensor, log_jacobian: Tensor) -> Tensor:
        r"""Per-sample :math:`-\sum_k (\ln w_k - \tfrac12 |z_k|^2 + \ell_k)`; shapes as above."""
        return -(torch.log(w) - 0.5 * (z**2).sum(dim=-1) + log_jacobian).sum(dim=1)
