"""`CouplingBlock`: the one coupling mechanism (split, conditions, subnets, clamp, log-det)."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import ClassVar, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from .._errors import InvertibleAssertionError, InvertibleTypeError
from ._affine import CLAMP_ACTIVATIONS, ClampActivation, acc_dtype, affine, resolve_clamp_activation
from ._common import (
    Dims,
    ShapeList,
    SubnetConstructor,
    built_subnet,
    channel_input_shape,
    same_shape,
)
from .base import InvertibleModule

__all__ = ["CouplingBlock", "LogJacobian", "Params", "split_lengths"]

#: The outputs of the subnets that parametrise one part, in their declaration order.
Params = Tuple[Tensor, ...]
#: A transform's log-Jacobian: element-wise log-derivatives, a ``(B,)`` log-det, or ``0.0``.
LogJacobian = Union[Tensor, float]
#: One coupling step: (transformed part, conditioning part or -1 for none, subnet names, width).
_Step = Tuple[int, int, Tuple[str, ...], int]


def split_lengths(block: str, channels: int, split_len: Union[float, int]) -> Tuple[int, int]:
    """Channel counts ``(split_len1, split_len2)`` of the two halves.

    A float is a fraction in [0, 1] rounded with Python's ``round`` (half to even: C=3 and C=5
    give 2, C=7 gives 4); an int is the size of half 1 and must lie in [0, channels]. Either half
    may end up with 0 channels (e.g. C=1 gives ``(0, 1)``): that half is then empty.
    """
    if isinstance(split_len, bool) or not isinstance(split_len, numbers.Real):
        raise InvertibleTypeError(
            f"{block}: split_len must be a float in [0, 1] or an int in [0, {channels}], got "
            f"{type(split_len).__name__} {split_len!r}."
        )
    if isinstance(split_len, numbers.Integral):
        if not 0 <= split_len <= channels:
            raise ValueError(
                f"{block}: Int split_len must be in range 0 <= split_len <= channels = {channels}, "
                f"got {split_len}."
            )
        return int(split_len), channels - int(split_len)
    if not 0.0 <= split_len <= 1.0:
        raise ValueError(f"{block}: Float split_len must be in range [0, 1], got {split_len}.")
    first = round(float(channels * split_len))
    return first, channels - first


def _warn_empty_half(block: str, split_len: Union[float, int], len1: int, len2: int) -> None:
    """Warn that an unconditioned coupling with an empty half is a learned constant affine map.

    FrEIA accepts ``0 <= split_len <= C`` (C=1 must split 0 | 1), so this is a warning, not an
    error: one subnet then sees no input and only its bias is learned.
    """
    if 0 in (len1, len2):
        warnings.warn(
            f"{block}: split_len={split_len!r} leaves half {1 if len1 == 0 else 2} empty ({len1} | "
            f"{len2} of the {len1 + len2} channels) and there are no conditions, so one subnet "
            f"sees no input and the block is a learned constant affine map; give each half at "
            f"least one channel (an int 0 < split_len < {len1 + len2}) or pass dims_c.",
            UserWarning,
            stacklevel=4,
        )


def _check_condition_dims(block: str, shape: Tuple[int, ...], dims_c: ShapeList) -> None:
    """Each condition has a channel axis and the input's extents after it, or is a vector
    ``(k,)`` given to an image input, which the block broadcasts over the image's extents."""
    for k, dc in enumerate(dims_c):
        if not dc or (tuple(dc[1:]) != shape[1:] and not (len(dc) == 1 < len(shape))):
            raise InvertibleAssertionError(
                f"{block}: condition {k} has shape {tuple(dc)}, but its dimensions after the "
                f"channel axis must equal the input's {shape[1:]} (input shape {shape}), or it "
                f"must be a vector (k,), which is broadcast over them."
            )


class CouplingBlock(InvertibleModule):
    r"""Base of every coupling block: split, conditions, subnets, clamp and log-det, both ways.

    The input ``x`` of shape ``(B, C, *S)`` is split along the channel axis into ``x1`` (the
    first ``split_len1`` channels) and ``x2`` (the rest). Conditions ``c`` are concatenated after
    the data along the channel axis; a vector condition ``(k,)`` given to an image input is first
    broadcast over ``S``. With a transform ``T`` whose parameters come from subnets, a
    two-sided coupling computes

    .. math::

        y_1 = T(x_1;\ \theta_1([x_2, c])), \qquad y_2 = T(x_2;\ \theta_2([y_1, c]))

    and returns ``cat(y1, y2)`` with :math:`\log|\det J| = \sum \log|\partial y_1/\partial x_1|
    + \sum \log|\partial y_2/\partial x_2|` per sample (sums over all non-batch dims,
    accumulated in float32 at least). The reverse runs the steps backwards with :math:`T^{-1}`
    and returns minus that log-det. A one-sided coupling transforms only ``x2``; a
    condition-only coupling transforms the whole ``x`` with parameters from ``c`` alone. Since
    only channels are split and the subnets see the other half at the same positions, a block
    runs at any extents ``S`` (only the channel count and rank of inputs are checked).

    A coupling declares three things (see :class:`GLOWCouplingBlock` for one in six lines):

    * ``subnets``: ``{name: part}`` in construction order (this fixes ``state_dict`` keys and the
      random draws); part ``1`` or ``2`` is the half the subnet's output parametrises, its input
      is the other half and the conditions; part ``0`` is the whole input, the subnet sees only
      the conditions. The base builds ``name = subnet_constructor(c_in, c_out)`` with ``c_in`` =
      channels of the other half (0 for part 0) + condition channels and ``c_out`` =
      ``params_per_channel`` × channels of the part, and checks every output's channel count.
    * ``params_per_channel``: subnet output channels per channel of the part (default 1).
    * :meth:`transform`: ``(x, params, rev) -> (y, log_jac)`` for one part, where ``params``
      holds the part's subnet outputs in declaration order. ``log_jac`` is the *forward* map's
      log-derivative per element (shape of ``x``; also when ``rev``, at the recovered point),
      a ``(B,)`` log-det, or ``0.0`` for a volume-preserving map; the base sums and signs it.

    Example, a complete new coupling::

        class SoftplusCoupling(CouplingBlock):
            subnets = {"subnet1": 2, "subnet2": 1}   # subnet1 parametrises half 2, ...
            params_per_channel = 2                    # a and b per channel

            def transform(self, x, params, rev):
                a, b = params[0].chunk(2, dim=1)
                scale = torch.nn.functional.softplus(a) + 0.1
                y = (x - b) / scale if rev else x * scale + b
                return y, scale.log()

    Args:
        dims_in: one input shape ``[(C, *S)]``.
        dims_c: condition shapes, each ``(k, *S)`` or, for an image input, a vector ``(k,)``.
        subnet_constructor: ``f(c_in, c_out) -> nn.Module`` mapping ``(B, c_in, *S)`` to
            ``(B, c_out, *S)``, called with two positional ints, once per declared subnet.
        clamp: scale of the clamped log-scale, attribute ``clamp``.
        clamp_activation: ``"ATAN"`` (``0.636 atan``), ``"TANH"``, ``"SIGMOID"``
            (``2 (sigmoid - 0.5)``) or a callable (make it a module-level function so that
            ``torch.save(model)`` can pickle it); attribute ``f_clamp``. The default transform
            uses ``s = clamp * f_clamp(s_raw)``.
        split_len: size of half 1, a fraction in [0, 1] (Python ``round``, half to even) or an
            int in [0, C].

    Raises:
        ValueError: bad ``split_len`` or unknown ``clamp_activation``, more than one input, a
            condition-only coupling without conditions. At call time: the errors of
            :meth:`~invertible.modules.InvertibleModule._checked`, a subnet output with the wrong
            channel count.
        AssertionError: (also a ``ValueError``) a condition whose dims after the channel axis
            differ from the input's and that is not a vector for an image input.
        TypeError: no ``subnet_constructor``, or one that does not return an ``nn.Module``.

    Warns:
        UserWarning: an empty half (``split_len`` 0 or C) without conditions: the block is then
            a learned constant affine map.
    """

    #: Which part each subnet's output parametrises, by subnet name (1 or 2 for that half, 0 for
    #: the whole input).
    subnets: ClassVar[Dict[str, int]] = {}
    #: Subnet output channels per channel of the part a subnet parametrises.
    params_per_channel: int = 1

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = [],  # noqa: B006 - FrEIA's default, never mutated
        subnet_constructor: Optional[SubnetConstructor] = None,
        clamp: float = 2.0,
        clamp_activation: Union[str, ClampActivation] = "ATAN",
        split_len: Union[float, int] = 0.5,
    ) -> None:
        super().__init__(dims_in, dims_c)
        self._setup(clamp, clamp_activation, split_len)
        self._build_subnets(subnet_constructor)

    def _setup(self, clamp: float, clamp_activation: Union[str, ClampActivation],
               split_len: Union[float, int]) -> None:
        """Everything but the subnets, after ``InvertibleModule.__init__``. A coupling that
        creates more state before its subnets (as the random draws of ``AllInOneBlock``) calls
        ``InvertibleModule.__init__``, this, its own setup, then :meth:`_build_subnets`."""
        block = type(self).__name__
        self.channels = channel_input_shape(block, self.dims_in)[0]
        self.ndims = len(self.dims_in[0])
        self.split_len1, self.split_len2 = split_lengths(block, self.channels, split_len)
        _check_condition_dims(block, self.dims_in[0], self.dims_c)
        self.conditional = len(self.dims_c) > 0
        self.condition_length = sum(dc[0] for dc in self.dims_c)
        if not self.conditional:
            _warn_empty_half(block, split_len, self.split_len1, self.split_len2)
        self.clamp = clamp
        self.f_clamp = resolve_clamp_activation(block, clamp_activation)
        self._clamp_takes_scale = self.f_clamp in CLAMP_ACTIVATIONS.values()  # built-ins do
        self._broadcast = self.ndims > 1 and any(len(dc) == 1 for dc in self.dims_c)

    def _build_subnets(self, subnet_constructor: Optional[SubnetConstructor]) -> None:
        """Build the declared ``subnets`` in their order; plan the steps of :meth:`_couple`."""
        block = type(self).__name__
        parts = set(self.subnets.values())
        if not ((parts and parts <= {1, 2}) or parts == {0}):
            raise TypeError(
                f"{block}.subnets must map subnet names to the part each one parametrises: 1 or "
                f"2 (a half) or, alone, 0 (the whole input); got {self.subnets!r}."
            )
        if parts == {0} and not self.conditional:
            raise ValueError(
                f"{block} must have a condition: its subnet sees only the conditions (pass "
                f"dims_c=[(channels, ...)])."
            )
        widths = (self.channels, self.split_len1, self.split_len2)  # of part 0, 1, 2
        inputs = (0, self.split_len2, self.split_len1)  # data channels each part's subnets see
        names: Dict[int, List[str]] = {}
        for name, part in self.subnets.items():
            width = self.params_per_channel * widths[part]
            setattr(self, name, built_subnet(block, subnet_constructor,
                                             inputs[part] + self.condition_length, width, name))
            names.setdefault(part, []).append(name)
        # Half 1 before half 2, as FrEIA; parts index [x1, x2] (or [x] for part 0).
        self._steps: Tuple[_Step, ...] = tuple(
            (max(part - 1, 0), (-1, 1, 0)[part], tuple(group),
             self.params_per_channel * widths[part]) for part, group in sorted(names.items())
        )
        self._whole = 0 in names

    def forward(
        self,
        x: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = [],
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Run the coupling (its inverse when ``rev``); see the class docstring.

        Args:
            x: a list or tuple holding the one input tensor ``(B, C, *S)``.
            c: one tensor per entry of ``dims_c`` (a single tensor is accepted as ``[c]``).
            rev: run the inverse.
            jac: ignored; the ``(B,)`` log-det is always computed.
        """
        xs, cs = self._checked(x, c, rev)
        y, log_det = self._couple(xs[0], cs, rev)
        return (y,), log_det if log_det.dtype == y.dtype else log_det.to(y.dtype)

    def _couple(self, x: Tensor, cs: List[Tensor], rev: bool) -> Tuple[Tensor, Tensor]:
        """The planned steps on checked tensors: the output and the ``(B,)`` log-det, the latter
        in the accumulation dtype (float32 for 16-bit data)."""
        if self._broadcast:
            cs = [t if t.dim() == x.dim() else t.reshape(t.shape + (1,) * (x.dim() - 2)).expand(
                -1, -1, *x.shape[2:]) for t in cs]
        parts = [x] if self._whole else list(x.split_with_sizes((self.split_len1,
                                                                 self.split_len2), 1))
        check = not torch.jit.is_tracing()  # traced sizes are tensors, not ints
        log_det: Optional[Tensor] = None
        for target, source, names, width in self._steps[::-1] if rev else self._steps:
            if source < 0:
                u = cs[0] if len(cs) == 1 else torch.cat(cs, 1)
            else:
                u = torch.cat([parts[source], *cs], 1) if cs else parts[source]
            params = []
            for name in names:
                a = getattr(self, name)(u)
                if check and (a.dim() < 2 or a.shape[1] != width):
                    self._wrong_subnet_output(name, a, u, width)
                params.append(a)
            parts[target], log_jac = self.transform(parts[target], tuple(params), rev)
            if isinstance(log_jac, Tensor):
                if log_jac.dim() > 1:
                    log_jac = log_jac.sum(tuple(range(1, log_jac.dim())),
                                          dtype=acc_dtype(log_jac.dtype))
                log_det = log_jac if log_det is None else log_det + log_jac
        y = parts[0] if self._whole else torch.cat(parts, 1)
        if log_det is None:
            return y, y.new_zeros(y.shape[0])
        return y, -log_det if rev else log_det

    def _wrong_subnet_output(self, name: str, a: Tensor, u: Tensor, width: int) -> None:
        """Raise the ``ValueError`` for subnet ``name``'s output ``a`` (not ``width`` channels)."""
        got = f"{a.shape[1]} channels" if a.dim() >= 2 else f"a {a.dim()}-dim tensor"
        raise ValueError(
            f"{type(self).__name__}: subnet {name!r} returned {got} (output shape "
            f"{tuple(a.shape)}), expected {width} channels (input had {u.shape[1]})."
        )

    def transform(self, x: Tensor, params: Params, rev: bool) -> Tuple[Tensor, LogJacobian]:
        r"""Transform one part ``x`` with its subnet outputs ``params`` (inverse when ``rev``).

        The default is Glow's: one subnet output ``[s_raw, t]`` (log-scale first),
        :math:`y = x \odot e^{s} + t` with :math:`s = \mathrm{clamp} \cdot f_\mathrm{clamp}(s_raw)`.

        Returns:
            ``(y, log_jac)``, ``log_jac`` as described in the class docstring.
        """
        n = x.shape[1]
        s_raw, t = params[0].split_with_sizes((n, n), 1)  # cheaper to call than chunk
        return affine(x, self.clamped(s_raw), t, rev)

    def clamped(self, s_raw: Tensor) -> Tensor:
        """The clamped log-scale ``clamp * f_clamp(s_raw)`` (the built-in clamps multiply by
        ``clamp`` themselves, one multiplication fewer)."""
        if self._clamp_takes_scale:
            return self.f_clamp(s_raw, self.clamp)  # type: ignore[call-arg]
        return self.clamp * self.f_clamp(s_raw)

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The output shape equals the input shape (exactly one input)."""
        return same_shape(type(self).__name__, input_dims)
