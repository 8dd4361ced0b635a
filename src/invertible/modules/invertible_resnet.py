"""Data-initialised per-channel normalisation (`ActNorm`) and the i-ResNet block (`IResNetLayer`).

References: Kingma and Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
NeurIPS 2018 (ActNorm); Behrmann, Grathwohl, Chen, Duvenaud and Jacobsen, "Invertible Residual
Networks", ICML 2019 (i-ResNet).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._errors import InvertibleAssertionError
from ._common import check_single_input, n_elements, sum_nonbatch, zero_log_det
from ._elementwise import (
    actnorm_map,
    channel_mean_std,
    channel_param_shape,
    convert_old_actnorm_keys,
)
from .base import InvertibleModule

__all__ = [
    "ActNorm",
    "IResNetLayer",
    "fixed_point_inverse",
    "power_iteration_norm",
    "power_series_log_det",
]

Shape = Tuple[int, ...]
ShapeList = List[Shape]
Dims = Iterable[Iterable[int]]
WeightOp = Callable[[Tensor, Tensor], Tensor]


# --- ActNorm -----------------------------------------------------------------------------------


class ActNorm(InvertibleModule):
    r"""Per-channel affine normalisation, initialised from the first batch it sees.

    Forward :math:`z = (x - \mu) / e^{s}`, reverse :math:`x = e^{s} z + \mu`, with ``log_scale``
    s and ``loc`` μ of shape ``(1, C, 1, ...)``. Log-det :math:`\mp n_{pix}\sum_c s_c` (a
    ``(B,)`` tensor). Until ``is_initialized`` is set, the first call in *either* direction sets
    μ and :math:`e^s` to the per-channel mean and unbiased std of its input (over batch and
    spatial axes), so that output has zero mean and unit std per channel. A loaded
    ``is_initialized=True`` is never overridden; PyPI-0.2 ``scale``/``bias`` keys are converted
    when loading, also inside containers.

    The init flag is a buffer; ``forward`` reads it once (``bool``) until it has seen it set,
    then only a plain Python attribute, so ``torch.compile`` guards on that attribute and
    tracing/export see no data-dependent branch after the first call. To re-initialise, call
    :meth:`initialize` (or load a state_dict); editing the buffer in place is not noticed.

    Args:
        dims_in: one input shape, channels first.
        dims_c: must be empty (ActNorm is unconditional).
        init_data: a batch to initialise from right away (see :meth:`initialize`).
    """

    def __init__(
        self, dims_in: Dims, dims_c: Optional[Dims] = None, init_data: Optional[Tensor] = None
    ) -> None:
        super().__init__(dims_in, dims_c)
        self.output_dims(self.dims_in)
        if self.dims_c:
            raise ValueError(f"ActNorm is unconditional, got dims_c={self.dims_c}.")
        if len(self.dims_in[0]) == 0:
            raise ValueError(f"ActNorm needs an input with a channel axis, got {self.dims_in[0]}.")
        shape = channel_param_shape(self.dims_in[0])
        self.n_pix = n_elements(self.dims_in[0][1:])
        self.register_buffer("is_initialized", torch.tensor(False))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.loc = nn.Parameter(torch.zeros(shape))
        self._init_seen = False
        if init_data is not None:
            self.initialize(init_data)

    @property
    def scale(self) -> Tensor:
        """``exp(log_scale)``."""
        return torch.exp(self.log_scale)

    def initialize(self, batch: Tensor) -> None:
        """Set ``loc``/``log_scale`` from ``batch``'s per-channel mean and std; mark initialised.

        Raises:
            ValueError: ``batch`` has the wrong rank or channels, has one value per channel
                (batch x spatial size 1), or a channel with zero or non-finite std.
        """
        self._check_init_batch(batch)
        with torch.no_grad():
            mean, std = self._init_statistics(batch.detach())
            bad = torch.isclose(std, torch.zeros_like(std)) | ~torch.isfinite(std)
            if bool(bad.any()):
                raise ValueError(
                    "Failed to initialize ActNorm: One or more channels have zero standard "
                    f"deviation (or a non-finite one): std = {std.flatten().tolist()}."
                )
            self.log_scale.copy_(torch.log(std))
            self.loc.copy_(mean)
            self.is_initialized.fill_(True)
        self._init_seen = True

    def _init_statistics(self, batch: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-channel mean and std of ``batch`` (the one hook a distributed all-reduce wraps)."""
        return channel_mean_std(batch)

    def _check_init_batch(self, batch: Tensor) -> None:
        """Raise ``ValueError`` unless ``batch`` can initialise this ActNorm."""
        if batch.dim() != self.log_scale.dim() or batch.shape[1] != self.log_scale.shape[1]:
            raise ValueError(
                f"ActNorm cannot initialise from a batch of shape {tuple(batch.shape)}: expected "
                f"(batch, {', '.join(str(d) for d in self.dims_in[0])})."
            )
        if batch.shape[0] * n_elements(batch.shape[2:]) < 2:
            raise ValueError(
                f"ActNorm cannot initialise from a batch of shape {tuple(batch.shape)}: it holds "
                "one value per channel (batch x spatial size 1), so the std is undefined. "
                "Initialise with a larger batch (init_data=... or initialize(batch))."
            )

    def _initialize_once(self, x: Tensor) -> None:
        """Initialise from ``x`` unless the flag is set (the one place forward reads the flag)."""
        if self._init_seen:
            return
        if not bool(self.is_initialized):
            self.initialize(x)
        self._init_seen = True

    def forward(
        self,
        x: Sequence[Tensor],
        c: Optional[Sequence[Tensor]] = None,
        rev: bool = False,
        jac: bool = True,
    ) -> Tuple[Tuple[Tensor], Tensor]:
        """Normalise (forward) or de-normalise (reverse); initialise first if needed."""
        if c is not None and len(c) > 0:
            raise ValueError(f"ActNorm is unconditional, but got {len(c)} condition tensor(s).")
        self._initialize_once(x[0])
        out, log_det = actnorm_map(x[0], self.log_scale, self.loc, self.n_pix, rev)
        return (out,), log_det

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged (``AssertionError``/``ValueError`` for several inputs)."""
        if len(input_dims) != 1:
            raise InvertibleAssertionError(
                f"ActNorm can only use 1 input, got {len(input_dims)} input shapes: {input_dims}."
            )
        return input_dims

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load, converting PyPI-0.2 ``scale``/``bias`` keys (warns only when ``strict``)."""
        converted: Dict[str, Any] = OrderedDict(state_dict)
        metadata = getattr(state_dict, "_metadata", None)
        if metadata is not None:
            converted._metadata = metadata  # type: ignore[attr-defined]
        convert_old_actnorm_keys(converted, "", self.log_scale.shape, strict)
        return super().load_state_dict(converted, strict=strict, assign=assign)

    def _load_from_state_dict(
        self, state_dict: Dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Convert old keys under ``prefix`` (nested loads), load; re-read the flag next call."""
        convert_old_actnorm_keys(state_dict, prefix, self.log_scale.shape, True)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._init_seen = False


# --- i-ResNet kernels --------------------------------------------------------------------------


def fixed_point_inverse(residual: nn.Module, y: Tensor, iterations: int) -> Tensor:
    """Solve ``x + g(x) = y`` by ``x <- y - g(x)`` from ``x = y`` without gradients, then take one
    step with gradients: ``y - g(x.detach())`` (FrEIA's recipe; exact when g is contractive)."""
    with torch.no_grad():
        x = y
        for _ in range(iterations):
            x = y - residual(x)
    return y - residual(x.detach())


def power_series_log_det(
    residual: nn.Module, x: Tensor, terms: int, samples: int, create_graph: bool
) -> Tensor:
    r"""Hutchinson estimate of :math:`\ln\det(I + J_g(x)) = \sum_{k\ge1} (-1)^{k+1} tr(J_g^k)/k`.

    The series is truncated after ``terms`` terms; each trace is
    :math:`\mathbb{E}[v^\top J_g^k v]` over Rademacher ``v = sign(randn_like(x))`` (one draw per
    sample, in order), averaged over ``samples``. The samples are evaluated as one batch.
    ``x`` must require grad. Returns ``(B,)``.
    """
    noise = torch.stack([torch.sign(torch.randn_like(x)) for _ in range(samples)])
    xs = x.unsqueeze(0).expand_as(noise).reshape(-1, *x.shape[1:])
    v0 = noise.reshape_as(xs)
    gx = residual(xs)
    v, total = v0, xs.new_zeros(xs.shape[0])
    for k in range(1, terms + 1):
        v = torch.autograd.grad(gx, xs, v, retain_graph=True, create_graph=create_graph)[0]
        total = total + ((-1) ** (k + 1) / k) * sum_nonbatch(v * v0)
    return total.reshape(samples, -1).mean(dim=0)


def _per_sample_norm(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).norm(dim=1)


def power_iteration_norm(
    weight: Tensor, apply: WeightOp, adjoint: WeightOp, spatial: Shape, iterations: int,
    batch: int,
) -> Tensor:
    """Spectral-norm estimate of ``apply(., weight)`` from ``batch`` random starts (0-d tensor).

    ``iterations`` steps ``x <- adjoint(apply(x))`` (renormalised per sample, which changes
    nothing but the rounding), then the largest ``|W x| / |x|`` over the batch.
    """
    x = torch.randn(batch, weight.shape[1], *spatial, dtype=weight.dtype, device=weight.device)
    tiny = torch.finfo(weight.dtype).tiny
    view = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(iterations):
        x = adjoint(apply(x, weight), weight)
        x = x / _per_sample_norm(x).clamp_min(tiny).reshape(view)
    return (_per_sample_norm(apply(x, weight)) / _per_sample_norm(x).clamp_min(tiny)).max()


def _dense_adjoint(y: Tensor, weight: Tensor) -> Tensor:
    return F.linear(y, weight.t())


def _dense_norm_bound(weight: Tensor, spatial: Shape) -> Tensor:
    """Exact spectral norm of a dense layer's weight."""
    return torch.linalg.matrix_norm(weight, ord=2)


def _conv_norm_bound(weight: Tensor, spatial: Shape) -> Tensor:
    """Upper bound of a padded stride-1 convolution's operator norm on ``spatial`` inputs.

    The padded convolution is a crop of a circular one on the padded grid, whose norm is the
    largest singular value of the kernel's 2-D DFT over all frequencies.
    """
    grid = [s + k - 1 for s, k in zip(spatial, weight.shape[2:])]
    freq = torch.fft.fft2(weight, s=grid)
    return torch.linalg.matrix_norm(freq.permute(2, 3, 0, 1), ord=2).max()


def _dense_layer(c_in: int, c_out: int) -> nn.Module:
    return nn.Linear(c_in, c_out)


def _conv_layer(c_in: int, c_out: int) -> nn.Module:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


# input rank -> (layer constructor, W x, W^T y (unpadded for convolutions), norm bound)
_KINDS: Dict[int, Tuple[Callable[[int, int], nn.Module], WeightOp, WeightOp, Callable]] = {
    1: (_dense_layer, F.linear, _dense_adjoint, _dense_norm_bound),
    3: (_conv_layer, F.conv2d, F.conv_transpose2d, _conv_norm_bound),
}


def _check_iresnet_args(shape: Shape, hutchinson_samples: int, spectral_norm_max: float) -> None:
    """IResNetLayer's argument checks (``AssertionError`` + ``ValueError`` where FrEIA asserts)."""
    if len(shape) not in _KINDS:
        raise ValueError(f"IResNetLayer works on vectors (C,) or images (C, H, W), got {shape}.")
    if not 0 < spectral_norm_max <= 1:
        raise InvertibleAssertionError(
            f"IResNetLayer: spectral_norm_max must be in (0, 1], got {spectral_norm_max}."
        )
    if hutchinson_samples < 1:
        raise ValueError(f"IResNetLayer: hutchinson_samples must be >= 1: {hutchinson_samples}.")


def _interleave_elu(layers: List[nn.Module]) -> List[nn.Module]:
    """``[l0, ELU, l1, ELU, ..., ln]``."""
    modules: List[nn.Module] = []
    for layer in layers:
        modules += [layer, nn.ELU()]
    return modules[:-1]


def _tracing() -> bool:
    """Whether a tracer, compiler or exporter is running (skip value-dependent diagnostics)."""
    compiling = getattr(torch.compiler, "is_compiling", None)
    return torch.jit.is_tracing() or bool(compiling is not None and compiling())


# --- IResNetLayer ------------------------------------------------------------------------------


class IResNetLayer(InvertibleModule):
    r"""Invertible residual block :math:`y = x + g(x)` with a contractive residual g.

    g alternates ``nn.Linear`` (vectors) or 3x3 ``nn.Conv2d`` (images ``(C, H, W)``) layers
    ``C -> I -> (I -> I) x n_internal_layers -> C`` with ELUs. Call :meth:`lipschitz_correction`
    after each optimiser step to keep every layer's spectral norm below ``spectral_norm_max``;
    then :math:`\mathrm{Lip}(g) < 1` and the reverse, a fixed-point iteration
    :math:`x \leftarrow y - g(x)`, converges. The reverse warns when the product of the layers'
    spectral norms (a bound of Lip(g)) is at least 1.

    Log-det :math:`\ln\det(I + J_g) = \sum_{k=1}^{n} (-1)^{k+1} tr(J_g^k)/k`, with
    ``jacobian_iterations`` terms and Hutchinson traces (``hutchinson_samples`` Rademacher
    probes drawn from torch's global RNG per call): a stochastic, unbiased-in-the-limit
    estimate, not the exact value. It runs under ``enable_grad`` on a detached copy of the input
    (so it works under ``no_grad`` and never touches the caller's tensors) and is
    differentiable when grad mode is on; the reverse evaluates it at the reconstructed x and
    negates it. ``jac=False`` skips it and returns zeros. Conditions are accepted and ignored.

    References: Behrmann et al., "Invertible Residual Networks", ICML 2019.

    Args:
        dims_in: one input shape, ``(C,)`` or ``(C, H, W)``.
        dims_c: condition shapes (ignored).
        internal_size: hidden width I (default ``2 C``).
        n_internal_layers: number of hidden ``I -> I`` layers.
        jacobian_iterations: terms of the log-det power series.
        hutchinson_samples: trace probes per call.
        fixed_point_iterations: iterations of the reverse.
        lipschitz_iterations: power iterations in :meth:`lipschitz_correction`.
        lipschitz_batchsize: random starts of those power iterations.
        spectral_norm_max: target bound of each layer's spectral norm, in (0, 1].
    """

    def __init__(
        self,
        dims_in: Dims,
        dims_c: Optional[Dims] = None,
        internal_size: Optional[int] = None,
        n_internal_layers: int = 1,
        jacobian_iterations: int = 20,
        hutchinson_samples: int = 1,
        fixed_point_iterations: int = 50,
        lipschitz_iterations: int = 10,
        lipschitz_batchsize: int = 10,
        spectral_norm_max: float = 0.8,
    ) -> None:
        super().__init__(dims_in, dims_c)
        check_single_input("IResNetLayer", self.dims_in)
        self.input_shape = self.dims_in[0]  # FrEIA overwrote dims_in with this (D21)
        _check_iresnet_args(self.input_shape, hutchinson_samples, spectral_norm_max)
        channels = self.input_shape[0]
        self.internal_size = 2 * channels if internal_size is None else int(internal_size)
        self.n_internal_layers = n_internal_layers
        self.jacobian_iterations = jacobian_iterations
        self.hutchinson_samples = hutchinson_samples
        self.fixed_point_iterations = fixed_point_iterations
        self.lipschitz_iterations = lipschitz_iterations
        self.lipschitz_batchsize = lipschitz_batchsize
        self.spectral_norm_max = spectral_norm_max
        make = _KINDS[len(self.input_shape)][0]
        sizes = [channels] + [self.internal_size] * (n_internal_layers + 1) + [channels]
        self.layers = [make(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.residual = nn.Sequential(*_interleave_elu(self.layers))

    @torch.no_grad()
    def lipschitz_correction(self) -> None:
        """Scale each layer's weight so its estimated spectral norm is <= ``spectral_norm_max``.

        Power iteration from ``randn(lipschitz_batchsize, in, *S)`` (torch's global RNG, layer
        by layer); convolutions are probed without padding, as in FrEIA.
        """
        _, apply, adjoint, _ = _KINDS[len(self.input_shape)]
        for layer in self.layers:
            sigma = power_iteration_norm(
                layer.weight, apply, adjoint, self.input_shape[1:],
                self.lipschitz_iterations, self.lipschitz_batchsize,
            )
            layer.weight.mul_(torch.clamp(self.spectral_norm_max / sigma, max=1.0))

    def forward(
        self, x: Sequence[Tensor], c: Sequence[Tensor] = (), rev: bool = False, jac: bool = True
    ) -> Tuple[List[Tensor], Tensor]:
        """``x + g(x)``, or its fixed-point inverse; the log-det estimate if ``jac``."""
        if rev:
            self._warn_if_not_contractive()
            out = fixed_point_inverse(self.residual, x[0], self.fixed_point_iterations)
            log_det = -self._log_det(out) if jac else zero_log_det(out)
        else:
            out = x[0] + self.residual(x[0])
            log_det = self._log_det(x[0]) if jac else zero_log_det(out)
        return [out], log_det

    def _log_det(self, x: Tensor) -> Tensor:
        """The power-series estimate at ``x``, differentiable only where grad is wanted."""
        wants_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.residual.parameters())
        )
        if torch.is_inference_mode_enabled():  # autograd needs a normal tensor: leave it briefly
            with torch.inference_mode(False):
                return self._estimate(x.clone(), wants_grad=False)
        return self._estimate(x, wants_grad)

    def _estimate(self, x: Tensor, wants_grad: bool) -> Tensor:
        """Run the estimator under ``enable_grad`` on ``x`` or on a detached copy of it."""
        with torch.enable_grad():
            probe = x if wants_grad and x.requires_grad else x.detach().requires_grad_(True)
            log_det = power_series_log_det(
                self.residual, probe, self.jacobian_iterations, self.hutchinson_samples,
                create_graph=wants_grad,
            )
        return log_det if wants_grad else log_det.detach()

    def _warn_if_not_contractive(self) -> None:
        """Warn when Lip(g) <= prod of spectral norms is not below 1 (skipped when tracing)."""
        if _tracing():
            return
        with torch.no_grad():
            bound, spatial = _KINDS[len(self.input_shape)][3], self.input_shape[1:]
            norms = [float(bound(_svd_ready(m.weight), spatial)) for m in self.layers]
        if math.prod(norms) >= 1.0:
            warnings.warn(
                f"IResNetLayer: the product of the residual layers' spectral norms "
                f"({', '.join(f'{n:.3g}' for n in norms)}) is {math.prod(norms):.3g} >= 1, so g "
                "may not be a contraction and the fixed-point inverse may not converge. Call "
                "lipschitz_correction() after each optimiser step; on small images also lower "
                "spectral_norm_max, as the correction probes convolutions without padding "
                "(FrEIA's recipe), which underestimates their norms there.",
                UserWarning,
                stacklevel=3,
            )

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return input_dims


def _svd_ready(weight: Tensor) -> Tensor:
    """``weight`` detached, in at least float32 (SVD and FFT need it)."""
    weight = weight.detach()
    return weight.float() if weight.element_size() < 4 else weight
