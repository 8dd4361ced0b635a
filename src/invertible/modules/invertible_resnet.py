"""Data-initialised per-channel normalisation (`ActNorm`) and the i-ResNet block (`IResNetLayer`).

References: Kingma and Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
NeurIPS 2018 (ActNorm); Behrmann, Grathwohl, Chen, Duvenaud and Jacobsen, "Invertible Residual
Networks", ICML 2019 (i-ResNet).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .._errors import InvertibleAssertionError
from ._common import (
    Dims,
    Outputs,
    ShapeList,
    Tensors,
    channel_input_shape,
    check_single_input,
    is_tracing,
    n_elements,
    require_no_conditions,
    zero_log_det,
)
from ._elementwise import (
    actnorm_map,
    channel_mean_std,
    channel_param_shape,
    convert_old_actnorm_keys,
    distributed_channel_mean_std,
    distributed_world_size,
)
from ._iresnet import (
    LAYER_KINDS,
    check_iresnet_args,
    fixed_point_inverse,
    interleave_elu,
    layer_norm_bounds,
    power_iteration_norm,
    power_series_log_det,
    weights_key,
)
from .base import InvertibleModule

__all__ = ["ActNorm", "IResNetLayer", "fixed_point_inverse", "power_iteration_norm",
           "power_series_log_det"]


# --- ActNorm -----------------------------------------------------------------------------------


class ActNorm(InvertibleModule):
    r"""Per-channel affine normalisation, initialised from the first batch it sees.

    Forward :math:`z = (x - \mu) / e^{s}`, reverse :math:`x = e^{s} z + \mu`, with ``log_scale``
    s and ``loc`` μ of shape ``(1, C, 1, ...)``. Log-det :math:`\mp n_{pix}\sum_c s_c` (a
    ``(B,)`` tensor), :math:`n_{pix}` the number of positions per channel of the call's input:
    the parameters are per channel, so the block runs at any size. Until ``is_initialized`` is
    set, the first call in *either* direction sets μ and :math:`e^s` to the per-channel mean and
    unbiased std of its input (over batch and spatial axes), so that output has zero mean and
    unit std per channel. A loaded
    ``is_initialized=True`` is never overridden; PyPI-0.2 ``scale``/``bias`` keys are converted
    when loading, also inside containers.

    The init flag is a buffer; ``forward`` reads it once (``bool``) until it has seen it set,
    then only a plain Python attribute, so ``torch.compile`` guards on that attribute and
    tracing/export see no data-dependent branch after the first call. To re-initialise, call
    :meth:`initialize` (or load a state_dict); editing the buffer in place is not noticed.

    Distributed training: when ``torch.distributed`` is initialised with more than one rank
    (and ``sync_distributed_init`` is true, the default), the initialisation is a collective:
    the per-channel count, sum and sum of squared deviations are all-reduced over
    ``process_group`` (``None``: the default group), so every rank gets the mean and std of the
    union of all ranks' first batches (ranks may hold different batch sizes), and identical
    parameters. Every rank must therefore make its first call together, as DDP does. Loading a
    state_dict whose ``is_initialized`` is true, or one with ``log_scale``/``loc`` but no
    ``is_initialized`` key (``strict=False``), never re-initialises; a state saved *before* any
    data was seen (flag false, placeholder values) still initialises on the next call, as in
    FrEIA.

    Args:
        dims_in: one input shape, channels first.
        dims_c: must be empty (ActNorm is unconditional).
        init_data: a batch to initialise from right away (see :meth:`initialize`).
    """

    #: all-reduce the initial statistics across ``torch.distributed`` ranks (see above)
    sync_distributed_init: bool = True
    #: the process group of that all-reduce (the default group when ``None``)
    process_group: Optional[Any] = None
    is_initialized: Tensor

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None,
                 init_data: Optional[Tensor] = None) -> None:
        super().__init__(dims_in, dims_c)
        self.output_dims(self.dims_in)  # several inputs: an AssertionError, as in FrEIA
        require_no_conditions("ActNorm", self.dims_c)
        shape = channel_param_shape(channel_input_shape("ActNorm", self.dims_in))
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
        """Per-channel mean and std of ``batch``, all-reduced over ranks when distributed."""
        if self.sync_distributed_init and distributed_world_size(self.process_group) > 1:
            return distributed_channel_mean_std(batch, self.process_group)
        if batch.shape[0] * n_elements(batch.shape[2:]) < 2:
            raise ValueError(
                f"ActNorm cannot initialise from a batch of shape {tuple(batch.shape)}: it holds "
                "one value per channel (batch x spatial size 1), so the std is undefined. "
                "Initialise with a larger batch (init_data=... or initialize(batch))."
            )
        return channel_mean_std(batch)

    def _check_init_batch(self, batch: Tensor) -> None:
        """Raise ``ValueError`` unless ``batch`` has this ActNorm's rank and channels."""
        if batch.dim() != self.log_scale.dim() or batch.shape[1] != self.log_scale.shape[1]:
            raise ValueError(
                f"ActNorm cannot initialise from a batch of shape {tuple(batch.shape)}: expected "
                f"(batch, {', '.join(str(d) for d in self.dims_in[0])})."
            )

    def _initialize_once(self, x: Tensor, rev: bool) -> None:
        """Initialise from ``x`` unless the flag is set (the one place forward reads the flag).

        As in FrEIA, the first batch initialises in whichever direction it comes, so that
        FrEIA's scripts keep their numbers; a reverse pass (latents, not data) still does, but
        warns.
        """
        if self._init_seen:
            return
        if not bool(self.is_initialized):
            if rev:
                warnings.warn(
                    "ActNorm: initialising from the first batch it sees, which comes through a "
                    "reverse pass (latents, not data), as FrEIA does. Run one forward pass on "
                    "data first, or pass init_data=... / call initialize(batch).",
                    UserWarning,
                    stacklevel=3,
                )
            self.initialize(x)
        self._init_seen = True

    def forward(
        self, x: Tensors, c: Optional[Tensors] = None, rev: bool = False, jac: bool = True
    ) -> Outputs:
        """Normalise (forward) or de-normalise (reverse); initialise first if needed."""
        (x_in,), _ = self._checked(x, c, rev)
        self._initialize_once(x_in, rev)
        n_pix = math.prod(x_in.shape[2:])  # no int(): a traced size stays a traced value
        out, log_det = actnorm_map(x_in, self.log_scale, self.loc, n_pix, rev)
        return (out,), log_det

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged (``AssertionError``/``ValueError`` for several inputs)."""
        check_single_input("ActNorm", input_dims, InvertibleAssertionError)
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
        """Convert old keys under ``prefix`` (nested loads), load; re-read the flag next call.

        Loaded ``log_scale``/``loc`` without an ``is_initialized`` key count as initialised.
        """
        convert_old_actnorm_keys(state_dict, prefix, self.log_scale.shape, True)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        loaded = prefix + "log_scale" in state_dict or prefix + "loc" in state_dict
        if loaded and prefix + "is_initialized" not in state_dict:
            with torch.no_grad():
                self.is_initialized.fill_(True)
        self._init_seen = False


# --- IResNetLayer ------------------------------------------------------------------------------


class IResNetLayer(InvertibleModule):
    r"""Invertible residual block :math:`y = x + g(x)` with a contractive residual g.

    g alternates ``nn.Linear`` (vectors) or 3x3 ``nn.Conv2d`` (images ``(C, H, W)``) layers
    ``C -> I -> (I -> I) x n_internal_layers -> C`` with ELUs. Call :meth:`lipschitz_correction`
    after each optimiser step to keep every layer's spectral norm below ``spectral_norm_max``;
    then :math:`\mathrm{Lip}(g) < 1` and the reverse, a fixed-point iteration
    :math:`x \leftarrow y - g(x)`, converges. The reverse warns when the product of the layers'
    spectral norms (a bound of Lip(g)) is at least 1. The bounds (an SVD or FFT per layer) are
    recomputed only when a weight changed since the last check, judged by the weights' storage
    and autograd version counters (plain ints): optimiser steps, :meth:`lipschitz_correction`,
    ``load_state_dict`` and ``.to()`` are noticed; in-place edits through ``weight.data`` are
    not (call :meth:`lipschitz_correction` after them, or set ``_norm_cache = None``). The
    convolutional form runs at any image size; the norms are estimated at the built size.

    Log-det :math:`\ln\det(I + J_g) = \sum_{k=1}^{n} (-1)^{k+1} tr(J_g^k)/k`, with
    ``jacobian_iterations`` terms and Hutchinson traces (``hutchinson_samples`` Rademacher
    probes drawn from torch's global RNG per call): a stochastic, unbiased-in-the-limit
    estimate, not the exact value. It runs under ``enable_grad`` on a detached copy of the input
    (so it works under ``no_grad`` and never touches the caller's tensors) and is
    differentiable when grad mode is on; the reverse evaluates it at the reconstructed x and
    negates it. ``jac=False`` skips it and returns zeros. Conditions declared in ``dims_c`` are
    checked and otherwise ignored.

    ``exact_inverse`` is ``False``: the fixed-point inverse is approximate and the log-det a
    fresh stochastic estimate on every call, so a memory-efficient container cannot recompute
    the input from the output exactly.

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

    exact_inverse = False

    def __init__(self, dims_in: Dims, dims_c: Optional[Dims] = None,
                 internal_size: Optional[int] = None, n_internal_layers: int = 1,
                 jacobian_iterations: int = 20, hutchinson_samples: int = 1,
                 fixed_point_iterations: int = 50, lipschitz_iterations: int = 10,
                 lipschitz_batchsize: int = 10, spectral_norm_max: float = 0.8) -> None:
        super().__init__(dims_in, dims_c)
        check_single_input("IResNetLayer", self.dims_in)
        self.input_shape = self.dims_in[0]  # FrEIA overwrote dims_in with this bare tuple
        check_iresnet_args(self.input_shape, hutchinson_samples, spectral_norm_max)
        channels = self.input_shape[0]
        self.internal_size = 2 * channels if internal_size is None else int(internal_size)
        self.n_internal_layers = n_internal_layers
        self.jacobian_iterations = jacobian_iterations
        self.hutchinson_samples = hutchinson_samples
        self.fixed_point_iterations = fixed_point_iterations
        self.lipschitz_iterations = lipschitz_iterations
        self.lipschitz_batchsize = lipschitz_batchsize
        self.spectral_norm_max = spectral_norm_max
        make = LAYER_KINDS[len(self.input_shape)][0]
        sizes = [channels] + [self.internal_size] * (n_internal_layers + 1) + [channels]
        self.layers = [make(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        self.residual = nn.Sequential(*interleave_elu(self.layers))

    @torch.no_grad()
    def lipschitz_correction(self) -> None:
        """Scale each layer's weight so its estimated spectral norm is <= ``spectral_norm_max``.

        Power iteration from ``randn(lipschitz_batchsize, in, *S)`` (torch's global RNG, layer
        by layer); convolutions are probed without padding, as in FrEIA.
        """
        _, apply, adjoint, _ = LAYER_KINDS[len(self.input_shape)]
        for layer in self.layers:
            sigma = power_iteration_norm(
                layer.weight, apply, adjoint, self.input_shape[1:],
                self.lipschitz_iterations, self.lipschitz_batchsize,
            )
            layer.weight.mul_(torch.clamp(self.spectral_norm_max / sigma, max=1.0))

    def forward(
        self, x: Tensors, c: Optional[Tensors] = (), rev: bool = False, jac: bool = True
    ) -> Outputs:
        """``x + g(x)``, or its fixed-point inverse; the log-det estimate if ``jac``."""
        (x_in,), _ = self._checked(x, c, rev)
        if rev:
            self._warn_if_not_contractive()
            out = fixed_point_inverse(self.residual, x_in, self.fixed_point_iterations)
            log_det = -self._log_det(out) if jac else zero_log_det(out)
        else:
            out = x_in + self.residual(x_in)
            log_det = self._log_det(x_in) if jac else zero_log_det(out)
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
        if is_tracing():
            return
        norms = self._layer_norms()
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

    def _layer_norms(self) -> List[float]:
        """The layers' operator-norm bounds, recomputed only when a weight has changed."""
        key = weights_key(self.layers)
        cache = getattr(self, "_norm_cache", None)
        if key is None or cache is None or cache[0] != key:
            bound = LAYER_KINDS[len(self.input_shape)][3]
            cache = (key, layer_norm_bounds(self.layers, bound, self.input_shape[1:]))
            self._norm_cache = cache
        return cache[1]

    def output_dims(self, input_dims: ShapeList) -> ShapeList:
        """The input shape, unchanged."""
        return input_dims
