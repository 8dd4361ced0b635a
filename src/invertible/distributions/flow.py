"""`FlowDistribution`: log-density, sampling, NLL and bits/dim of any invertible network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .. import metrics
from ..utils import output_dims_compatible
from ._flow_calls import (
    Shape,
    Tensors,
    base_context,
    check_base,
    check_count,
    check_temperature,
    condition_list,
    data_tuple,
    input_shapes,
    run_inn,
    sampling_order,
    standard_normal_log_prob,
    tensor_options,
)

__all__ = ["FlowDistribution"]

Sample = Union[Tensor, Tuple[Tensor, ...]]


class FlowDistribution(nn.Module):
    r"""The density defined by a normalising flow :math:`f` (data to latent) and a base density.

    For any invertible network ``inn`` (``SequenceINN``, ``GraphINN`` or any
    ``InvertibleModule``; conditional or not) whose forward direction maps data to latents,
    :math:`(z_1, \dots, z_K) = f(x_1, \dots, x_M;\, c)`:

    .. math::
        \log p(x \mid c) = \sum_{k=1}^K \log p_k(z_k) + \log\left|\det \frac{\partial f}
        {\partial x}\right|,

    one base density :math:`p_k` per output (default :math:`\mathcal N(0, I)`), the log-det from
    one forward call with ``jac=True``. Sampling runs :math:`f^{-1}` on latents drawn at
    *temperature* :math:`T`: :math:`z_k = T\,\varepsilon_k` for the standard normal, otherwise
    :math:`z_k = \mu_k + T(\tilde z_k - \mu_k)` with :math:`\tilde z_k \sim p_k` (the base's std is
    scaled by :math:`T`; :math:`T = 0` gives :math:`f^{-1}(\mu)`, the image of the base's mode,
    which is the mode of :math:`p(x)` for affine/volume-preserving flows). Temperature only
    affects sampling: :meth:`log_prob` is always the density of the model at :math:`T = 1`.
    The bases of this package (:class:`~invertible.distributions.bases.FlowBase`: ``DiagGaussian``,
    ``GaussianMixture``, ``ConditionalDiagGaussian``, ``LearnedPrior``) apply :math:`T` themselves
    (each Gaussian's std times :math:`T`) and may depend on a context: the condition
    ``c[base.cond]`` or another output ``z[base.source]`` (Glow's learned prior, evaluated after
    the forward pass; sampling draws the source output first).

    Data ``x`` is one tensor ``(B, *shape)`` per network input (a bare tensor for one input);
    :meth:`sample` returns the same. Conditions ``c`` are a tensor or a list, passed on to the
    network as ``c=[...]`` (omitted when ``None``). Images may have other extents than the network
    was built with wherever the network accepts them (a fully convolutional flow does); sampling
    draws at the built size. :attr:`n_dims` is the number of scalars of one sample at the built
    size; :meth:`bits_per_dim` normalises by that of the data it gets (see
    :mod:`invertible.metrics`).

    It is an ``nn.Module`` holding ``inn`` as child ``inn`` (``parameters()``, ``.to()``,
    ``state_dict`` keys ``inn.*``); ``forward(x, c)`` is :meth:`log_prob`. Bases that are
    ``nn.Module`` instances are submodules too (``base_modules.<output index>.*``); other custom
    bases are not moved by ``.to()`` (use ``invertible.utils.force_to``); the default base
    follows the data.

    Example::

        dist = FlowDistribution(inn)              # N(0, I) on every output of inn
        loss = dist.nll(x, c)                     # mean NLL in nats, to minimise
        bpd = dist.bits_per_dim(x, c, n_bins=256) # 8-bit data dequantised to [0, 1)
        x_new = dist.sample(16, c, temperature=0.7)

    References:
        Dinh, Sohl-Dickstein, Bengio (2017), "Density estimation using Real NVP" (bits/dim,
        dequantisation); Theis, van den Oord, Bethge (2016), "A note on the evaluation of
        generative models" (the dequantisation bound); Kingma, Dhariwal (2018), "Glow"
        (temperature).

    Args:
        inn: the flow, data to latent.
        base: ``None`` (standard normal for every output), one distribution used for every
            output, or a list with one entry per output (``None`` entries are standard normal).
            A base needs ``log_prob`` and ``sample``, ``event_shape`` equal to its output's shape
            and ``batch_shape == ()`` (e.g. ``StandardNormalDistribution``,
            ``torch.distributions.Independent`` or a ``FlowBase``); ``rsample`` and ``mean``
            where used (a ``FlowBase`` handles the temperature itself).

    Raises:
        TypeError: ``inn`` has no ``dims_in``, or a base is not a distribution.
        ValueError: the number of bases differs from the number of outputs, or a base's shapes
            do not fit its output, or bases depend on each other in a cycle.
    """

    def __init__(self, inn: nn.Module, base: Any = None) -> None:
        super().__init__()
        self.input_shapes: List[Shape] = input_shapes(inn)
        self.output_shapes: List[Shape] = [tuple(s) for s in output_dims_compatible(inn)]
        self.inn = inn
        bases = list(base) if isinstance(base, (list, tuple)) else [base] * len(self.output_shapes)
        if len(bases) != len(self.output_shapes):
            raise ValueError(
                f"FlowDistribution: got {len(bases)} base distributions, but the INN has "
                f"{len(self.output_shapes)} outputs of shapes {self.output_shapes}."
            )
        shapes = self.output_shapes
        self.bases = [check_base(b, s, k) for k, (b, s) in enumerate(zip(bases, shapes))]
        self.order = sampling_order(self.bases)  # sources before the bases that depend on them
        modules = {str(k): b for k, b in enumerate(self.bases) if isinstance(b, nn.Module)}
        self.base_modules = nn.ModuleDict(modules)

    @property
    def n_dims(self) -> int:
        """Scalars per sample at the built size, summed over all inputs (the ``D`` of bits/dim)."""
        return metrics.count_dims(self.input_shapes)

    def forward(self, x: Tensors, c: Any = None) -> Tensor:
        """Same as :meth:`log_prob` (so that wrappers such as DDP see the computation)."""
        return self.log_prob(x, c)

    def log_prob(self, x: Tensors, c: Any = None) -> Tensor:
        """Per-sample log-density in nats, ``(batch,)``, summed over all dims of all inputs.

        Args:
            x: one tensor ``(B, *shape)`` per network input (a tensor or a list/tuple).
            c: the conditions (a tensor or a list), or ``None``.

        Raises:
            TypeError: ``x`` or ``c`` of the wrong type.
            ValueError: wrong number or shapes of tensors in ``x``, or the network returned no
                log-det.
        """
        xs = data_tuple(x, self.input_shapes, "x")
        zs, log_det = run_inn(self.inn, xs, condition_list(c), rev=False, jac=True)
        if log_det is None:
            raise ValueError(
                f"FlowDistribution: {type(self.inn).__name__} returned no log-det although "
                f"called with jac=True, so the density cannot be evaluated."
            )
        return self.base_log_prob(zs, c) + log_det

    def base_log_prob(self, z: Tensors, c: Any = None) -> Tensor:
        """Summed base log-density of the latents ``z`` (one tensor per output), ``(batch,)``;
        ``c`` are the conditions, for bases conditioned on them."""
        fixed = any(b is not None for b in self.bases)  # a custom base has a fixed event shape
        zs = data_tuple(z, self.output_shapes, "z", fixed)
        total, cs = zs[0].new_zeros(zs[0].shape[0]), condition_list(c)
        for k, (zk, base) in enumerate(zip(zs, self.bases)):
            context = base_context(base, k, zs, cs)
            if base is None:
                lp = standard_normal_log_prob(zk)
            else:
                lp = base.log_prob(zk) if context is None else base.log_prob(zk, context)
            if lp.shape != total.shape:
                raise ValueError(
                    f"FlowDistribution: base {k} returned log_prob of shape {tuple(lp.shape)} "
                    f"for a batch of {total.shape[0]}; expected ({total.shape[0]},)."
                )
            total = total + lp
        return total

    def nll(self, x: Tensors, c: Any = None, reduction: str = "mean") -> Tensor:
        """Negative log-likelihood in nats per sample (``reduction``: mean, sum or none)."""
        return metrics.nll(self.log_prob(x, c), reduction)

    def bits_per_dim(
        self,
        x: Tensors,
        c: Any = None,
        n_bins: Optional[int] = None,
        data_width: float = 1.0,
        reduction: str = "mean",
    ) -> Tensor:
        r"""Bits per dimension: :math:`-\log p(x) / (D \ln 2) + \log_2(n_{bins}/w)`.

        ``D`` is the number of scalars of one sample of ``x``. For discrete data give ``n_bins``
        (256 for 8-bit images): the data are assumed dequantised as in
        :func:`invertible.metrics.dequantize`, ``x = w (k + u) / n_bins + b`` (``data_width``
        ``w = 1`` for :math:`[0, 1)`), which adds :math:`\log_2(n_{bins}/w)` bits
        (``-ln(n_bins/w)`` nats of log-likelihood per dim).
        Any other invertible preprocessing (e.g. logit) belongs into ``inn`` so its log-det counts.

        Args:
            x: data, as for :meth:`log_prob`.
            c: conditions, as for :meth:`log_prob`.
            n_bins: number of levels of discrete data, or ``None`` for continuous data.
            data_width: width of the interval the levels were scaled to (only with ``n_bins``).
            reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        """
        xs = data_tuple(x, self.input_shapes, "x")
        n_dims = metrics.count_dims([tuple(t.shape[1:]) for t in xs])
        return metrics.bits_per_dim(self.log_prob(xs, c), n_dims, n_bins, data_width, reduction)

    @torch.no_grad()
    def sample(
        self,
        n: Optional[int] = None,
        c: Any = None,
        temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Sample:
        """Draw ``n`` samples without gradients (see :meth:`rsample` for the arguments)."""
        return self._draw(n, c, temperature, generator, reparameterised=False)

    def rsample(
        self,
        n: Optional[int] = None,
        c: Any = None,
        temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Sample:
        """Draw ``n`` reparameterised samples: gradients flow to the network's parameters.

        Args:
            n: number of samples; ``None`` takes the batch size of the conditions. Condition
                tensors of batch size 1 are expanded to ``n``.
            c: the conditions (a tensor or a list), or ``None``.
            temperature: factor on the base's standard deviation (``0`` gives the base's mode).
            generator: a ``torch.Generator`` for the draws of the standard normal base and of
                the bases of :mod:`invertible.distributions` (not for other
                ``torch.distributions``).

        Returns:
            One tensor ``(n, *shape)`` per network input (a bare tensor for one input).

        Raises:
            ValueError: bad ``n`` (not positive, missing, or not the conditions' batch size),
                ``temperature`` (negative, not finite) or ``generator`` with a base from
                ``torch.distributions``.
        """
        return self._draw(n, c, temperature, generator, reparameterised=True)

    def _draw(
        self, n: Optional[int], c: Any, temperature: float,
        generator: Optional[torch.Generator], reparameterised: bool,
    ) -> Sample:
        """Latents from the base, mapped through the inverse network."""
        zs, cs = self._latents(n, c, temperature, generator, reparameterised=reparameterised)
        return self._pack(run_inn(self.inn, zs, cs, rev=True, jac=False)[0])

    def sample_and_log_prob(
        self,
        n: Optional[int] = None,
        c: Any = None,
        temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[Sample, Tensor]:
        r"""Reparameterised samples and their log-density (at ``T = 1``) from one reverse pass.

        :math:`\log p(x) = \sum_k \log p_k(z_k) - \log|\det \partial f^{-1}/\partial z|`;
        equal to ``log_prob(x, c)`` up to round-off, without a second pass (e.g. for
        reverse-KL training). Arguments as for :meth:`rsample`.
        """
        zs, cs = self._latents(n, c, temperature, generator, reparameterised=True)
        xs, log_det = run_inn(self.inn, zs, cs, rev=True, jac=True)
        if log_det is None:
            raise ValueError(
                f"FlowDistribution: {type(self.inn).__name__} returned no log-det in reverse "
                f"although called with jac=True."
            )
        return self._pack(xs), self.base_log_prob(zs, cs) - log_det

    def _latents(
        self,
        n: Optional[int],
        c: Any,
        temperature: float,
        generator: Optional[torch.Generator],
        reparameterised: bool,
    ) -> Tuple[Tuple[Tensor, ...], Optional[List[Any]]]:
        """Latents at ``temperature``, one per output, and the (expanded) conditions."""
        t = check_temperature(temperature)
        n, cs = check_count(n, condition_list(c))
        foreign = [type(b).__name__ for b in self.bases
                   if b is not None and not getattr(b, "tempers", False)]
        if generator is not None and foreign:
            raise ValueError(
                f"FlowDistribution: generator= reaches the standard normal base and the bases of "
                f"invertible.distributions, but not {', '.join(foreign)} (torch.distributions "
                f"take no generator); seed torch's global generator instead."
            )
        dtype, device = tensor_options(self.inn, cs)
        zs: List[Tensor] = [torch.empty(0)] * len(self.bases)
        for k in self.order:
            shape, base = self.output_shapes[k], self.bases[k]
            if base is None:
                eps = torch.randn((n, *shape), generator=generator, dtype=dtype, device=device)
                zs[k] = eps * t
            else:
                context = base_context(base, k, zs, cs)
                zs[k] = _draw(base, n, t, reparameterised, context, generator)
        return tuple(zs), cs

    def _pack(self, xs: Sequence[Tensor]) -> Sample:
        """A bare tensor for a single-input network, else a tuple."""
        return xs[0] if len(self.input_shapes) == 1 else tuple(xs)

    def extra_repr(self) -> str:
        """Shapes and bases in the module repr."""
        bases = [type(b).__name__ if b is not None else "StandardNormal" for b in self.bases]
        shapes = f"input_shapes={self.input_shapes}, output_shapes={self.output_shapes}"
        return f"{shapes}, bases={bases}"


def _draw(base: Any, n: int, t: float, reparameterised: bool, context: Any,
          generator: Optional[torch.Generator]) -> Tensor:
    """``n`` draws from ``base`` at temperature ``t``: ``rsample`` when asked for and available,
    else ``sample``. A base with a true ``tempers`` (a ``FlowBase``) gets ``context`` and ``t``;
    for any other the deviation from its mean is scaled (:func:`_tempered`)."""
    use_rsample = reparameterised and getattr(base, "has_rsample", False)
    if getattr(base, "tempers", False):
        return (base.rsample if use_rsample else base.sample)((n,), context, temperature=t,
                                                              generator=generator)
    return _tempered(base.rsample((n,)) if use_rsample else base.sample((n,)), base, t)


def _tempered(z: Tensor, base: Any, temperature: float) -> Tensor:
    """Scale the deviation of ``z`` from ``base.mean`` by ``temperature`` (identity for 1)."""
    if temperature == 1.0:
        return z
    try:
        mean = base.mean
    except NotImplementedError:
        mean = None
    if not isinstance(mean, Tensor):
        raise ValueError(
            f"FlowDistribution: temperature={temperature} needs the base's mean, but "
            f"{type(base).__name__} has none; use temperature=1.0."
        )
    return mean + temperature * (z - mean)
