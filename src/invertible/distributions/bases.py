"""Learnable base densities for `FlowDistribution`: Gaussian, mixture, conditional, prior."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["ConditionalDiagGaussian", "DiagGaussian", "FlowBase", "GaussianMixture", "LearnedPrior"]

Count = Union[int, Sequence[int]]

LOG_2PI = math.log(2.0 * math.pi)


def diag_normal_log_prob(z: Tensor, mean: Tensor, log_scale: Tensor, event_dims: int) -> Tensor:
    r""":math:`\sum_i -\tfrac12 ((z_i - \mu_i)/\sigma_i)^2 - \ln\sigma_i - \tfrac12\ln 2\pi`
    over the last ``event_dims`` axes (``mean``/``log_scale`` broadcast against ``z``)."""
    terms = -0.5 * ((z - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * LOG_2PI
    return terms.sum(dim=tuple(range(-event_dims, 0))) if event_dims else terms


def sample_count(n: Count, who: str) -> int:
    """``n`` from an int or a one-element sample shape ``(n,)`` (torch.distributions' form)."""
    value = n[0] if isinstance(n, Sequence) and len(n) == 1 else n
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{who}: n must be a positive integer or a shape (n,), got {n!r}.")
    return int(value)


class FlowBase(nn.Module):
    r"""The protocol of a learnable base density :math:`p(z \mid \text{context})` over ``shape``.

    ``FlowDistribution`` calls ``log_prob(z, context)`` (returning ``(batch,)``) and
    ``rsample(n, context, temperature)`` / ``sample(...)`` (returning ``(n, *shape)``), where
    ``context`` is ``None`` for an unconditional base, the flow's condition ``c[cond]`` when
    :attr:`cond` is set, or the flow's output ``z[source]`` when :attr:`source` is set. The base
    applies the temperature itself: every Gaussian's standard deviation is multiplied by
    :math:`T` (:math:`T = 0` gives the means). It is an ``nn.Module``, so ``FlowDistribution``
    holds it as a submodule (``parameters()``, ``.to()``, ``state_dict``).
    Subclasses implement :meth:`log_prob` and :meth:`rsample`; :meth:`sample` is
    :meth:`rsample` without gradients.

    Args:
        shape: the event shape, e.g. ``(2,)`` or ``(C, H, W)``.
    """

    has_rsample = True
    tempers = True  # sample/rsample take the temperature themselves (FlowDistribution checks)
    cond: Optional[int] = None
    source: Optional[int] = None

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = torch.Size(int(d) for d in shape)
        self.batch_shape = torch.Size()

    def log_prob(self, z: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """Per-sample log-density ``(batch,)`` of ``z`` of shape ``(batch, *shape)``."""
        raise NotImplementedError

    def rsample(
        self, n: Count, context: Optional[Tensor] = None, temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """``n`` reparameterised samples ``(n, *shape)``, drawn from ``generator`` when given
        (else torch's global generator)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self, n: Count, context: Optional[Tensor] = None, temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """``n`` samples ``(n, *shape)`` without gradients (arguments as for :meth:`rsample`)."""
        return self.rsample(n, context, temperature, generator)

    def _check(self, z: Tensor) -> None:
        """``ValueError`` unless ``z`` is ``(batch, *shape)``."""
        if tuple(z.shape[1:]) != tuple(self.event_shape) or z.dim() != len(self.event_shape) + 1:
            raise ValueError(
                f"{type(self).__name__}: expected z of shape (batch, *{tuple(self.event_shape)}), "
                f"got {tuple(z.shape)}."
            )

    def _state(self, name: str, value: Tensor, trainable: bool) -> None:
        """Register ``value`` as a Parameter (``trainable``) or a buffer."""
        if trainable:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)


class DiagGaussian(FlowBase):
    r"""A Gaussian with diagonal covariance: :math:`z = \mu + T\,e^{s} \odot \varepsilon`.

    .. math::
        \log p(z) = \sum_i -\tfrac12 \left(\frac{z_i - \mu_i}{e^{s_i}}\right)^2 - s_i
        - \tfrac12 \ln 2\pi,

    with mean :math:`\mu` (``loc``) and log-scale :math:`s` (``log_scale``), both of ``shape``,
    started at 0 (the standard normal).

    Args:
        shape: the event shape.
        trainable: ``loc`` and ``log_scale`` are Parameters; with ``False`` fixed buffers.
    """

    loc: Tensor
    log_scale: Tensor

    def __init__(self, shape: Sequence[int], trainable: bool = True) -> None:
        super().__init__(shape)
        self._state("loc", torch.zeros(self.event_shape), trainable)
        self._state("log_scale", torch.zeros(self.event_shape), trainable)

    def log_prob(self, z: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """Per-sample log-density ``(batch,)``."""
        self._check(z)
        return diag_normal_log_prob(z, self.loc, self.log_scale, len(self.event_shape))

    def rsample(
        self, n: Count, context: Optional[Tensor] = None, temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """``n`` samples ``loc + T exp(log_scale) eps``; gradients reach both."""
        count = sample_count(n, type(self).__name__)
        eps = torch.randn((count, *self.event_shape), generator=generator, dtype=self.loc.dtype,
                          device=self.loc.device)
        return self.loc + temperature * torch.exp(self.log_scale) * eps


class GaussianMixture(FlowBase):
    r"""A mixture of ``n_components`` diagonal Gaussians.

    .. math::
        \log p(z) = \operatorname{logsumexp}_k \left[\log \pi_k + \log\mathcal N(z; \mu_k,
        \operatorname{diag} e^{2 s_k})\right], \qquad \pi = \operatorname{softmax}(\ell).

    Sampling draws a component :math:`k \sim \pi`, then :math:`z = \mu_k + T e^{s_k} \odot
    \varepsilon` (temperature scales each component's spread, not the weights). ``rsample`` is
    reparameterised within the component: gradients reach ``means`` and ``log_scales``, but the
    discrete component draw is not differentiable, so none reach ``logits`` (train those
    through :meth:`log_prob`). Initialisation: ``logits`` and ``log_scales`` 0, ``means`` drawn
    from :math:`\mathcal N(0, I)` with a local generator seeded by ``seed`` (the same seed gives
    the same base; torch's global generator is left alone), so the components start apart.

    Args:
        shape: the event shape.
        n_components: the number of components :math:`K`.
        trainable: ``logits``, ``means``, ``log_scales`` are Parameters; else fixed buffers.
        seed: seed of the means' initialisation.
    """

    logits: Tensor
    means: Tensor
    log_scales: Tensor

    def __init__(
        self, shape: Sequence[int], n_components: int, trainable: bool = True, seed: int = 0
    ) -> None:
        super().__init__(shape)
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(
                f"GaussianMixture: n_components must be a positive integer, got {n_components!r}."
            )
        size = (n_components, *self.event_shape)
        means = torch.randn(size, generator=torch.Generator().manual_seed(seed))
        self._state("logits", torch.zeros(n_components), trainable)
        self._state("means", means.to(torch.get_default_dtype()), trainable)
        self._state("log_scales", torch.zeros(size), trainable)

    def log_prob(self, z: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """Per-sample log-density ``(batch,)``, by logsumexp over the components."""
        self._check(z)
        per_component = diag_normal_log_prob(  # (batch, K)
            z.unsqueeze(1), self.means, self.log_scales, len(self.event_shape)
        )
        return torch.logsumexp(torch.log_softmax(self.logits, 0) + per_component, dim=1)

    def rsample(
        self, n: Count, context: Optional[Tensor] = None, temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """``n`` samples; reparameterised within the drawn component (see the class)."""
        count = sample_count(n, type(self).__name__)
        weights = torch.softmax(self.logits.detach(), 0)
        k = torch.multinomial(weights, count, replacement=True, generator=generator)
        mean, log_scale = self.means[k], self.log_scales[k]
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + temperature * torch.exp(log_scale) * eps


class ConditionalDiagGaussian(FlowBase):
    r"""A diagonal Gaussian whose mean and log-scale a network computes from a context.

    :math:`(\mu, s) = \mathrm{net}(y)`, :math:`\log p(z \mid y) = \log\mathcal N(z; \mu,
    \operatorname{diag} e^{2s})`, :math:`z = \mu + T e^{s} \odot \varepsilon`. ``context_net``
    maps a context batch ``(B, ...)`` to ``2 * prod(shape)`` values per row in any layout (e.g.
    ``(B, 2D)`` or ``(B, 2C, H, W)``): the first half, in flattened order, is :math:`\mu`, the
    second :math:`s`. In ``FlowDistribution`` the context is the flow's condition ``c[cond]``;
    the network gets the same conditions, so it must be a conditional one (an unconditional
    ``SequenceINN`` refuses conditions).

    Samples are paired with context rows: ``rsample(n, y)`` needs ``y`` with ``n`` rows (row
    ``i`` of the sample uses row ``i``) or one row (shared by all ``n``), the same pairing as
    ``FlowDistribution.sample(n, c)``; for ``m`` samples per row pass
    ``y.repeat_interleave(m, 0)``.

    Args:
        shape: the event shape.
        context_net: an ``nn.Module`` from the context to ``2 * prod(shape)`` values per row.
        cond: which of ``FlowDistribution``'s conditions is the context.
    """

    def __init__(self, shape: Sequence[int], context_net: nn.Module, cond: int = 0) -> None:
        super().__init__(shape)
        if not isinstance(context_net, nn.Module):
            raise TypeError(
                f"{type(self).__name__}: context_net must be an nn.Module, got "
                f"{type(context_net).__name__}."
            )
        if isinstance(cond, bool) or not isinstance(cond, int) or cond < 0:
            raise ValueError(f"{type(self).__name__}: cond must be an index >= 0, got {cond!r}.")
        self.context_net = context_net
        self.cond = cond

    def parameters_for(self, context: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Mean and log-scale, each ``(B, *shape)``, for a context batch ``(B, ...)``."""
        if not isinstance(context, Tensor):
            raise ValueError(
                f"{type(self).__name__}: needs a context tensor (the condition or output it "
                f"depends on), got {type(context).__name__}."
            )
        out = self.context_net(context)
        d = math.prod(self.event_shape)
        if out.dim() == 0 or out.shape[0] != context.shape[0] or out[0].numel() != 2 * d:
            raise ValueError(
                f"{type(self).__name__}: context_net must return (batch, ...) with 2 * "
                f"{d} = {2 * d} values per row for a context of {tuple(context.shape)}, got "
                f"{tuple(out.shape)}."
            )
        mean, log_scale = out.reshape(out.shape[0], 2, *self.event_shape).unbind(1)
        return mean, log_scale

    def log_prob(self, z: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """Per-sample log-density ``(batch,)`` of ``z`` given the context rows."""
        self._check(z)
        mean, log_scale = self.parameters_for(context)
        return diag_normal_log_prob(z, mean, log_scale, len(self.event_shape))

    def rsample(
        self, n: Count, context: Optional[Tensor] = None, temperature: float = 1.0,
        generator: Optional[torch.Generator] = None,
    ) -> Tensor:
        """``n`` samples paired with the context rows (``n`` rows, or one row for all)."""
        count = sample_count(n, type(self).__name__)
        mean, log_scale = self.parameters_for(context)
        if mean.shape[0] not in (1, count):
            raise ValueError(
                f"{type(self).__name__}: {count} samples need a context with {count} rows or "
                f"1 row, got {mean.shape[0]}."
            )
        eps = torch.randn((count, *self.event_shape), generator=generator, dtype=mean.dtype,
                          device=mean.device)
        return mean + temperature * torch.exp(log_scale) * eps


class LearnedPrior(ConditionalDiagGaussian):
    r"""Glow's learned prior: output ``k`` of a flow given its output ``source``.

    :math:`z_k \sim \mathcal N(\mu(z_j), \operatorname{diag} e^{2 s(z_j)})`, with ``net`` as the
    ``context_net`` of :class:`ConditionalDiagGaussian` applied to :math:`z_j` (``j = source``).
    In a multi-scale flow the latents factored out early (``z_k``) get a density that depends
    on those that continue (``z_j``). ``FlowDistribution`` evaluates it after the forward pass
    (``z_j`` known) and samples :math:`z_j` first, then :math:`z_k` given :math:`z_j`, then
    runs the inverse.

    References:
        Kingma, Dhariwal (2018), "Glow: Generative flow with invertible 1x1 convolutions"
        (the split prior).

    Args:
        shape: the event shape of output ``k``.
        net: an ``nn.Module`` from ``(B, *shape of output source)`` to ``2 * prod(shape)``
            values per row.
        source: the index of the output it is conditioned on.
    """

    def __init__(self, shape: Sequence[int], net: nn.Module, source: int = 0) -> None:
        super().__init__(shape, net)
        self.cond = None
        self.source = source
