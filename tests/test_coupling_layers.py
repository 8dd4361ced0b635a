"""Focused tests of the affine couplings: reference values, split, RNG order, state, errors."""

from __future__ import annotations

import inspect
import io
import math
import warnings
from typing import Any, Dict, List, Tuple

import pytest
import torch
from torch import Tensor, nn

from cases.couplings import softsign_clamp
from invertible._errors import InvertibleAssertionError
from invertible.modules import _fused
from invertible.modules._affine import atan_clamp, sigmoid_clamp, tanh_clamp
from invertible.modules.coupling_layers import (
    AffineCouplingOneSided,
    ConditionalAffineTransform,
    GINCouplingBlock,
    GLOWCouplingBlock,
    NICECouplingBlock,
    RNVPCouplingBlock,
    _BaseCouplingBlock,
)
from subnets import Float32Subnet, conv_subnet, dense_subnet, forward_inverse_and_gradients

__all__: List[str] = []

AFFINE = [RNVPCouplingBlock, GLOWCouplingBlock, GINCouplingBlock, AffineCouplingOneSided]
TWO_SIDED = [NICECouplingBlock, RNVPCouplingBlock, GLOWCouplingBlock, GINCouplingBlock]
ALL_UNCONDITIONED = [*TWO_SIDED, AffineCouplingOneSided]


def lin(i: int, o: int) -> nn.Module:
    """Appendix D's deterministic ``nn.Linear`` in float64."""
    m = nn.Linear(i, o).double()
    with torch.no_grad():
        k = torch.arange(o * i, dtype=torch.float64).reshape(o, i)
        m.weight.copy_(0.1 * torch.cos(k + 1.0))
        m.bias.copy_(0.05 * torch.sin(torch.arange(o, dtype=torch.float64) + 1.0))
    return m


X = torch.tensor([[0.5, -1.0, 2.0, 0.25, -0.75], [1.5, 0.3, -0.2, -1.1, 0.9]], dtype=torch.float64)
C = torch.tensor([[0.2, -0.4], [1.0, 0.5]], dtype=torch.float64)

REFERENCE = [  # (class, kwargs, conditioned, y, log_det) from Appendix D (FrEIA HEAD, float64)
    (GLOWCouplingBlock, {"clamp": 2.0}, False,
     [[0.876298, -1.096108, 2.416516, 0.224023, -0.789397],
      [1.403156, 0.400891, -0.165266, -1.154813, 1.023427]], [0.194744, 0.213859]),
    (RNVPCouplingBlock, {"clamp": 1.0, "clamp_activation": "TANH"}, True,
     [[0.792568, -1.034338, 2.419893, 0.236927, -0.753063],
      [1.344963, 0.042767, -0.21501, -1.128057, 0.75745]], [0.573613, -0.203666]),
    (NICECouplingBlock, {}, False,
     [[0.71398, -1.150185, 2.128515, 0.299963, -0.833128],
      [1.487944, 0.41375, -0.094751, -1.228885, 0.98899]], [0.0, 0.0]),
    (GINCouplingBlock, {"clamp_activation": "SIGMOID"}, False,
     [[0.822062, -1.102822, 2.253249, 0.220992, -0.780943],
      [1.33462, 0.373859, -0.158405, -1.163196, 0.971903]], [0.0, 0.0]),
    (AffineCouplingOneSided, {"split_len": 3}, False,
     [[0.5, -1.0, 2.0, 0.100864, -0.848042],
      [1.5, 0.3, -0.2, -1.163309, 0.650045]], [0.1114, 0.084602]),
    (ConditionalAffineTransform, {}, True,
     [[0.498518, -1.022532, 2.008326, 0.233361, -0.743291],
      [1.679137, 0.399343, -0.296721, -1.117068, 0.808742]], [0.058476, -0.097205]),
]


@pytest.mark.parametrize(("cls", "kwargs", "cond", "y_ref", "ld_ref"), REFERENCE,
                         ids=[r[0].__name__ for r in REFERENCE])
def test_appendix_d_reference_values(cls: type, kwargs: Dict[str, Any], cond: bool,
                                     y_ref: List[List[float]], ld_ref: List[float]) -> None:
    dims_c = [(2,)] if cond else []
    m = cls([(5,)], dims_c, subnet_constructor=lin, **kwargs).double()
    c = [C] if cond else []
    with torch.no_grad():
        (y,), log_det = m([X], c=c)
        (x_rev,), log_det_rev = m([y], c=c, rev=True)
    assert torch.allclose(y, torch.tensor(y_ref, dtype=torch.float64), atol=1e-6, rtol=0)
    assert log_det.shape == (2,) and log_det.dtype == torch.float64
    assert torch.allclose(log_det, torch.tensor(ld_ref, dtype=torch.float64), atol=1e-6, rtol=0)
    assert float((x_rev - X).abs().max()) <= 1e-15
    assert float((log_det + log_det_rev).abs().max()) <= 1e-15


# --- split sizes ---------------------------------------------------------------------------

#: split_len1 for split_len=0.5 and C = 1..9, written out (Python round: half to even).
HALF_SPLITS = {1: 0, 2: 1, 3: 2, 4: 2, 5: 2, 6: 3, 7: 4, 8: 4, 9: 4}


class Recorder:
    """A picklable subnet constructor that records its ``(c_in, c_out)`` calls."""

    def __init__(self) -> None:
        self.calls: List[Tuple[int, int]] = []

    def __call__(self, c_in: int, c_out: int) -> nn.Module:
        self.calls.append((c_in, c_out))
        return nn.Linear(c_in, c_out) if c_in and c_out else nn.Identity()


@pytest.mark.filterwarnings("ignore:.*leaves half . empty")
@pytest.mark.parametrize("channels", sorted(HALF_SPLITS))
@pytest.mark.parametrize("cls", ALL_UNCONDITIONED)
def test_split_sizes_round_half_even(cls: type, channels: int) -> None:
    m = cls([(channels,)], subnet_constructor=Recorder())
    assert (m.split_len1, m.split_len2) == (HALF_SPLITS[channels], channels - HALF_SPLITS[channels])
    assert (m.channels, m.ndims) == (channels, 1)


@pytest.mark.parametrize(("channels", "split_len", "expected"), [
    (5, 0.3, 2), (5, 0.1, 0), (5, 0.7, 4), (4, 0.0, 0), (4, 1.0, 4), (6, 1, 1), (6, 0, 0),
    (6, 6, 6), (7, 0.5, 4),
])
@pytest.mark.filterwarnings("ignore:.*leaves half . empty")
def test_split_len_values(channels: int, split_len: float, expected: int) -> None:
    m = GLOWCouplingBlock([(channels, 2, 2)], subnet_constructor=Recorder(), split_len=split_len)
    assert (m.split_len1, m.split_len2) == (expected, channels - expected)
    assert m.ndims == 3


def test_empty_half_warns_only_without_conditions() -> None:
    """The spec keeps 0 <= split_len <= C; without conditions an empty half is a warning."""
    with pytest.warns(UserWarning, match=r"GLOWCouplingBlock: split_len=3 leaves half 2 empty "
                                         r"\(3 \| 0 of the 3 channels\)"):
        GLOWCouplingBlock([(3,)], subnet_constructor=Recorder(), split_len=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GLOWCouplingBlock([(3,)], [(2,)], subnet_constructor=Recorder(), split_len=3)
        GLOWCouplingBlock([(3,)], subnet_constructor=Recorder(), split_len=1)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_block_with_an_empty_half_runs() -> None:
    """C=1 splits 0 | 1: half 1 is empty; the block still builds, runs and inverts (documented)."""
    m = GLOWCouplingBlock([(1,)], [(2,)], subnet_constructor=dense_subnet).double()
    x, c = torch.randn(4, 1, dtype=torch.float64), [torch.randn(4, 2, dtype=torch.float64)]
    (z,), ld = m([x], c=c)
    (x_rev,), ld_rev = m([z], c=c, rev=True)
    assert torch.allclose(x_rev, x) and torch.allclose(ld, -ld_rev) and ld.shape == (4,)


# --- RNG and subnet construction order (Appendix B) ----------------------------------------

ORDER = [  # class, expected (c_in, c_out) calls for C=5 (2 | 3) with one condition of 2 channels
    (NICECouplingBlock, [(3 + 2, 2), (2 + 2, 3)]),
    (RNVPCouplingBlock, [(2 + 2, 3), (2 + 2, 3), (3 + 2, 2), (3 + 2, 2)]),
    (GLOWCouplingBlock, [(2 + 2, 6), (3 + 2, 4)]),
    (GINCouplingBlock, [(2 + 2, 6), (3 + 2, 4)]),
    (AffineCouplingOneSided, [(2 + 2, 6)]),
    (ConditionalAffineTransform, [(2, 10)]),
]
NAMES = {
    NICECouplingBlock: ["F", "G"],
    RNVPCouplingBlock: ["subnet_s1", "subnet_t1", "subnet_s2", "subnet_t2"],
    GLOWCouplingBlock: ["subnet1", "subnet2"],
    GINCouplingBlock: ["subnet1", "subnet2"],
    AffineCouplingOneSided: ["subnet"],
    ConditionalAffineTransform: ["subnet"],
}


@pytest.mark.parametrize(("cls", "calls"), ORDER, ids=[o[0].__name__ for o in ORDER])
def test_subnet_construction_order(cls: type, calls: List[Tuple[int, int]]) -> None:
    rec = Recorder()
    cls([(5,)], [(2,)], subnet_constructor=rec)
    assert rec.calls == calls
    if cls is not ConditionalAffineTransform:
        rec = Recorder()
        cls([(5,)], subnet_constructor=rec)
        assert rec.calls == [(i - 2, o) for i, o in calls]


@pytest.mark.parametrize(("cls", "calls"), ORDER, ids=[o[0].__name__ for o in ORDER])
def test_rng_draws_only_the_subnets_in_order(cls: type, calls: List[Tuple[int, int]]) -> None:
    """Same seed -> the block's subnets equal subnets built directly in Appendix B's order."""
    torch.manual_seed(3)
    block = cls([(5,)], [(2,)], subnet_constructor=dense_subnet)
    torch.manual_seed(3)
    expected = [dense_subnet(i, o) for i, o in calls]
    for name, ref in zip(NAMES[cls], expected):
        got = getattr(block, name).state_dict()
        assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items()), name


# --- signatures (K3) and attributes -----------------------------------------------------------

AFFINE_SIGNATURE = [("dims_in", inspect.Parameter.empty), ("dims_c", []),
                    ("subnet_constructor", None), ("clamp", 2.0), ("clamp_activation", "ATAN"),
                    ("split_len", 0.5)]
SIGNATURES = {
    _BaseCouplingBlock: [("dims_in", inspect.Parameter.empty), ("dims_c", []), ("clamp", 2.0),
                         ("clamp_activation", "ATAN"), ("split_len", 0.5)],
    NICECouplingBlock: [("dims_in", inspect.Parameter.empty), ("dims_c", []),
                        ("subnet_constructor", None), ("split_len", 0.5)],
    **{cls: AFFINE_SIGNATURE for cls in [*AFFINE, ConditionalAffineTransform]},
}


@pytest.mark.parametrize("cls", list(SIGNATURES), ids=[c.__name__ for c in SIGNATURES])
def test_freia_signatures(cls: type) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == SIGNATURES[cls]
    fwd = list(inspect.signature(cls.forward).parameters.values())[1:]
    assert [(p.name, p.default) for p in fwd] == [
        ("x", inspect.Parameter.empty), ("c", []), ("rev", False), ("jac", True)]


def test_base_attributes() -> None:
    m = RNVPCouplingBlock([(5, 2, 2)], [(2, 2, 2), (3, 2, 2)], subnet_constructor=conv_subnet,
                          clamp=1.5)
    assert (m.channels, m.ndims, m.split_len1, m.split_len2) == (5, 3, 2, 3)
    assert (m.conditional, m.condition_length, m.clamp) == (True, 5, 1.5)
    plain = NICECouplingBlock([(4,)], subnet_constructor=dense_subnet)
    assert (plain.conditional, plain.condition_length, plain.clamp) == (False, 0, 0.0)


# --- state_dict (Appendix A) ----------------------------------------------------------------

@pytest.mark.parametrize("cls", list(NAMES), ids=[c.__name__ for c in NAMES])
def test_state_dict_keys(cls: type) -> None:
    m = cls([(5,)], [(2,)], subnet_constructor=nn.Linear)
    sd = m.state_dict()
    assert list(sd) == [f"{n}.{p}" for n in NAMES[cls] for p in ("weight", "bias")]
    assert all(v.dtype == torch.float32 for v in sd.values())
    calls = dict(ORDER)[cls]
    for name, (c_in, c_out) in zip(NAMES[cls], calls):
        assert sd[f"{name}.weight"].shape == (c_out, c_in)
        assert sd[f"{name}.bias"].shape == (c_out,)


# --- errors (Appendix C) --------------------------------------------------------------------

@pytest.mark.parametrize("split_len", [-0.1, 1.5, float("nan"), -1, 6])
def test_bad_split_len(split_len: float) -> None:
    with pytest.raises(ValueError, match=r"split_len.*GLOW|GLOW.*split_len") as info:
        GLOWCouplingBlock([(5,)], subnet_constructor=dense_subnet, split_len=split_len)
    assert str(split_len) in str(info.value)


@pytest.mark.parametrize("split_len", ["half", None, True])
def test_split_len_of_wrong_type(split_len: Any) -> None:
    with pytest.raises(ValueError, match="split_len") as info:
        RNVPCouplingBlock([(5,)], subnet_constructor=dense_subnet, split_len=split_len)
    assert isinstance(info.value, TypeError)


def test_unknown_clamp_activation() -> None:
    with pytest.raises(ValueError, match='Unknown clamp activation "RELU"'):
        GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet, clamp_activation="RELU")
    with pytest.raises(ValueError, match="clamp_activation"):
        GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet, clamp_activation=3)


@pytest.mark.parametrize("cls", list(NAMES), ids=[c.__name__ for c in NAMES])
def test_condition_spatial_mismatch_is_assertion_error(cls: type) -> None:
    with pytest.raises(InvertibleAssertionError, match=r"\(4, 4\)") as info:
        cls([(3, 4, 4)], [(2, 4, 5)], subnet_constructor=conv_subnet)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, ValueError)
    with pytest.raises(AssertionError):
        cls([(3, 4, 4)], [(2,)], subnet_constructor=conv_subnet)


def test_conditional_affine_needs_a_condition() -> None:
    with pytest.raises(ValueError, match="ConditionalAffineTransform must have a condition"):
        ConditionalAffineTransform([(4,)], subnet_constructor=dense_subnet)


@pytest.mark.parametrize("cls", list(NAMES), ids=[c.__name__ for c in NAMES])
def test_missing_subnet_constructor(cls: type) -> None:
    with pytest.raises(TypeError, match=f"{cls.__name__} needs a subnet_constructor"):
        cls([(4,)], [(2,)])


def test_output_dims_and_constructor_reject_two_inputs() -> None:
    m = GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet)
    assert m.output_dims([(4,)]) == [(4,)]
    with pytest.raises(ValueError, match="can only use 1 input"):
        m.output_dims([(4,), (4,)])
    with pytest.raises(ValueError, match="GLOWCouplingBlock can only use 1 input"):
        GLOWCouplingBlock([(4,), (4,)], subnet_constructor=dense_subnet)


def test_call_errors() -> None:
    plain = GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet)
    cond = RNVPCouplingBlock([(4,)], [(2,)], subnet_constructor=dense_subnet)
    x, c = torch.randn(3, 4), torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"GLOWCouplingBlock takes .*exactly 1 input.* 2 tensors"):
        plain([x, x])
    with pytest.raises(ValueError, match="a bare tensor"):
        plain(x)
    with pytest.raises(ValueError, match=r"GLOWCouplingBlock .* no conditions"):
        plain([x], c=[c])
    with pytest.raises(ValueError, match=r"RNVPCouplingBlock expects 1 .*\(2,\).* missing"):
        cond([x])
    with pytest.raises(ValueError, match=r"RNVPCouplingBlock expects 1 .* got 2 tensors"):
        cond([x], c=[c, c])
    with pytest.raises(ValueError, match=r"condition 0 must have shape \(B, 2\), got \S* \(3, 5\)"):
        cond([x], c=[torch.randn(3, 5)])
    with pytest.raises(ValueError, match=r"the input must have shape \(B, 4\), got shape \(3, 5\)"):
        plain([torch.randn(3, 5)])


@pytest.mark.parametrize(("cls", "subnet"), [
    (NICECouplingBlock, "F"), (RNVPCouplingBlock, "subnet_s2"), (GLOWCouplingBlock, "subnet2"),
    (GINCouplingBlock, "subnet2"), (AffineCouplingOneSided, "subnet"),
])
def test_subnet_with_wrong_channel_count(cls: type, subnet: str) -> None:
    m = cls([(5,)], subnet_constructor=dense_subnet)
    wrong = getattr(m, subnet)[-1].out_features + 1
    getattr(m, subnet)[-1] = nn.Linear(16, wrong)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: subnet '{subnet}' returned {wrong} "
                                         rf"channels .* expected {wrong - 1} channels"):
        m([torch.randn(2, 5)])


# --- GIN volume preservation, log-det shape and dtype (D26) ----------------------------------

def test_gin_centres_the_log_scale_per_position() -> None:
    torch.manual_seed(0)
    m = GINCouplingBlock([(5, 3, 3)], [(2, 3, 3)], subnet_constructor=conv_subnet).double()
    u1 = torch.randn(2, 2 + 2, 3, 3, dtype=torch.float64)
    ones = torch.ones(2, 3, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        y_one, ld = m._coupling2(ones, u1)
        y_zero, _ = m._coupling2(torch.zeros_like(ones), u1)
    s = torch.log(y_one - y_zero)  # exp(s)
    assert torch.equal(ld, torch.zeros(2, dtype=torch.float64))
    assert float(s.abs().max()) > 1e-2
    assert float(s.sum(dim=1).abs().max()) < 1e-12  # zero at every sample and position


@pytest.mark.parametrize("cls", [NICECouplingBlock, GINCouplingBlock])
def test_volume_preserving_blocks_return_exact_zeros(cls: type) -> None:
    m = cls([(3, 4, 4)], subnet_constructor=conv_subnet).double()
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    for rev in (False, True):
        for jac in (False, True):
            _, ld = m([x], rev=rev, jac=jac)
            assert isinstance(ld, Tensor)
            assert torch.equal(ld, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("cls", list(NAMES), ids=[c.__name__ for c in NAMES])
def test_log_det_is_a_batch_tensor_of_the_output_dtype(cls: type) -> None:
    m = cls([(4,)], [(2,)], subnet_constructor=dense_subnet)
    x, c = torch.randn(7, 4), [torch.randn(7, 2)]
    for rev in (False, True):
        for jac in (False, True):
            (y,), ld = m([x], c=c, rev=rev, jac=jac)
            assert isinstance(ld, Tensor) and ld.shape == (7,) and ld.dtype == y.dtype


# --- clamp activations, pickling (D23), user subclasses --------------------------------------

def test_clamp_activation_functions() -> None:
    u = torch.tensor([-3.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(atan_clamp(u), 0.636 * torch.atan(u))
    assert float(atan_clamp(torch.tensor(1.0))) == pytest.approx(0.636 * math.pi / 4)
    assert torch.allclose(tanh_clamp(u), torch.tanh(u))
    assert torch.allclose(sigmoid_clamp(u), 2 * torch.sigmoid(u) - 1)
    assert GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet).f_clamp is atan_clamp
    m = RNVPCouplingBlock([(4,)], subnet_constructor=dense_subnet, clamp=1.5,
                          clamp_activation=softsign_clamp)
    assert m.f_clamp is softsign_clamp and m.clamp == 1.5


@pytest.mark.parametrize("activation", ["ATAN", "TANH", "SIGMOID", softsign_clamp],
                         ids=["ATAN", "TANH", "SIGMOID", "callable"])
def test_torch_save_whole_model(activation: Any) -> None:
    model = nn.Sequential(
        GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet, clamp_activation=activation),
    )
    nice = NICECouplingBlock([(4,)], subnet_constructor=dense_subnet)
    buffer = io.BytesIO()
    torch.save({"glow": model, "nice": nice}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(3, 4)
    for a, b in ((model[0], loaded["glow"][0]), (nice, loaded["nice"])):
        (ya,), la = a([x])
        (yb,), lb = b([x])
        assert torch.equal(ya, yb) and torch.equal(la, lb)


class ScaleHalves(_BaseCouplingBlock):
    """A user subclass: multiply half 1 by 2 and shift half 2; hooks return Python floats."""

    def _coupling1(self, x1: Tensor, u2: Tensor, rev: bool = False) -> Tuple[Tensor, float]:
        sign = -1.0 if rev else 1.0
        return x1 * 2.0**sign, sign * x1.shape[1] * math.log(2.0)

    def _coupling2(self, x2: Tensor, u1: Tensor, rev: bool = False) -> Tuple[Tensor, float]:
        shift = u1[:, :1].sum(dim=1, keepdim=True)
        return (x2 - shift if rev else x2 + shift), 0.0


def test_user_subclass_of_the_base() -> None:
    m = ScaleHalves([(5,)], split_len=2)
    x = torch.randn(3, 5, dtype=torch.float64)
    (z,), ld = m([x])
    assert torch.allclose(z[:, :2], 2 * x[:, :2])
    assert torch.allclose(z[:, 2:], x[:, 2:] + z[:, :1])
    assert ld.shape == (3,) and ld.dtype == torch.float64
    assert torch.allclose(ld, torch.full((3,), 2 * math.log(2.0), dtype=torch.float64))
    (x_rev,), ld_rev = m([z], rev=True)
    assert torch.allclose(x_rev, x) and torch.allclose(ld_rev, -ld)
    with pytest.raises(NotImplementedError, match="_coupling1"):
        _BaseCouplingBlock([(4,)])([torch.randn(2, 4)])


# --- fused kernels (issue 6) ---------------------------------------------------------------
# Glow, one-sided and condition-only couplings with a built-in clamp run tensors of at least
# ``_fused.FUSED_MIN_ELEMENTS`` elements per half through ``_fused.AffineHalf`` (training) and
# in-place kernels (no grad); smaller ones, custom clamps, tracing and fused_kernels=False take
# plain autograd ops. Both must give the same numbers.

FUSED_CLASSES = [GLOWCouplingBlock, AffineCouplingOneSided, ConditionalAffineTransform]


def always_fused(monkeypatch: pytest.MonkeyPatch, on: bool = True) -> None:
    """Move the size threshold so that every call takes (or none takes) the fused kernels."""
    monkeypatch.setattr(_fused, "FUSED_MIN_ELEMENTS", 0 if on else 10**12)


class PixelMLP(nn.Module):
    """A per-position MLP over channels for image inputs (moves dim 1 last and back)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = dense_subnet(c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.movedim(1, -1)).movedim(-1, 1)


@pytest.mark.parametrize("cls", FUSED_CLASSES)
@pytest.mark.parametrize("activation", ["ATAN", "TANH", "SIGMOID"])
@pytest.mark.parametrize(("dims", "split_len"), [((7,), 0.5), ((7,), 2), ((5, 3, 2), 0.5)])
def test_fused_kernels_equal_plain_autograd(cls: type, activation: str, dims: Tuple[int, ...],
                                            split_len: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(5)
    cond = cls is ConditionalAffineTransform or len(dims) == 1
    dims_c = [(2, *dims[1:])] if cond else []
    subnet = dense_subnet if len(dims) == 1 else PixelMLP
    block = cls([dims], dims_c, subnet_constructor=subnet, clamp=1.7,
                clamp_activation=activation, split_len=split_len).double()
    x = torch.randn(3, *dims, dtype=torch.float64, requires_grad=True)
    c = [torch.randn(3, *dims_c[0], dtype=torch.float64, requires_grad=True)] if cond else []
    always_fused(monkeypatch)
    fused = forward_inverse_and_gradients(block, x, c)
    assert type(fused[0].grad_fn).__name__ in ("AffineHalfBackward", "CatBackward0")
    always_fused(monkeypatch, on=False)
    plain = forward_inverse_and_gradients(block, x, c)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused[-2], x.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("cls", "kwargs", "cond", "y_ref", "ld_ref"),
                         [r for r in REFERENCE if r[0] in FUSED_CLASSES])
def test_appendix_d_reference_values_through_fused_kernels(
        cls: type, kwargs: Dict[str, Any], cond: bool, y_ref: List[List[float]],
        ld_ref: List[float], monkeypatch: pytest.MonkeyPatch) -> None:
    always_fused(monkeypatch)
    m = cls([(5,)], [(2,)] if cond else [], subnet_constructor=lin, **kwargs).double()
    x = X.clone().requires_grad_()
    (y,), log_det = m([x], c=[C] if cond else [])
    assert type(y.grad_fn).__name__ == "AffineHalfBackward"
    assert torch.allclose(y, torch.tensor(y_ref, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.allclose(log_det, torch.tensor(ld_ref, dtype=torch.float64), atol=1e-6, rtol=0)


def test_fused_coupling_gradcheck(monkeypatch: pytest.MonkeyPatch) -> None:
    always_fused(monkeypatch)
    torch.manual_seed(0)
    m = GLOWCouplingBlock([(6,)], [(2,)], subnet_constructor=dense_subnet).double()
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)

    def f(x: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        (y,), ld = m([x], [c])
        return y, ld

    assert torch.autograd.gradcheck(f, (x, c))


def test_fused_only_for_large_tensors_and_built_in_clamps() -> None:
    """The size threshold picks the faster path; custom clamps always take plain ops."""
    per_half = _fused.FUSED_MIN_ELEMENTS
    torch.manual_seed(0)
    m = GLOWCouplingBlock([(8,)], subnet_constructor=dense_subnet)
    small, large = torch.randn(4, 8), torch.randn(per_half // 4, 8)
    assert type(m([small])[0][0].grad_fn).__name__ == "CatBackward0"
    assert type(m([large])[0][0].grad_fn).__name__ == "AffineHalfBackward"
    custom = GLOWCouplingBlock([(8,)], subnet_constructor=dense_subnet,
                               clamp_activation=softsign_clamp)
    assert type(custom([large])[0][0].grad_fn).__name__ == "CatBackward0"


def test_fused_coupling_is_first_order_only(monkeypatch: pytest.MonkeyPatch) -> None:
    always_fused(monkeypatch)
    torch.manual_seed(0)
    m = GLOWCouplingBlock([(6,)], subnet_constructor=dense_subnet).double()
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"first-order.*fused_kernels = False"):
        torch.autograd.grad(m([x])[1].sum(), x, create_graph=True)
    m.fused_kernels = False
    (g,) = torch.autograd.grad(m([x])[1].sum(), x, create_graph=True)
    g.sum().backward()
    assert x.grad is not None


def test_compile_fullgraph_glow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.compile(fullgraph=True)`` traces plain ops (no graph break), both directions."""
    always_fused(monkeypatch)
    torch.manual_seed(0)
    m = GLOWCouplingBlock([(6,)], [(2,)], subnet_constructor=dense_subnet)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    x, c = torch.randn(4, 6), torch.randn(4, 2)
    (y,), ld = compiled([x], [c])
    (y_ref,), ld_ref = m([x], [c])
    torch.testing.assert_close((y, ld), (y_ref, ld_ref))
    with torch.no_grad():
        (x_back,), _ = compiled([y_ref], [c], rev=True)
    torch.testing.assert_close(x_back, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_autocast_bf16_nll_close_to_float32(fused: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """NLL of a bf16-autocast forward vs float32: |ΔNLL| / |NLL| <= 2e-3 (measured over seeds
    0-4: 0.6e-4 to 2.4e-4 through plain ops, where the clamp runs in bf16; 0.3e-4 to 1.0e-4
    through the fused kernels, which upcast the subnet output); the log-det is float32."""
    always_fused(monkeypatch, fused)
    torch.manual_seed(0)
    m = GLOWCouplingBlock([(64,)], subnet_constructor=dense_subnet)
    x = torch.randn(256, 64)
    with torch.no_grad():
        (z,), ld = m([x])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            (z_low,), ld_low = m([x])
    assert ld_low.dtype == z_low.dtype == torch.float32
    nll = (0.5 * z.square().sum(1) - ld).mean()
    nll_low = (0.5 * z_low.square().sum(1) - ld_low).mean()
    assert abs(float(nll_low - nll)) <= 2e-3 * abs(float(nll))




@pytest.mark.parametrize("cls", FUSED_CLASSES)
def test_fused_and_plain_paths_agree_on_dtypes(cls: type,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 data through a float32 subnet under autocast: both paths promote alike; outside
    autocast the other dtype is a TypeError naming the block (as nn.Linear would refuse it)."""
    torch.manual_seed(0)
    m = cls([(8,)], [(2,)], subnet_constructor=Float32Subnet)
    x, c = torch.randn(4, 8, dtype=torch.bfloat16), [torch.randn(4, 2, dtype=torch.bfloat16)]
    dtypes = []
    for on in (True, False):
        always_fused(monkeypatch, on)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            (y,), ld = m([x], c)
            (x_back,), ld_back = m([y.to(torch.bfloat16)], c, rev=True)
        dtypes.append([t.dtype for t in (y, ld, x_back, ld_back)])
        with pytest.raises(TypeError, match=rf"{cls.__name__}: the input has dtype "
                                            r"torch.bfloat16, but the block's parameters are "
                                            r"torch.float32"):
            m([x], c)
    assert dtypes[0] == dtypes[1]
