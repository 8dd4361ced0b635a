"""Distributions of data transformed by an invertible network (push-forward and pull-back)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..modules.base import InvertibleModule
from ..modules.inverse import Inverse
from ..utils import force_to, output_dims_compatible
from ._flow_calls import run_inn

__all__ = ["EventShapeError", "PullBackDistribution", "PushForwardDistribution"]

Conditions = Optional[Sequence[Tensor]]
NO_SHAPE = torch.Size()


class EventShapeError(RuntimeError, ValueError):
    """A value whose trailing shape is not the distribution's event shape.

    A ``RuntimeError`` as in FrEIA (whose flows raised it), and a ``ValueError`` like every other
    error about a user's input in this package.
    """


def apply_transform(
    transform: nn.Module, value: Tensor, conditions: Conditions, rev: bool, jac: bool
) -> Tuple[Tensor, Optional[Tensor]]:
    """Run ``transform`` on one tensor with FrEIA's tuple convention; ``(output, log_det)``.

    ``c`` is passed only when ``conditions`` is given (plain modules may have no ``c``).
    """
    cs = None if conditions is None else list(conditions)
    outs, log_det = run_inn(transform, (value,), cs, rev, jac)
    return outs[0], log_det


class PushForwardDistribution(Distribution):
    r"""The distribution of :math:`x = T(z)`, :math:`z \sim p_Z` (``base_distribution``).

    ``transform``'s **forward** direction maps latents to data, so
    :math:`\log p(x) = \log p_Z(T^{-1}(x)) + \log|\det \partial T^{-1}/\partial x|`, evaluated
    with one reverse call with ``jac=True`` (with ``jac=False`` a module may skip its log-det and
    return ``None`` or zeros). ``event_shape`` is the transform's output shape list, e.g.
    ``[(2,)]`` (FrEIA's value, not a ``torch.Size``). The batch is the first dim of a value;
    ``sample_shape`` acts as the batch, so use a one-dimensional one such as ``(16,)``.

    Tuple convention: ``transform`` gets and returns tuples unless it has a false
    ``force_tuple_output`` (a ``SequenceINN``/``GraphINN`` built with the default), in which case
    it gets and returns bare tensors.

    Args:
        base_distribution: the latent distribution :math:`p_Z`.
        transform: an invertible module mapping latents to data.
    """

    arg_constraints: ClassVar[Dict[str, Any]] = {}

    def __init__(self, base_distribution: Distribution, transform: nn.Module) -> None:
        self.output_shapes: List[Tuple[int, ...]] = output_dims_compatible(transform)
        # FrEIA's event_shape is the list of output shapes, not the torch.Size torch's stub wants
        super().__init__(torch.Size(), self.output_shapes)  # type: ignore[arg-type]
        self.base_distribution = base_distribution
        self.transform = transform

    @torch.no_grad()
    def sample(self, sample_shape: Any = NO_SHAPE, conditions: Conditions = None) -> Tensor:
        """Draw ``transform(z)`` for ``z ~ base.sample(sample_shape)``, without gradients."""
        z = self.base_distribution.sample(sample_shape)
        return apply_transform(self.transform, z, conditions, rev=False, jac=False)[0]

    def rsample(self, sample_shape: Any = NO_SHAPE, conditions: Conditions = None) -> Tensor:
        """Like :meth:`sample`, differentiable (``base.rsample``, else ``base.sample``)."""
        try:
            z = self.base_distribution.rsample(sample_shape)
        except NotImplementedError:
            z = self.base_distribution.sample(sample_shape)
        return apply_transform(self.transform, z, conditions, rev=False, jac=False)[0]

    def log_prob(self, value: Tensor, conditions: Conditions = None) -> Tensor:
        """Per-sample log-density: ``base.log_prob(z) + log_det`` of the reverse call.

        Raises:
            EventShapeError: (a ``RuntimeError``) if ``value`` is not ``(B, *event_shape)``.
            ValueError: if the transform returns no log-det although asked for one.
        """
        self._check_event_shape(value)
        z, log_det = apply_transform(self.transform, value, conditions, rev=True, jac=True)
        if log_det is None:
            raise ValueError(
                f"{type(self.transform).__name__} returned no log-det although called with "
                f"jac=True, so the density of {type(self).__name__} cannot be evaluated."
            )
        return self.base_distribution.log_prob(z) + log_det

    def _check_event_shape(self, value: Tensor) -> None:
        """A single-output transform needs values of shape ``(B, *event_shape[0])``."""
        if len(self.output_shapes) != 1 or not isinstance(value, Tensor):
            return
        expected = self.output_shapes[0]
        if value.dim() != len(expected) + 1 or tuple(value.shape[1:]) != expected:
            raise EventShapeError(
                f"{type(self).__name__}.log_prob expects values of shape (batch, *{expected}), "
                f"got {tuple(value.shape)}."
            )

    def force_to(self, *args: Any, **kwargs: Any) -> PushForwardDistribution:
        """Move the base distribution's tensors and the transform, e.g. ``force_to('cuda')``."""
        self.base_distribution = force_to(self.base_distribution, *args, **kwargs)
        self.transform = self.transform.to(*args, **kwargs)
        return self


class PullBackDistribution(PushForwardDistribution):
    r"""The density of a normalising flow :math:`f` (data to latent): ``Inverse(f)`` pushed forward.

    :math:`\log p(x) = \log p_Z(f(x)) + \log|\det \partial f/\partial x|`; :meth:`sample` runs
    :math:`f` in reverse. ``self.transform`` is the ``Inverse`` wrapper.

    Args:
        base_distribution: the latent distribution :math:`p_Z`.
        transform: the flow :math:`f`, mapping data to latents.
    """

    def __init__(self, base_distribution: Distribution, transform: InvertibleModule) -> None:
        super().__init__(base_distribution, Inverse(transform))
