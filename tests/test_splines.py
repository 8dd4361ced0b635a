"""Focused tests of the spline blocks: kernels, reference values, layout, state, RNG, errors."""

from __future__ import annotations

import math
import pickle
import warnings
from typing import Any, Dict, List, Tuple

import pytest
import torch
from torch import Tensor, nn

from invertible._errors import InvertibleAssertionError
from invertible.modules._affine import identity
from invertible.modules._spline_kernels import MAX_BIN_RATIO, constrain_fixed_square, soft_bound
from invertible.modules.splines import (
    BinnedSpline,
    BinnedSplineBase,
    ElementwiseRationalQuadraticSpline,
    LinearSpline,
    RationalQuadraticSpline,
    linear_spline,
    rational_quadratic_spline,
)
from subnets import conv_subnet, dense_subnet

__all__: List[str] = []

F64 = torch.float64
RQS, LIN, ERQS = RationalQuadraticSpline, LinearSpline, ElementwiseRationalQuadraticSpline


def lin(i: int, o: int) -> nn.Module:
    """A deterministic float64 ``nn.Linear`` (cosine weights, sine biases)."""
    m = nn.Linear(i, o).double()
    with torch.no_grad():
        k = torch.arange(o * i, dtype=F64).reshape(o, i)
        m.weight.copy_(0.1 * torch.cos(k + 1.0))
        m.bias.copy_(0.05 * torch.sin(torch.arange(o, dtype=F64) + 1.0))
    return m


def zero_linear(i: int, o: int) -> nn.Module:
    """A linear subnet that outputs zeros: raw spline parameters 0."""
    m = nn.Linear(i, o)
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)
    return m


X = torch.tensor([[0.5, -1.0, 2.0, 0.25, -0.75], [1.5, 0.3, -0.2, -1.1, 0.9]], dtype=F64)


def _elementwise_reference() -> nn.Module:
    m = ERQS([(5,)], bins=3).double()
    with torch.no_grad():
        m.spline_parameters.view(-1).copy_(0.3 * torch.sin(torch.arange(50, dtype=F64)))
    return m


REFERENCE = [  # (builder, y, log_det): FrEIA HEAD's outputs, float64, input 2*X
    (lambda: RQS([(5,)], subnet_constructor=lin, bins=4).double(),
     [[1.88938, -1.206121, 3.590848, 0.267277, -1.511737],
      [2.532569, 0.403546, -0.909309, -2.135656, 2.307866]], [0.218044, 0.341982]),
    (lambda: LIN([(5,)], subnet_constructor=lin, bins=3, identity_tails=True).double(),
     [[2.473066, -1.473718, 4.0, 0.402027, -1.605311],
      [3.0, 0.785633, -0.223858, -2.210153, 1.670635]], [-0.168873, 0.70837]),
    (_elementwise_reference,
     [[0.380424, -1.543931, 2.980911, 1.147867, -1.517145],
      [2.021874, 1.570774, -0.904854, -1.997506, 1.742783]], [-0.425334, 0.379901]),
]


@pytest.mark.parametrize(("build", "y_ref", "log_det_ref"), REFERENCE,
                         ids=["rqs", "linear_identity_tails", "elementwise_rqs"])
def test_freia_reference_values(build: Any, y_ref: list, log_det_ref: list) -> None:
    m = build().requires_grad_(False)
    (y,), log_det = m([2 * X])
    assert torch.allclose(y, torch.tensor(y_ref, dtype=F64), atol=1e-6, rtol=0)
    assert torch.allclose(log_det, torch.tensor(log_det_ref, dtype=F64), atol=1e-6, rtol=0)
    (x_rev,), log_det_rev = m([y], rev=True)
    assert float((x_rev - 2 * X).abs().max()) < 1e-14
    assert float((log_det + log_det_rev).abs().max()) < 1e-14


# ------------------------------------------------------------------------------ kernels ----

def _random_bins(n: int, gen: torch.Generator) -> Dict[str, Tensor]:
    """``n`` random monotone bins with positive knot derivatives, in float64."""
    def r(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=F64)
    left, bottom = r(-2, 2), r(-2, 2)
    return {"left": left, "right": left + r(0.05, 2), "bottom": bottom, "top": bottom + r(0.05, 2),
            "deltas_left": r(0.01, 5), "deltas_right": r(0.01, 5)}


@pytest.mark.parametrize("kind", ["rq", "linear"])
def test_bin_kernels_monotone_invertible_and_log_derivative(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    p = _random_bins(200, gen)
    if kind == "linear":
        p = {k: v for k, v in p.items() if not k.startswith("deltas")}
    fn = rational_quadratic_spline if kind == "rq" else linear_spline
    xi = torch.linspace(0, 1, 41, dtype=F64)[:, None]
    x = (p["left"] + xi * (p["right"] - p["left"])).requires_grad_(True)
    y, log_d = fn(x, **p)
    assert (y.diff(dim=0) > 0).all()
    assert torch.allclose(y[0], p["bottom"], atol=1e-12) and torch.allclose(y[-1], p["top"])
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(log_d, dy_dx.log(), atol=1e-10, rtol=0)
    x_rev, log_d_rev = fn(y.detach(), **p, rev=True)
    assert float((x_rev - x.detach()).abs().max()) < 1e-10
    assert torch.allclose(log_d_rev, log_d, atol=1e-9, rtol=0)  # forward derivative, rev too


def test_rq_kernel_knot_derivatives_and_identity() -> None:
    p = _random_bins(50, torch.Generator().manual_seed(1))
    for end, key in ((0.0, "deltas_left"), (1.0, "deltas_right")):
        x = p["left"] + end * (p["right"] - p["left"])
        assert torch.allclose(rational_quadratic_spline(x, **p)[1], p[key].log(), atol=1e-12)
    ones = torch.ones(7, dtype=F64)  # slope 1 and unit derivatives: the identity
    x = torch.linspace(-1.0, 2.0, 7, dtype=F64)
    y, log_d = rational_quadratic_spline(x, -1.0 * ones, 2.0 * ones, -1.0 * ones, 2.0 * ones,
                                         ones, ones)
    assert torch.allclose(y, x, atol=1e-15) and torch.allclose(log_d, 0 * x, atol=1e-15)


def test_rq_inverse_negative_discriminant_raises() -> None:
    one = torch.ones(3, dtype=F64)
    args = (0 * one, one, 0 * one, one, one, -2.0 * one)  # not monotone: d_right < 0
    with pytest.raises(RuntimeError, match=r"discriminant.*-4\.67"):
        rational_quadratic_spline(2.7 * one, *args, rev=True)


def test_discriminant_check_skipped_while_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    one = torch.ones(3, dtype=F64)
    x, _ = rational_quadratic_spline(2.7 * one, 0 * one, one, 0 * one, one, one, -2 * one, rev=True)
    assert torch.isnan(x).all()


def _whole_line(module: nn.Module) -> Tuple[Tensor, Tensor, Tensor]:
    """A sorted grid over (-8, 8) as a batch through a one-channel element-wise module."""
    x = torch.linspace(-8, 8, 2001, dtype=F64)[:, None].requires_grad_(True)
    (y,), log_det = module([x])
    return x, y, log_det


@pytest.mark.parametrize("tails", [False, True], ids=["affine_tails", "identity_tails"])
@pytest.mark.parametrize("clamping", [None, 2.5])
def test_spline_on_the_whole_line(tails: bool, clamping: Any) -> None:
    """Monotone, continuous, log-det = autograd derivative, tails and round trip to 1e-10."""
    torch.manual_seed(0)
    m = ERQS([(1,)], bins=6, identity_tails=tails, domain_clamping=clamping).double()
    with torch.no_grad():
        m.spline_parameters.normal_(0.0, 1.0)
    x, y, log_det = _whole_line(m)
    steps = y.detach().diff(dim=0)
    assert (steps > 0).all() and float(steps.max()) < 0.2  # monotone and continuous
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(log_det, dy_dx.log().squeeze(1), atol=1e-9, rtol=0)
    p = m.constrain_parameters(m.split_parameters(m.spline_parameters[None], 1))
    left, bottom = p["left"].squeeze(), p["bottom"].squeeze()
    width, height = p["widths"].sum(), p["heights"].sum()
    outside = ((x < left) | (x > left + width)).squeeze(1)
    assert 100 < int(outside.sum()) < 1900
    scale = 1.0 if tails else height / width
    expected = bottom + scale * (x - left)
    assert torch.allclose(y[outside], expected[outside], atol=1e-12, rtol=0)
    if tails:
        assert torch.equal(y[outside], x[outside])
    (x_rev,), log_det_rev = m([y.detach()], rev=True)
    assert float((x_rev - x).detach().abs().max()) < 1e-10
    assert float((log_det_rev + log_det).detach().abs().max()) < 1e-10


@pytest.mark.parametrize("tails", [False, True])
def test_zero_parameters_give_the_identity(tails: bool) -> None:
    x = torch.linspace(-5, 5, 101, dtype=F64).reshape(-1, 1).repeat(1, 4)
    blocks = [ERQS([(4,)], bins=7, identity_tails=tails),
              RQS([(4,)], subnet_constructor=zero_linear, bins=5, identity_tails=tails),
              LIN([(4,)], subnet_constructor=zero_linear, bins=5, identity_tails=tails)]
    for m in blocks:
        (y,), log_det = m.double()([x])
        assert torch.allclose(y, x, atol=1e-12, rtol=0), type(m).__name__
        assert torch.allclose(log_det, 0 * log_det, atol=1e-12), type(m).__name__


# --------------------------------------------------------------------------- parameters ----

def test_parameter_counts_layout_and_subnet_sizes() -> None:
    calls: List[Tuple[int, int]] = []

    def record(i: int, o: int) -> nn.Module:
        calls.append((i, o))
        return nn.Linear(i, o)

    m = RQS([(4,)], subnet_constructor=record, bins=5)
    assert list(m.spline_base.parameter_counts.items()) == [
        ("widths", 5), ("heights", 5), ("bottom", 1), ("left", 1), ("deltas", 4)]
    assert calls == [(2, 32), (2, 32)]  # P = 3K + 1 = 16
    calls.clear()
    RQS([(5,)], [(2,)], subnet_constructor=record, bins=5, identity_tails=True)
    assert calls == [(3 + 2, 2 * 15), (2 + 2, 3 * 15)]  # split 2 | 3, P = 3K
    calls.clear()
    LIN([(5,)], subnet_constructor=record, bins=4)
    LIN([(5,)], subnet_constructor=record, bins=4, identity_tails=True)
    assert calls == [(3, 2 * 10), (2, 3 * 10), (3, 2 * 9), (2, 3 * 9)]
    base = BinnedSplineBase([(3,)], bins=2, parameter_counts={"a": 2}, identity_tails=True)
    assert list(base.parameter_counts) == ["widths", "heights", "total_width", "a"]


def test_split_parameters_layout() -> None:
    base = BinnedSplineBase([(2, 3, 3)], bins=2, parameter_counts={"deltas": 1})
    raw = torch.arange(2 * 2 * 7 * 9, dtype=F64).reshape(2, 14, 3, 3)  # P = 7, n = 2
    p = base.split_parameters(raw, 2)
    assert list(p) == ["widths", "heights", "bottom", "left", "deltas"]
    assert p["widths"].shape == (2, 3, 3, 2, 2) and p["deltas"].shape == (2, 3, 3, 2, 1)
    b, i, j = 1, 2, 0
    for ch in range(2):
        flat = torch.cat([p[k][b, i, j, ch] for k in p])
        assert torch.equal(flat, raw[b, ch * 7:(ch + 1) * 7, i, j])


def test_constrained_zeros_are_the_default_bins_and_domain_clamping() -> None:
    base = BinnedSplineBase([(1,)], bins=4, default_domain=(-2.0, 6.0, -1.0, 1.0),
                            min_bin_sizes=(0.5, 0.1)).double()
    p = base.constrain_parameters(base.split_parameters(torch.zeros(1, 10, dtype=F64), 1))
    assert torch.allclose(p["widths"], torch.full((1, 1, 4), 2.0, dtype=F64))
    assert torch.allclose(p["heights"], torch.full((1, 1, 4), 0.5, dtype=F64))
    assert float(p["left"]) == -2.0 and float(p["bottom"]) == -1.0
    clamped = BinnedSplineBase([(1,)], bins=4, domain_clamping=4.0).double()
    q = clamped.constrain_parameters(clamped.split_parameters(torch.zeros(1, 10, dtype=F64), 1))
    rho = 4.0 * math.tanh(6.0 / 4.0) / 6.0
    assert torch.allclose(q["widths"].sum(-1), torch.tensor([[6.0 * rho]], dtype=F64))
    assert torch.allclose(q["left"], torch.tensor([[[-3.0 * rho]]], dtype=F64))
    tails = BinnedSplineBase([(1,)], bins=4, identity_tails=True, domain_clamping=5.0).double()
    t = tails.constrain_parameters(tails.split_parameters(torch.zeros(1, 9, dtype=F64), 1))
    total = 5.0 * math.tanh(6.0 / 5.0)
    assert torch.allclose(t["widths"], torch.full((1, 1, 4), total / 4, dtype=F64))
    assert torch.allclose(t["left"], torch.tensor([[[-total / 2]]], dtype=F64))


def test_extra_parameters_reach_a_user_spline_per_knot() -> None:
    seen: Dict[str, Tuple[int, ...]] = {}

    class OffsetSpline(BinnedSpline):
        def __init__(self, *args: Any, bins: int = 3, **kwargs: Any) -> None:
            super().__init__(*args, bins=bins, parameter_counts={"knot": bins + 1}, **kwargs)

        def spline(self, x: Tensor, *, rev: bool = False, **parameters: Tensor
                   ) -> Tuple[Tensor, Tensor]:
            seen.update({k: tuple(v.shape) for k, v in parameters.items()})
            core = {k: parameters[k] for k in ("left", "right", "bottom", "top")}
            return linear_spline(x, **core, rev=rev)

    m = OffsetSpline([(4,)], subnet_constructor=dense_subnet)
    m([torch.randn(6, 4)])
    assert set(seen) == {"left", "right", "bottom", "top", "knot_left", "knot_right"}
    assert all(s == (6, 2) for s in seen.values())


# ------------------------------------------------------------------ state, RNG, pickling ----

def _state(m: nn.Module) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in m.state_dict().items()}


BUFFERS = {"bins": ((), torch.int32), "min_bin_sizes": ((2,), torch.float32),
           "default_domain": ((4,), torch.float32), "identity_tails": ((), torch.bool),
           "default_width": ((), torch.float32)}


def test_state_dict_matches_freia() -> None:
    m = RQS([(4,)], subnet_constructor=nn.Linear, bins=5)
    expected = {f"spline_base.{k}": v for k, v in BUFFERS.items()}
    for i in (1, 2):
        expected[f"subnet{i}.weight"] = ((32, 2), torch.float32)
        expected[f"subnet{i}.bias"] = ((32,), torch.float32)
    assert _state(m) == expected
    assert set(_state(LIN([(3, 4, 4)], subnet_constructor=conv_subnet))) == {
        *(f"spline_base.{k}" for k in BUFFERS), *(f"subnet{i}.{j}.{p}" for i in (1, 2)
                                                   for j in (0, 2) for p in ("weight", "bias"))}
    e = ERQS([(3, 4, 4)], bins=4, subnet_constructor=nn.Linear)  # ignored: unconditional
    assert _state(e) == {"spline_parameters": ((39, 4, 4), torch.float32), **BUFFERS}
    ec = ERQS([(3,)], [(2,)], subnet_constructor=nn.Linear, bins=4)
    assert _state(ec) == {**BUFFERS, "subnet.weight": ((39, 2), torch.float32),
                          "subnet.bias": ((39,), torch.float32)}
    assert float(m.spline_base.default_width) == 6.0 and not bool(m.spline_base.identity_tails)
    d = m.double()
    assert d.spline_base.min_bin_sizes.dtype == F64 and d.spline_base.bins.dtype == torch.int32


def test_rng_order_subnet1_then_subnet2() -> None:
    torch.manual_seed(3)
    m = RQS([(5,)], [(2,)], subnet_constructor=nn.Linear, bins=3)
    torch.manual_seed(3)
    first, second = nn.Linear(3 + 2, 2 * 10), nn.Linear(2 + 2, 3 * 10)
    assert torch.equal(m.subnet1.weight, first.weight)
    assert torch.equal(m.subnet2.weight, second.weight)
    state = torch.get_rng_state()
    ERQS([(3, 2, 2)], bins=4)
    assert torch.equal(torch.get_rng_state(), state)  # unconditional: zeros, no draws
    torch.manual_seed(3)
    e = ERQS([(5,)], [(2,)], subnet_constructor=nn.Linear, bins=3)
    torch.manual_seed(3)
    assert torch.equal(e.subnet.weight, nn.Linear(2, 50).weight)


@pytest.mark.parametrize("build", [
    lambda: RQS([(4,)], subnet_constructor=dense_subnet),
    lambda: LIN([(4,)], [(2,)], subnet_constructor=dense_subnet, identity_tails=True),
    lambda: ERQS([(4,)], [(2,)], subnet_constructor=dense_subnet),
], ids=["rqs", "linear", "elementwise"])
def test_whole_module_pickles_without_lambdas(build: Any) -> None:
    """No lambdas or closures are stored on the modules, so whole-module pickling works."""
    m = build()
    assert pickle.loads(pickle.dumps(m)).state_dict().keys() == m.state_dict().keys()
    if isinstance(m, BinnedSpline):
        assert m.f_clamp is identity


def test_conditional_elementwise_keeps_float64_conditions() -> None:
    """FrEIA casts the conditions to float32, which breaks float64 models; we keep their dtype."""
    m = ERQS([(3,)], [(2,)], subnet_constructor=dense_subnet, bins=4).double()
    dtypes: List[torch.dtype] = []
    m.subnet.register_forward_pre_hook(lambda _, args: dtypes.append(args[0].dtype))
    x, c = torch.randn(4, 3, dtype=F64), torch.randn(4, 2, dtype=F64)
    (y,), log_det = m([x], c=[c])
    assert dtypes == [F64] and y.dtype == F64 and log_det.dtype == F64
    (x_rev,), _ = m([y], c=[c], rev=True)
    assert float((x_rev - x).detach().abs().max()) < 1e-12
    (y2,), _ = m([x], c=[c + 1e-12])  # float32 would round the perturbation away
    assert not torch.equal(y, y2)


class _Direction(nn.Module):
    """A traceable wrapper: one direction of an invertible module, tensors in and out."""

    def __init__(self, module: nn.Module, rev: bool) -> None:
        super().__init__()
        self.module, self.rev = module, rev

    def forward(self, t: Tensor) -> Tuple[Tensor, Tensor]:
        (y,), log_det = self.module([t], rev=self.rev)
        return y, log_det


def test_jit_trace_both_directions_without_tracer_warnings() -> None:
    """No tensor-to-bool branch while tracing (the discriminant check is skipped)."""
    m = RQS([(4,)], subnet_constructor=dense_subnet, bins=4).double().eval()
    x = 2 * torch.randn(5, 4, dtype=F64)
    z = m([x])[0][0].detach()
    for rev, inp in ((False, x), (True, z)):
        wrapper = _Direction(m, rev)
        with warnings.catch_warnings():
            warnings.simplefilter("error", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(wrapper, (inp,), check_trace=False)
        other = 1.5 * torch.randn(7, 4, dtype=F64)
        for got, ref in zip(traced(other), wrapper(other)):
            assert torch.allclose(got, ref, atol=1e-12)


def test_compiles_to_one_graph_in_both_directions() -> None:
    """``torch.compile(fullgraph=True)``: no graph break from the discriminant check."""
    m = RQS([(4,)], subnet_constructor=dense_subnet, bins=4).eval()
    x = 2 * torch.randn(5, 4)
    for rev in (False, True):
        wrapper = _Direction(m, rev)
        compiled = torch.compile(wrapper, fullgraph=True, backend="eager")
        for got, ref in zip(compiled(x), wrapper(x)):
            assert torch.equal(got, ref)


def test_log_det_always_returned_as_batch_tensor() -> None:
    for m in (RQS([(4,)], subnet_constructor=dense_subnet), ERQS([(4,)])):
        out, log_det = m([torch.randn(3, 4)], jac=False)
        assert isinstance(out, tuple) and log_det.shape == (3,) and log_det.dtype == torch.float32
    assert ERQS([(2, 3, 3)]).output_dims([(2, 3, 3)]) == [(2, 3, 3)]


# ----------------------------------------------------------------------------- errors ----

BAD_ARGUMENTS = [  # (kwargs, words the message must contain): formatted, naming the values
    ({"bins": 0}, ["bins", "0"]),
    ({"min_bin_sizes": (0.1, -0.5)}, ["min_bin_sizes", "-0.5"]),
    ({"default_domain": (1.0, -1.0, -3.0, 3.0)}, ["right", "left"]),
    ({"default_domain": (-3.0, 3.0, 3.0, 3.0)}, ["top", "bottom"]),
    ({"bins": 7, "min_bin_sizes": (1.0, 0.1)}, ["7 bins", "width 1.0", "6.0"]),
    ({"bins": 7, "min_bin_sizes": (0.1, 2.0)}, ["7 bins", "height 2.0", "6.0"]),
]


@pytest.mark.parametrize(("kwargs", "words"), BAD_ARGUMENTS)
@pytest.mark.parametrize("cls", [BinnedSplineBase, RQS, LIN, ERQS])
def test_bad_spline_arguments_raise_formatted_assertions(
    cls: type, kwargs: Dict[str, Any], words: List[str]
) -> None:
    extra = {"subnet_constructor": dense_subnet} if issubclass(cls, BinnedSpline) else {}
    with pytest.raises(AssertionError) as info:
        cls([(4,)], **extra, **kwargs)
    assert isinstance(info.value, InvertibleAssertionError)
    message = str(info.value)
    assert "{" not in message and cls.__name__ in message
    assert all(w in message for w in words), message


def test_other_errors() -> None:
    with pytest.raises(AssertionError, match="condition 0"):
        RQS([(4, 3, 3)], [(2, 5, 5)], subnet_constructor=conv_subnet)
    with pytest.raises(ValueError, match="split_len"):
        LIN([(4,)], subnet_constructor=dense_subnet, split_len=1.5)
    with pytest.raises(TypeError, match="subnet_constructor"):
        RQS([(4,)])
    with pytest.raises(TypeError, match="subnet_constructor"):
        ERQS([(4,)], [(2,)])
    with pytest.raises(NotImplementedError):
        BinnedSplineBase([(4,)]).output_dims([(4,)])
    with pytest.raises(NotImplementedError, match=r"BinnedSpline does not implement spline"):
        BinnedSpline([(4,)], subnet_constructor=dense_subnet)([torch.randn(2, 4)])
    e = ERQS([(4,)], [(2,)], subnet_constructor=dense_subnet)
    with pytest.raises(ValueError, match=r"input must have shape \(B, 4\), got shape \(2, 5\)"):
        e([torch.randn(2, 5)], c=[torch.randn(2, 2)])
    with pytest.raises(ValueError, match="1 condition"):
        e([torch.randn(2, 4)])
    with pytest.raises(TypeError, match=r"RationalQuadraticSpline: .*unexpected keyword.*bnis"):
        RQS([(4,)], subnet_constructor=dense_subnet, bnis=3)
    with pytest.raises(ValueError, match="expected 26 channels"):
        RQS([(4,)], subnet_constructor=lambda i, o: nn.Linear(i, o + 1), bins=4)(
            [torch.randn(2, 4)])


def test_fixed_square_learns_no_domain() -> None:
    """``learn_domain=False``: no ``total_width`` output, the square is the default domain's,
    the identity outside it, whatever the subnet says; bad combinations are refused."""
    torch.manual_seed(0)
    block = RationalQuadraticSpline([(4,)], subnet_constructor=dense_subnet, bins=3,
                                    identity_tails=True, learn_domain=False,
                                    default_domain=(-2.0, 2.0, -2.0, 2.0)).double()
    learned = RationalQuadraticSpline([(4,)], subnet_constructor=dense_subnet, bins=3,
                                      identity_tails=True).double()
    assert block.params_per_channel == learned.params_per_channel - 1
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p))
    x = torch.tensor([[-5.0, 0.3, 2.5, -0.4], [1.9, -2.1, 0.1, 7.0]], dtype=torch.float64)
    z, _ = block([x])
    outside = x.abs() > 2.0
    outside[:, :2] = False  # the first half conditions the second; only half 2 is checked
    assert torch.equal(z[0][outside], x[outside])
    with pytest.raises(ValueError, match="learn_domain=False fixes the square"):
        RationalQuadraticSpline([(4,)], subnet_constructor=dense_subnet, learn_domain=False)
    with pytest.raises(ValueError, match=r"domain_clamping=1\.0"):
        RationalQuadraticSpline([(4,)], subnet_constructor=dense_subnet, identity_tails=True,
                                learn_domain=False, domain_clamping=1.0)
    with pytest.raises(ValueError, match=r"must be \(-B, B, -B, B\), got \(-1.0, 3.0"):
        RationalQuadraticSpline([(4,)], subnet_constructor=dense_subnet, identity_tails=True,
                                learn_domain=False, default_domain=(-1.0, 3.0, -1.0, 3.0))


def test_fixed_square_bounds_the_bin_ratio() -> None:
    """The fixed square's bins: even for huge raw logits no two widths (or heights) differ by
    ``MAX_BIN_RATIO`` or more, and they still fill the square exactly."""
    raw = torch.tensor([[[-1e4, 0.0, 50.0, 1e4]]], dtype=torch.float64)
    p = constrain_fixed_square({"widths": raw, "heights": -raw}, torch.zeros(4),
                               torch.zeros(2), torch.tensor(6.0), None)
    for key in ("widths", "heights"):
        sizes = p[key][0, 0]
        assert float(sizes.max() / sizes.min()) < MAX_BIN_RATIO
        torch.testing.assert_close(sizes.sum(), torch.tensor(6.0, dtype=torch.float64))
    assert float(p["left"]) == float(p["bottom"]) == -3.0
    assert soft_bound(torch.tensor(0.0), 2.0) == 0.0
    torch.testing.assert_close(soft_bound(torch.tensor([1e9, -1e9]), 2.0),
                               torch.tensor([2.0, -2.0]))
