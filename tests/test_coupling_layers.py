"""Focused tests of the couplings: reference values, split, RNG order, state, errors, and the
properties every `CouplingBlock` shares (AllInOneBlock and the spline couplings included):
second-order gradients, any image size, vector conditions broadcast over an image."""

from __future__ import annotations

import inspect
import io
import math
import warnings
from typing import Any, Callable, Dict, List, Tuple

import pytest
import torch
from torch import Tensor, nn

from cases.couplings import softsign_clamp
from invertible._errors import InvertibleAssertionError
from invertible.modules import AllInOneBlock, CouplingBlock, LinearSpline, RationalQuadraticSpline
from invertible.modules._affine import SHORT_ROW, atan_clamp, dense_rows, sigmoid_clamp, tanh_clamp
from invertible.modules._permutation import matrix_kernel
from invertible.modules.coupling_layers import (
    AffineCouplingOneSided,
    ConditionalAffineTransform,
    GINCouplingBlock,
    GLOWCouplingBlock,
    NICECouplingBlock,
    RNVPCouplingBlock,
    _BaseCouplingBlock,
)
from invertible.testing import autograd_log_det
from subnets import Float32Subnet, conv1x1_subnet, conv_subnet, dense_subnet

__all__: List[str] = []

AFFINE = [RNVPCouplingBlock, GLOWCouplingBlock, GINCouplingBlock, AffineCouplingOneSided]
TWO_SIDED = [NICECouplingBlock, RNVPCouplingBlock, GLOWCouplingBlock, GINCouplingBlock]
ALL_UNCONDITIONED = [*TWO_SIDED, AffineCouplingOneSided]
F64 = torch.float64


def lin(i: int, o: int) -> nn.Module:
    """A deterministic float64 ``nn.Linear`` (cosine weights, sine biases)."""
    m = nn.Linear(i, o).double()
    with torch.no_grad():
        k = torch.arange(o * i, dtype=F64).reshape(o, i)
        m.weight.copy_(0.1 * torch.cos(k + 1.0))
        m.bias.copy_(0.05 * torch.sin(torch.arange(o, dtype=F64) + 1.0))
    return m


X = torch.tensor([[0.5, -1.0, 2.0, 0.25, -0.75], [1.5, 0.3, -0.2, -1.1, 0.9]], dtype=F64)
C = torch.tensor([[0.2, -0.4], [1.0, 0.5]], dtype=F64)

REFERENCE = [  # (class, kwargs, conditioned, y, log_det): FrEIA HEAD's outputs, float64, `lin`
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
def test_freia_reference_values(cls: type, kwargs: Dict[str, Any], cond: bool,
                                y_ref: List[List[float]], ld_ref: List[float]) -> None:
    dims_c = [(2,)] if cond else []
    m = cls([(5,)], dims_c, subnet_constructor=lin, **kwargs).double()
    c = [C] if cond else []
    with torch.no_grad():
        (y,), log_det = m([X], c=c)
        (x_rev,), log_det_rev = m([y], c=c, rev=True)
    assert torch.allclose(y, torch.tensor(y_ref, dtype=F64), atol=1e-6, rtol=0)
    assert log_det.shape == (2,) and log_det.dtype == F64
    assert torch.allclose(log_det, torch.tensor(ld_ref, dtype=F64), atol=1e-6, rtol=0)
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
    """FrEIA accepts 0 <= split_len <= C; without conditions an empty half is a warning."""
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


# --- RNG and subnet construction order (FrEIA's, so seeded builds match) ------------------

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
    """Same seed -> the block's subnets equal subnets built directly in FrEIA's order."""
    torch.manual_seed(3)
    block = cls([(5,)], [(2,)], subnet_constructor=dense_subnet)
    torch.manual_seed(3)
    expected = [dense_subnet(i, o) for i, o in calls]
    for name, ref in zip(NAMES[cls], expected):
        got = getattr(block, name).state_dict()
        assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items()), name


# --- signatures (FrEIA's keywords and defaults) and attributes --------------------------------

AFFINE_SIGNATURE = [("dims_in", inspect.Parameter.empty), ("dims_c", []),
                    ("subnet_constructor", None), ("clamp", 2.0), ("clamp_activation", "ATAN"),
                    ("split_len", 0.5)]
SIGNATURES = {
    CouplingBlock: AFFINE_SIGNATURE,
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


# --- state_dict: FrEIA's keys, shapes and dtypes ---------------------------------------------

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


# --- errors ------------------------------------------------------------------------------------

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
@pytest.mark.parametrize("dims_c", [[(2, 4, 5)], [(2, 4)], [(2, 4, 4, 1)], [()]])
def test_condition_dims_mismatch_is_assertion_error(cls: type, dims_c: List[Tuple[int, ...]]
                                                    ) -> None:
    """Only a vector condition may differ from the input's dims after the channel axis."""
    with pytest.raises(InvertibleAssertionError, match=r"condition 0 .*\(4, 4\)") as info:
        cls([(3, 4, 4)], dims_c, subnet_constructor=conv_subnet)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, ValueError)


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


def test_call_errors_name_the_block() -> None:
    plain = GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet)
    cond = RNVPCouplingBlock([(4,)], [(2,)], subnet_constructor=dense_subnet)
    x, c = torch.randn(3, 4), torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"GLOWCouplingBlock takes 1 input tensor.*got 2"):
        plain([x, x])
    with pytest.raises(ValueError, match="a bare tensor"):
        plain(x)
    with pytest.raises(ValueError, match=r"GLOWCouplingBlock takes no conditions"):
        plain([x], c=[c])
    with pytest.raises(ValueError, match=r"RNVPCouplingBlock takes 1 condition.*\(2,\).*got 0"):
        cond([x])
    with pytest.raises(ValueError, match=r"RNVPCouplingBlock takes 1 condition.* got 2"):
        cond([x], c=[c, c])
    with pytest.raises(ValueError, match=r"condition must have shape \(B, 2\), got shape \(3, 5\)"):
        cond([x], c=[torch.randn(3, 5)])
    with pytest.raises(ValueError, match=r"input must have shape \(B, 4\), got shape \(3, 5\)"):
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


# --- GIN volume preservation, log-det shape and dtype -----------------------------------------

def test_gin_centres_the_log_scale_per_position() -> None:
    torch.manual_seed(0)
    m = GINCouplingBlock([(5, 3, 3)], [(2, 3, 3)], subnet_constructor=conv_subnet).double()
    a = (m.subnet1(torch.randn(2, 2 + 2, 3, 3, dtype=F64)),)
    ones = torch.ones(2, 3, 3, 3, dtype=F64)
    with torch.no_grad():
        y_one, log_jac = m.transform(ones, a, False)
        y_zero, _ = m.transform(torch.zeros_like(ones), a, False)
    s = torch.log(y_one - y_zero)  # exp(s)
    assert log_jac == 0.0
    assert float(s.abs().max()) > 1e-2
    assert float(s.sum(dim=1).abs().max()) < 1e-12  # zero at every sample and position


@pytest.mark.parametrize("cls", [NICECouplingBlock, GINCouplingBlock])
def test_volume_preserving_blocks_return_exact_zeros(cls: type) -> None:
    m = cls([(3, 4, 4)], subnet_constructor=conv_subnet).double()
    x = torch.randn(3, 3, 4, 4, dtype=F64)
    for rev in (False, True):
        for jac in (False, True):
            _, ld = m([x], rev=rev, jac=jac)
            assert isinstance(ld, Tensor)
            assert torch.equal(ld, torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("cls", list(NAMES), ids=[c.__name__ for c in NAMES])
def test_log_det_is_a_batch_tensor_of_the_output_dtype(cls: type) -> None:
    m = cls([(4,)], [(2,)], subnet_constructor=dense_subnet)
    x, c = torch.randn(7, 4), [torch.randn(7, 2)]
    for rev in (False, True):
        for jac in (False, True):
            (y,), ld = m([x], c=c, rev=rev, jac=jac)
            assert isinstance(ld, Tensor) and ld.shape == (7,) and ld.dtype == y.dtype


# --- clamp activations, pickling, the base ----------------------------------------------------

def test_clamp_activation_functions() -> None:
    u = torch.tensor([-3.0, 0.0, 1.0], dtype=F64)
    assert torch.allclose(atan_clamp(u), 0.636 * torch.atan(u))
    assert float(atan_clamp(torch.tensor(1.0))) == pytest.approx(0.636 * math.pi / 4)
    assert torch.allclose(tanh_clamp(u), torch.tanh(u))
    assert torch.allclose(sigmoid_clamp(u), 2 * torch.sigmoid(u) - 1)
    assert GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet).f_clamp is atan_clamp
    m = RNVPCouplingBlock([(4,)], subnet_constructor=dense_subnet, clamp=1.5,
                          clamp_activation=softsign_clamp)
    assert m.f_clamp is softsign_clamp and m.clamp == 1.5
    assert torch.equal(m.clamped(u), 1.5 * softsign_clamp(u))
    for name, f in (("ATAN", atan_clamp), ("TANH", tanh_clamp), ("SIGMOID", sigmoid_clamp)):
        glow = GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet, clamp=1.5,
                                 clamp_activation=name)
        torch.testing.assert_close(glow.clamped(u), 1.5 * f(u), rtol=1e-15, atol=0)


def test_clamps_copy_only_short_strided_rows() -> None:
    """A vector's log-scale slice of short rows is copied before the transcendental op (faster
    on CPU); other layouts are used as they are. The values never change."""
    out = torch.randn(8, 2 * SHORT_ROW, dtype=F64)
    short, long = out[:, :8], out[:, :SHORT_ROW]
    assert dense_rows(short).is_contiguous() and torch.equal(dense_rows(short), short)
    assert dense_rows(long) is long  # rows long enough for the kernels' fast path
    interleaved = out.unflatten(1, (SHORT_ROW, 2))[..., 0]  # autoregressive (s, t) pairs
    assert dense_rows(interleaved) is interleaved
    image = torch.randn(2, 8, 3, 3)[:, :4]
    assert dense_rows(image) is image
    for f in (atan_clamp, tanh_clamp, sigmoid_clamp):
        assert torch.equal(f(short, 2.0), f(short.contiguous(), 2.0))


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


def test_base_is_public_and_keeps_freia_name() -> None:
    """FrEIA's private base name still imports (isinstance checks, annotations); the base
    itself refuses to build without declared subnets."""
    assert _BaseCouplingBlock is CouplingBlock
    assert all(issubclass(cls, CouplingBlock) for cls in NAMES)
    with pytest.raises(TypeError, match=r"CouplingBlock.subnets must map .* got \{\}"):
        CouplingBlock([(4,)], subnet_constructor=dense_subnet)

    class Mixed(CouplingBlock):
        subnets = {"a": 0, "b": 1}  # noqa: RUF012 - the whole input and a half cannot mix

    with pytest.raises(TypeError, match=r"Mixed.subnets must map .*'a': 0, 'b': 1"):
        Mixed([(4,)], [(2,)], subnet_constructor=dense_subnet)


def test_default_transform_is_glow_and_log_jac_is_forward() -> None:
    """The base's transform: ``[s_raw, t]``, ``y = x e^s + t``, forward ``s`` both ways."""
    m = AffineCouplingOneSided([(4,)], subnet_constructor=dense_subnet, clamp=1.5).double()
    x, a = torch.randn(3, 2, dtype=F64), torch.randn(3, 4, dtype=F64)
    s = 1.5 * 0.636 * torch.atan(a[:, :2])
    y, log_jac = m.transform(x, (a,), False)
    torch.testing.assert_close(y, x * torch.exp(s) + a[:, 2:])
    x_back, log_jac_rev = m.transform(y, (a,), True)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(log_jac, s)
    assert torch.equal(log_jac_rev, log_jac)


def test_compile_fullgraph_glow() -> None:
    """``torch.compile(fullgraph=True)`` traces the block without a graph break, both ways."""
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


def test_autocast_bf16_nll_close_to_float32() -> None:
    """NLL of a bf16-autocast forward vs float32: |ΔNLL| / |NLL| <= 2e-3 (measured 0.6e-4 to
    2.4e-4 over seeds 0-4, the clamp running in bf16); the log-det is float32."""
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


@pytest.mark.parametrize("cls", [GLOWCouplingBlock, AffineCouplingOneSided,
                                 ConditionalAffineTransform])
def test_dtypes_under_autocast_and_outside(cls: type) -> None:
    """bf16 data through a float32 subnet under autocast: the data's dtype out, both ways;
    outside autocast the other dtype is a TypeError naming the block (as nn.Linear refuses)."""
    torch.manual_seed(0)
    m = cls([(8,)], [(2,)], subnet_constructor=Float32Subnet)
    x, c = torch.randn(4, 8, dtype=torch.bfloat16), [torch.randn(4, 2, dtype=torch.bfloat16)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (y,), ld = m([x], c)
        (x_back,), ld_back = m([y.to(torch.bfloat16)], c, rev=True)
    assert [t.dtype for t in (y, ld, x_back, ld_back)] == [torch.bfloat16] * 4
    with pytest.raises(TypeError, match=rf"{cls.__name__}: input has dtype torch.bfloat16, but "
                                        r"the block's parameters are torch.float32"):
        m([x], c)


# --- every CouplingBlock: affine, spline and AllInOneBlock -----------------------------------

Builder = Callable[..., nn.Module]

#: name -> ``build(dims_in, dims_c, subnet_constructor)``: a float64 block of each kind.
EVERY: Dict[str, Builder] = {
    "nice": NICECouplingBlock,
    "rnvp": RNVPCouplingBlock,
    "glow": GLOWCouplingBlock,
    "gin": GINCouplingBlock,
    "one_sided": AffineCouplingOneSided,
    "cond_affine": ConditionalAffineTransform,
    "rqs": lambda d, c, s: RationalQuadraticSpline(d, c, subnet_constructor=s, bins=3),
    "linear_spline": lambda d, c, s: LinearSpline(d, c, subnet_constructor=s, bins=3),
    "all_in_one": AllInOneBlock,
    "all_in_one-soft": lambda d, c, s: AllInOneBlock(d, c, s, permute_soft=True),
    "all_in_one-gin": lambda d, c, s: AllInOneBlock(d, c, s, gin_block=True),
    "all_in_one-householder-reverse": lambda d, c, s: AllInOneBlock(
        d, c, s, learned_householder_permutation=2, reverse_permutation=True,
        global_affine_type="SIGMOID"),
}


def build(name: str, dims: Tuple[int, ...], dims_c: List[Tuple[int, ...]], subnet: Builder,
          seed: int = 0) -> nn.Module:
    """Block ``name`` in float64 from ``seed``. AllInOneBlocks get a non-trivial global affine
    map (its terms would be trivial at init) and a soft permutation that is orthogonal in
    float64 (the drawn one is stored in float32, so its transpose inverts it only to 1e-7)."""
    torch.manual_seed(seed)
    needs_c = name == "cond_affine"
    block = EVERY[name]([dims], dims_c or ([(2, *dims[1:])] if needs_c else []), subnet).double()
    if isinstance(block, AllInOneBlock):
        with torch.no_grad():
            block.global_scale.add_(0.3 * torch.randn_like(block.global_scale))
            block.global_offset.normal_()
            if block.w_perm is not None and block.w_perm.is_floating_point():
                q = torch.linalg.qr(torch.randn(dims[0], dims[0], dtype=F64))[0]
                block.w_perm.copy_(matrix_kernel(q, len(dims) - 1))
                block.w_perm_inv.copy_(matrix_kernel(q.T, len(dims) - 1))
    return block


def conditions(block: nn.Module, batch: int, extents: Tuple[int, ...], gen: torch.Generator
               ) -> List[Tensor]:
    """Random float64 conditions for ``block`` at ``extents`` (vectors stay vectors)."""
    return [torch.randn(batch, dc[0], *(extents if len(dc) > 1 else ()), generator=gen,
                        dtype=F64) for dc in block.dims_c]


@pytest.mark.parametrize("name", sorted(EVERY))
def test_second_order_gradients(name: str) -> None:
    """``create_graph=True`` gives exact second derivatives (gradgradcheck, float64)."""
    block = build(name, (4,), [(2,)], dense_subnet)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, generator=gen, dtype=F64, requires_grad=True)
    c = torch.randn(2, 2, generator=gen, dtype=F64, requires_grad=True)

    def f(x: Tensor, c: Tensor) -> Tuple[Tensor, Tensor]:
        (y,), ld = block([x], [c])
        return y, ld

    assert torch.autograd.gradgradcheck(f, (x, c))
    (y,), ld = block([x], [c])
    (g,) = torch.autograd.grad((y.square().sum() - ld.sum()), x, create_graph=True)
    g.square().sum().backward()
    unused = {"global_scale"} if getattr(block, "GIN", False) else set()  # GIN: scale 1
    assert all(p.grad is not None for n, p in block.named_parameters()
               if p.requires_grad and n not in unused)


@pytest.mark.parametrize("name", sorted(EVERY))
@pytest.mark.parametrize("extents", [(3, 5), (2, 1)])
def test_other_image_size_exact_log_det(name: str, extents: Tuple[int, int]) -> None:
    """Built at (4, 8, 8), run at other extents: round trip and log-det = autograd slogdet."""
    block = build(name, (4, 8, 8), [], conv_subnet)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, *extents, generator=gen, dtype=F64)
    cs = conditions(block, 2, extents, gen)
    (z,), ld = block([x], cs)
    (x_back,), ld_back = block([z], cs, rev=True)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-10)
    torch.testing.assert_close(ld_back, -ld, rtol=0, atol=1e-10)
    torch.testing.assert_close(ld, autograd_log_det(block, [x], cs), rtol=0, atol=1e-8)
    torch.testing.assert_close(ld_back, autograd_log_det(block, [z], cs, rev=True), rtol=0,
                               atol=1e-8)


#: AllInOneBlock's GIN mode centres the log-scale over the whole image, so there every output
#: pixel depends on all input pixels.
PIXELWISE = sorted(set(EVERY) - {"all_in_one-gin"})


@pytest.mark.parametrize("name", PIXELWISE)
def test_larger_image_is_its_crops_pixel_by_pixel(name: str) -> None:
    """With 1x1-conv subnets a block built at (4, 8, 8) maps a (4, 16, 16) image pixel by pixel:
    every crop's output is the large output's crop, both ways, and the log-dets of the four
    8x8 quadrants add up to the large image's."""
    block = build(name, (4, 8, 8), [], conv1x1_subnet)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=gen, dtype=F64)
    cs = conditions(block, 2, (16, 16), gen)
    (z,), ld = block([x], cs)
    (x_back,), ld_back = block([z], cs, rev=True)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-10)
    crops = [(slice(2, 5), slice(7, 12)), (slice(0, 16), slice(3, 4))]
    crops += [(slice(i, i + 8), slice(j, j + 8)) for i in (0, 8) for j in (0, 8)]
    quadrants = []
    for rows, cols in crops:
        c_crop = [t[:, :, rows, cols] if t.dim() == 4 else t for t in cs]
        (z_crop,), ld_crop = block([x[:, :, rows, cols]], c_crop)
        (x_crop,), _ = block([z[:, :, rows, cols]], c_crop, rev=True)
        torch.testing.assert_close(z_crop, z[:, :, rows, cols], rtol=0, atol=1e-12)
        torch.testing.assert_close(x_crop, x[:, :, rows, cols], rtol=0, atol=1e-10)
        quadrants.append(ld_crop)
    torch.testing.assert_close(sum(quadrants[2:]), ld, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(EVERY))
def test_vector_condition_is_broadcast_over_the_image(name: str) -> None:
    """A ``(k,)`` condition for a ``(C, H, W)`` input equals passing it expanded to
    ``(k, H, W)`` to the same block built with an image condition, at any size."""
    vector = build(name, (4, 8, 8), [(3,)], conv_subnet)
    image = build(name, (4, 8, 8), [(3, 8, 8)], conv_subnet, seed=1)
    image.load_state_dict(vector.state_dict())
    gen = torch.Generator().manual_seed(4)
    for extents in ((8, 8), (3, 5)):
        x = torch.randn(2, 4, *extents, generator=gen, dtype=F64)
        c = torch.randn(2, 3, generator=gen, dtype=F64)
        c_image = c[:, :, None, None].expand(-1, -1, *extents)
        (z,), ld = vector([x], [c])
        (z_ref,), ld_ref = image([x], [c_image])
        assert torch.equal(z, z_ref) and torch.equal(ld, ld_ref)
        (x_back,), _ = vector([z], [c], rev=True)
        torch.testing.assert_close(x_back, x, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match=r"condition must have shape \(B, 3\)"):
        vector([x], [torch.randn(2, 4, dtype=F64)])


def test_only_channel_count_and_rank_are_checked() -> None:
    m = GLOWCouplingBlock([(4, 8, 8)], [(2, 8, 8)], subnet_constructor=conv_subnet)
    m([torch.randn(1, 4, 2, 3)], [torch.randn(1, 2, 2, 3)])
    with pytest.raises(ValueError, match=r"input must have shape \(B, 4, \*, \*\), got shape "
                                         r"\(1, 3, 2, 3\)"):
        m([torch.randn(1, 3, 2, 3)], [torch.randn(1, 2, 2, 3)])
    with pytest.raises(ValueError, match=r"must have the input's extents \(2, 3\)"):
        m([torch.randn(1, 4, 2, 3)], [torch.randn(1, 2, 3, 2)])
