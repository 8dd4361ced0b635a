"""Equivalence with FrEIA 0.2 from PyPI: same seeds, same parameters, loaded checkpoints, numbers.

Runs only where the ``FrEIA`` package (the ``test`` extra) is installed. Every block that both
packages have is built in both from the same seeds (``torch.manual_seed(s); np.random.seed(s)``)
and in float64, then:

(a) the ``state_dict`` keys, shapes and dtypes must agree (a row's ``differs`` names the keys where
    PyPI 0.2 legitimately stores something else, and these must really differ);
(b) the same seeds must give the same parameters (FrEIA's order of random draws), unless ``rng``
    is ``None``, where
    the row's note says how PyPI 0.2 draws differently;
(c) FrEIA's ``state_dict`` (after one forward call, so data-initialised blocks are initialised, and
    with its learned parameters perturbed, so nothing is at its trivial init) loads strictly into
    an ``invertible`` block built from another seed, and outputs and log-dets agree to 1e-10 in
    both directions; where ``differs`` is empty, ours loads back into FrEIA too.

PyPI 0.2 is older than the FrEIA HEAD this package follows. Its ``AllInOneBlock`` clamps with
``κ tanh(a)`` instead of HEAD's ``κ tanh(a/κ)``; ``legacy_clamp=True`` reproduces the
old formula on a loaded HEAD block by scaling the subnet's scale rows by κ, which shows that the
clamp is the only numerical difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import invertible.framework as If
import invertible.modules as Im
from invertible.modules import (
    all_in_one_block,
    coupling_layers,
    fixed_transforms,
    gaussian_mixture,
    graph_topology,
    inv_auto_layers,
    invertible_resnet,
    orthogonal,
    reshapes,
)
from invertible.modules.all_in_one_block import AllInOneBlock
from subnets import conv_subnet, dense_subnet

Ff = pytest.importorskip("FrEIA.framework")
Fm = pytest.importorskip("FrEIA.modules")

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",  # InvAutoFC/InvAutoConv2D on every call, InvAutoActFixed, Split sizes
    "ignore::DeprecationWarning",  # the Split/Concat aliases, ActNorm's old keys
    "ignore:Using non-full backward hooks:FutureWarning",  # FrEIA's OrthogonalTransform
)

Shape = Tuple[int, ...]
B = 3
TOL = {"rtol": 1e-10, "atol": 1e-10}

#: ``invertible``'s classes by FrEIA name, imported from their submodules.
OURS: Dict[str, type] = {
    name: getattr(module, name)
    for module in (all_in_one_block, coupling_layers, fixed_transforms, gaussian_mixture,
                   graph_topology, inv_auto_layers, invertible_resnet, orthogonal, reshapes)
    for name in getattr(module, "__all__", ())
    if isinstance(getattr(module, name), type)
}
OURS.update(Split1D=graph_topology.Split1D, Concat1d=graph_topology.Concat1d)
OURS_NS = SimpleNamespace(**OURS)

#: In ``invertible.modules.__all__`` but absent from FrEIA 0.2 (it has no splines and no learned
#: 1x1 convolution, and its coupling base is the private ``_BaseCouplingBlock``).
NOT_IN_PYPI = {"ElementwiseRationalQuadraticSpline", "LinearSpline", "RationalQuadraticSpline",
               "Inverse", "CouplingBlock", "Learned1x1Conv", "AutoregressiveAffine",
               "AutoregressiveRQSpline"}


def emulate_pypi_clamp(block: nn.Module) -> None:
    """Switch every ``AllInOneBlock`` in ``block`` to PyPI 0.2's clamp ``κ tanh(a)``.

    This is ``AllInOneBlock``'s documented ``legacy_clamp`` switch (a constructor keyword and a
    settable attribute); HEAD, and ``invertible`` by default, clamp as ``κ tanh(a_s/κ)``.
    """
    for m in block.modules():
        if isinstance(m, AllInOneBlock):
            m.legacy_clamp = True


def gmm_conditions(gen: torch.Generator) -> List[Tensor]:
    """Valid GMM conditions for d=3, K=2: weights, means, log-diagonal/upper entries, indices."""
    w = torch.softmax(torch.randn(B, 2, generator=gen, dtype=torch.float64), dim=-1)
    mu = torch.randn(B, 2, 3, generator=gen, dtype=torch.float64)
    u = 0.3 * torch.randn(B, 2, 6, generator=gen, dtype=torch.float64)
    return [w, mu, u, torch.tensor([0, 1, 1])]


M3 = torch.tensor([[1.5, 0.2, -0.3], [0.1, 0.8, 0.4], [-0.2, 0.3, 1.2]], dtype=torch.float64)
M6 = torch.eye(6, dtype=torch.float64) + 0.1 * torch.cos(torch.arange(36.0).double()).reshape(6, 6)


@dataclass(frozen=True)
class Row:
    """One block configuration, built in FrEIA 0.2 and in ``invertible``."""

    name: str
    dims: Tuple[Shape, ...]
    kwargs: Dict[str, Any] = field(default_factory=dict)
    dims_c: Tuple[Shape, ...] = ()
    rng: Optional[float] = 0.0  # max |ours - theirs| of same-seed parameters; None: draws differ
    differs: Tuple[str, ...] = ()  # keys whose presence, shape or dtype differ (on purpose)
    missing: Tuple[str, ...] = ()  # keys of ours that a PyPI-0.2 checkpoint lacks
    rev_log_det: str = "equal"  # or "negated" (FrEIA forgot the sign) or "skip" (FrEIA's
    # reverse log-det is a fresh random estimate)
    adapt: Optional[Callable[[nn.Module], None]] = None  # applied to ours after loading
    conditions: Optional[Callable[[torch.Generator], List[Tensor]]] = None
    float64_default: bool = False  # FrEIA 0.2 builds internal tensors in the default dtype
    note: str = ""

    def __str__(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.kwargs.items() if k != "subnet_constructor")
        cond = f"|c{list(self.dims_c)}" if self.dims_c else ""
        return f"{self.name}{list(self.dims)}{cond}({extra})"


V, IMG, IMG12 = ((6,),), ((3, 4, 4),), ((12, 4, 4),)
VC, IC = ((2,),), ((2, 4, 4),)
DENSE, CONV = {"subnet_constructor": dense_subnet}, {"subnet_constructor": conv_subnet}
HARD = "PyPI 0.2 draws the hard permutation with np.random.permutation, HEAD with torch.randperm"
AIO = {"adapt": emulate_pypi_clamp, "differs": ("w_perm", "w_perm_inv"), "rng": None, "note": HARD}
AIO_SOFT = {"adapt": emulate_pypi_clamp}

ROWS: List[Row] = [
    Row("AllInOneBlock", V, DENSE, **AIO),
    Row("AllInOneBlock", V, {**DENSE, "affine_clamping": 1.5}, VC, **AIO),
    Row("AllInOneBlock", IMG, CONV, IC, **AIO),
    Row("AllInOneBlock", V, {**DENSE, "gin_block": True, "reverse_permutation": True}, **AIO),
    Row("AllInOneBlock", V, {**DENSE, "global_affine_type": "SIGMOID"}, **AIO),
    Row("AllInOneBlock", V, {**DENSE, "global_affine_type": "EXP"}, **AIO),
    Row("AllInOneBlock", V, {**DENSE, "permute_soft": True, "affine_clamping": 3.0}, VC,
        **AIO_SOFT),
    Row("AllInOneBlock", IMG, {**CONV, "permute_soft": True, "gin_block": True}, **AIO_SOFT),
    Row("AllInOneBlock", V, {**DENSE, "permute_soft": True, "learned_householder_permutation": 2,
                             "reverse_permutation": True}, **AIO_SOFT),
    Row("AllInOneBlock", IMG, {**CONV, "learned_householder_permutation": 2}, IC,
        adapt=emulate_pypi_clamp, rng=None, note=HARD + " (w_0 one-hot; HEAD crashes there)"),
    *[Row(n, V, DENSE) for n in ("NICECouplingBlock", "RNVPCouplingBlock", "GLOWCouplingBlock",
                                 "GINCouplingBlock", "AffineCouplingOneSided")],
    Row("NICECouplingBlock", IMG, CONV, IC),
    Row("RNVPCouplingBlock", IMG, {**CONV, "clamp": 1.0, "clamp_activation": "TANH"}, IC),
    Row("GLOWCouplingBlock", ((5,),), {**DENSE, "split_len": 3}, VC),
    Row("GINCouplingBlock", IMG, {**CONV, "clamp_activation": "SIGMOID"}, IC),
    Row("AffineCouplingOneSided", IMG, CONV, IC),
    Row("ConditionalAffineTransform", V, DENSE, VC),
    Row("ConditionalAffineTransform", IMG, CONV, ((1, 4, 4), (2, 4, 4))),
    Row("PermuteRandom", V, {"seed": 3}),
    Row("PermuteRandom", IMG),
    Row("FixedLinearTransform", ((3,),), {"M": M3, "b": torch.arange(3.0).double()}),
    Row("FixedLinearTransform", ((3,),), {"M": M3}, differs=("b",),
        note="PyPI 0.2 keeps b=None as a plain float: no `b` key (HEAD: 0-dim buffer)"),
    Row("Fixed1x1Conv", IMG, {"M": M3}),
    Row("InvertibleSigmoid", V),
    Row("InvertibleSigmoid", IMG, note="FrEIA sums the log-det over dim 1 only"),
    Row("ActNorm", V, differs=("scale", "bias", "log_scale", "loc", "is_initialized"),
        note="PyPI 0.2: `scale`, `bias` with z = x e^scale + bias, converted on load"),
    Row("ActNorm", IMG, differs=("scale", "bias", "log_scale", "loc", "is_initialized")),
    Row("IResNetLayer", V, {"hutchinson_samples": 2}, VC, rev_log_det="skip",
        note="reverse log-det: FrEIA evaluates the series at z with fresh noise"),
    Row("IResNetLayer", IMG, {"internal_size": 4}, rev_log_det="skip"),
    Row("InvAutoAct", V),
    Row("InvAutoAct", IMG, {"slope_init": 1.5}),
    Row("InvAutoActFixed", V),
    Row("InvAutoActTwoSided", IMG),
    Row("LearnedElementwiseScaling", IMG, rev_log_det="negated",
        note="FrEIA's reverse log-det is not negated"),
    Row("LearnedElementwiseScaling", V, {"init_scale": 2.0}, rng=None, rev_log_det="negated",
        note="PyPI 0.2 initialises s with zeros, ignoring init_scale"),
    Row("InvAutoFC", V),
    Row("InvAutoFC", V, {"dims_out": 6}),
    Row("InvAutoConv2D", IMG),
    Row("OrthogonalTransform", V),
    Row("HouseholderPerm", V, {"n_reflections": 3}),
    Row("HouseholderPerm", V, {"n_reflections": 3, "fixed": True}, rng=1e-6,
        note="W is the same product of reflections, evaluated in another order (1 ulp)"),
    Row("GaussianMixtureModel", ((3,),), {}, ((2,), (2, 3), (2, 6), (1,)),
        conditions=gmm_conditions, float64_default=True,
        note="FrEIA 0.2 builds U in the default dtype, so float64 needs it as default"),
    Row("IRevNetDownsampling", IMG),
    Row("IRevNetDownsampling", IMG, {"legacy_backend": True}),
    Row("IRevNetUpsampling", IMG12),
    Row("IRevNetUpsampling", IMG12, {"legacy_backend": True}),
    Row("HaarDownsampling", IMG, {"rebalance": 0.5, "order_by_wavelet": True}),
    Row("HaarUpsampling", IMG12, {"rebalance": 2.0}),
    Row("Flatten", IMG),
    Row("Reshape", IMG, {"output_dims": (12, 4)}),
    Row("Split", ((5, 4),)),
    Row("Split", ((5, 4),), {"section_sizes": (2, 3)}),
    Row("Split", ((5, 4),), {"n_sections": 3, "dim": 1}),
    Row("SplitChannel", ((5, 4),)),
    Row("Split1D", ((5, 4),)),
    Row("Concat", ((2, 4), (3, 4))),
    Row("Concat", ((2, 4), (2, 3)), {"dim": 1}),
    Row("ConcatChannel", ((2, 4), (3, 4))),
    Row("Concat1d", ((2, 4), (3, 4))),
]


# ------------------------------------------------------------------------------------- helpers


def build(ctor: Callable[..., nn.Module], row: Row, seed: int) -> nn.Module:
    """Seed both global generators, build ``ctor`` as ``row`` says, convert to float64."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    kwargs = dict(row.kwargs)
    if row.dims_c:
        kwargs["dims_c"] = list(row.dims_c)
    return ctor(list(row.dims), **kwargs).double()


def as_batch(log_det: Any) -> Optional[Tensor]:
    """A log-det as ``(B,)`` float64: scalars and ``(1,)`` broadcast, extra dims summed (FrEIA's
    InvertibleSigmoid returns one value per channel)."""
    if log_det is None:
        return None
    log_det = torch.as_tensor(log_det, dtype=torch.float64)
    if log_det.numel() == 1:
        return log_det.reshape(()).expand(B)
    return log_det.reshape(B, -1).sum(dim=1)


def call(module: nn.Module, xs: Sequence[Tensor], cs: Sequence[Tensor], rev: bool,
         seed: int = 5) -> Tuple[List[Tensor], Optional[Tensor]]:
    """Call as the frameworks do, on clones (FrEIA's Haar modules mutate their inputs).

    The torch seed is reset first, so stochastic log-dets (i-ResNet) see the same noise.
    """
    torch.manual_seed(seed)
    kwargs: Dict[str, Any] = {"rev": rev, "jac": True}
    if cs:
        kwargs["c"] = list(cs)
    out, log_det = module([x.clone() for x in xs], **kwargs)
    return list(out), as_batch(log_det)


def layout(state: Dict[str, Tensor]) -> Dict[str, Tuple[Shape, torch.dtype]]:
    """Shape and dtype of every ``state_dict`` entry."""
    return {k: (tuple(v.shape), v.dtype) for k, v in state.items()}


def perturb(module: nn.Module, seed: int) -> None:
    """Move every learnable float parameter off its initial value (fixed tensors stay)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad and p.is_floating_point():
                p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def row_data(row: Row) -> Tuple[List[Tensor], List[Tensor]]:
    """Seeded float64 inputs and conditions for ``row``."""
    gen = torch.Generator().manual_seed(11)
    xs = [torch.randn(B, *d, generator=gen, dtype=torch.float64) for d in row.dims]
    if row.conditions is not None:
        return xs, row.conditions(gen)
    return xs, [torch.randn(B, *d, generator=gen, dtype=torch.float64) for d in row.dims_c]


def assert_all_close(ours: Sequence[Tensor], theirs: Sequence[Tensor]) -> None:
    """Same number of tensors, each equal to 1e-10."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **TOL)


# --------------------------------------------------------------------------------- block tests


@pytest.fixture
def default_dtype(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run with float64 as the default dtype where the row asks for it; restore afterwards."""
    old = torch.get_default_dtype()
    if request.node.callspec.params["row"].float64_default:
        torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def check_layout_and_draws(row: Row, theirs: nn.Module, ours: nn.Module) -> None:
    """(a) keys, shapes and dtypes agree except ``row.differs``; (b) same seeds, same values."""
    theirs_layout, ours_layout = layout(theirs.state_dict()), layout(ours.state_dict())
    for key in set(theirs_layout) | set(ours_layout):
        same = theirs_layout.get(key) == ours_layout.get(key)
        assert same != (key in row.differs), (key, theirs_layout.get(key), ours_layout.get(key))
    theirs_state, ours_state = theirs.state_dict(), ours.state_dict()
    gaps = [float((theirs_state[k] - ours_state[k]).abs().max())
            for k in theirs_layout if k not in row.differs and theirs_state[k].numel()]
    if row.rng is None:  # a documented difference in the draws
        assert row.note and max(gaps) > 0
    else:
        assert max(gaps, default=0.0) <= row.rng


def transfer(row: Row, theirs: nn.Module, ours: nn.Module) -> None:
    """Load FrEIA's state into ours (and, where the layouts agree, ours back into FrEIA)."""
    if row.missing:
        result = ours.load_state_dict(theirs.state_dict(), strict=False)
        assert not result.unexpected_keys and set(result.missing_keys) <= set(row.missing)
    else:
        ours.load_state_dict(theirs.state_dict())
    if not row.differs:
        build(getattr(Fm, row.name), row, 2).load_state_dict(ours.state_dict())
    if row.adapt is not None:
        row.adapt(ours)


@pytest.mark.parametrize("row", ROWS, ids=str)
@pytest.mark.usefixtures("default_dtype")
def test_block_matches_pypi_freia(row: Row) -> None:
    """(a), (b) and (c) of the module docstring for one row of the table."""
    theirs = build(getattr(Fm, row.name), row, 0)
    check_layout_and_draws(row, theirs, build(OURS[row.name], row, 0))
    xs, cs = row_data(row)
    call(theirs, xs, cs, rev=False)  # initialises data-dependent blocks (ActNorm)
    perturb(theirs, seed=7)
    ours = build(OURS[row.name], row, 1)  # (c) another seed: only the loaded state can agree
    transfer(row, theirs, ours)
    z, log_det = call(theirs, xs, cs, rev=False)
    z_ours, log_det_ours = call(ours, xs, cs, rev=False)
    assert_all_close([*z_ours, log_det_ours], [*z, log_det])
    x, log_det_rev = call(theirs, z, cs, rev=True)
    x_ours, log_det_rev_ours = call(ours, z, cs, rev=True)
    assert_all_close(x_ours, x)
    if row.rev_log_det != "skip":
        sign = -1.0 if row.rev_log_det == "negated" else 1.0
        torch.testing.assert_close(log_det_rev_ours, sign * log_det_rev, **TOL)


def test_table_covers_every_block_both_packages_have() -> None:
    """Every block class of ``invertible`` that FrEIA 0.2 also has appears in ``ROWS``."""
    names = (set(Im.__all__) | set(OURS)) - {"InvertibleModule"}
    shared = {n for n in names if hasattr(Fm, n)}
    assert {row.name for row in ROWS} == shared
    assert names - shared == NOT_IN_PYPI
    assert not hasattr(Fm, "BinnedSpline") and not hasattr(Fm, "BinnedSplineBase")


# ------------------------------------------------------------- PyPI 0.2 differences, pinned down


def use_freia_split(sizes: Any) -> None:
    """Build FrEIA's Split with ``section_sizes=sizes``, infer its shapes and run it."""
    split = Fm.Split([(5, 4)], section_sizes=sizes)
    split.output_dims([(5, 4)])
    split([torch.randn(B, 5, 4)])


@pytest.mark.parametrize(("sizes", "expected"), [(2, [(2, 4), (3, 4)]),
                                                 ([2, 2], [(2, 4), (2, 4), (1, 4)])])
def test_split_section_sizes_that_pypi_breaks(sizes: Any, expected: List[Shape]) -> None:
    """PyPI 0.2's Split fails for an int and for a too-short list; ours follows HEAD."""
    with pytest.raises(TypeError):
        use_freia_split(sizes)
    ours = OURS["Split"]([(5, 4)], section_sizes=sizes)
    assert ours.output_dims([(5, 4)]) == expected
    assert [tuple(t.shape[1:]) for t in ours([torch.randn(B, 5, 4)])[0]] == expected


def test_pypi_hard_permutation_draw_order() -> None:
    """HEAD vs PyPI 0.2: HEAD draws ``torch.randperm(C)`` then the subnet; PyPI 0.2 draws
    ``np.random.permutation(C)`` (a one-hot float matrix, ``w[i, p[i]] = 1``) then the subnet."""
    torch.manual_seed(4)
    np.random.seed(4)
    theirs = Fm.AllInOneBlock([(6,)], subnet_constructor=dense_subnet)
    torch.manual_seed(4)
    np.random.seed(4)
    ours = AllInOneBlock([(6,)], subnet_constructor=dense_subnet)
    torch.manual_seed(4)
    perm, subnet_after_perm = torch.randperm(6), dense_subnet(3, 6)
    torch.manual_seed(4)
    subnet_first = dense_subnet(3, 6)
    np_perm = torch.from_numpy(np.random.RandomState(4).permutation(6))
    assert torch.equal(theirs.w_perm, torch.eye(6)[np_perm]) and torch.equal(ours.w_perm, perm)
    assert all(torch.equal(a, b) for a, b in zip(theirs.subnet.parameters(),
                                                 subnet_first.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ours.subnet.parameters(),
                                                 subnet_after_perm.parameters()))
    ours.load_state_dict(theirs.state_dict())  # the one-hot matrices become index vectors
    assert torch.equal(ours.w_perm, np_perm) and torch.equal(ours.w_perm_inv, np_perm.argsort())


@pytest.mark.parametrize("kappa", [1.0, 2.0])
def test_pypi_all_in_one_block_differs_only_by_its_clamp(kappa: float) -> None:
    """Without ``legacy_clamp`` a loaded PyPI-0.2 block gives other outputs unless κ = 1."""
    row = Row("AllInOneBlock", V, {**DENSE, "affine_clamping": kappa, "permute_soft": True})
    theirs, ours = build(Fm.AllInOneBlock, row, 0), build(AllInOneBlock, row, 1)
    perturb(theirs, seed=7)
    ours.load_state_dict(theirs.state_dict())
    xs, _ = row_data(row)
    (z,), _ = call(theirs, xs, [], rev=False)
    (z_ours,), _ = call(ours, xs, [], rev=False)
    assert torch.allclose(z_ours, z, **TOL) == (kappa == 1.0)


def test_pypi_actnorm_keys_convert_to_the_same_map() -> None:
    """PyPI 0.2's ``z = x e^scale + bias`` loads as ``log_scale = -scale``,
    ``loc = -e^{-scale} bias``, marked initialised, with a DeprecationWarning."""
    theirs = Fm.ActNorm([(3, 4, 4)]).double()
    theirs([torch.randn(8, 3, 4, 4, dtype=torch.float64)])  # data-dependent initialisation
    perturb(theirs, seed=7)
    state = theirs.state_dict()
    assert set(state) == {"scale", "bias"}
    ours = OURS["ActNorm"]([(3, 4, 4)]).double()
    with pytest.warns(DeprecationWarning, match="scale.*bias"):
        ours.load_state_dict(state)
    assert bool(ours.is_initialized)
    torch.testing.assert_close(ours.log_scale.detach(), -state["scale"], **TOL)
    torch.testing.assert_close(ours.loc.detach(), -torch.exp(-state["scale"]) * state["bias"],
                               **TOL)


def test_seeded_permute_random_keeps_numpy_state() -> None:
    """A seeded PermuteRandom draws FrEIA's permutation from a local generator, where FrEIA
    reseeds numpy's global one (a side effect on user code). So numpy draws after a seeded
    PermuteRandom (soft permutations, unseeded PermuteRandom) differ from FrEIA's; the networks
    below therefore use ``seed=None``."""
    np.random.seed(0)
    theirs = Fm.PermuteRandom([(6,)], seed=3)
    after_theirs = np.random.rand()
    np.random.seed(0)
    ours = OURS["PermuteRandom"]([(6,)], seed=3)
    after_ours = np.random.rand()
    assert torch.equal(theirs.perm, ours.perm)
    rng = np.random.RandomState(3)
    rng.permutation(6)
    assert after_theirs == rng.rand()
    assert after_ours == np.random.RandomState(0).rand()


# ------------------------------------------------------------------------------ whole networks


def vector_chain(ff: Any, fm: Any) -> nn.Module:
    """A conditional SequenceINN(6) of most vector blocks."""
    inn = ff.SequenceINN(6)
    cond = {"cond": 0, "cond_shape": (2,)}
    inn.append(fm.AllInOneBlock, **cond, subnet_constructor=dense_subnet, permute_soft=True)
    inn.append(fm.RNVPCouplingBlock, **cond, subnet_constructor=dense_subnet)
    inn.append(fm.PermuteRandom)  # seed=None: see test_seeded_permute_random_keeps_numpy_state
    inn.append(fm.GLOWCouplingBlock, subnet_constructor=dense_subnet, clamp_activation="TANH")
    inn.append(fm.InvAutoActTwoSided)
    inn.append(fm.OrthogonalTransform)
    inn.append(fm.HouseholderPerm, n_reflections=3)
    inn.append(fm.GINCouplingBlock, subnet_constructor=dense_subnet)
    inn.append(fm.FixedLinearTransform, M=M6, b=torch.ones(6, dtype=torch.float64))
    inn.append(fm.ConditionalAffineTransform, **cond, subnet_constructor=dense_subnet)
    inn.append(fm.AllInOneBlock, subnet_constructor=dense_subnet, permute_soft=True,
               learned_householder_permutation=2)
    return inn


def image_chain(ff: Any, fm: Any) -> nn.Module:
    """A SequenceINN(3, 8, 8) through both downsamplings to a flat dense coupling."""
    inn = ff.SequenceINN(3, 8, 8)
    inn.append(fm.AllInOneBlock, subnet_constructor=conv_subnet, permute_soft=True)
    inn.append(fm.GLOWCouplingBlock, cond=0, cond_shape=(2, 8, 8), subnet_constructor=conv_subnet)
    inn.append(fm.Fixed1x1Conv, M=M3)
    inn.append(fm.InvAutoAct)
    inn.append(fm.IRevNetDownsampling)
    inn.append(fm.HaarDownsampling, rebalance=0.5)
    inn.append(fm.AffineCouplingOneSided, subnet_constructor=conv_subnet)
    inn.append(fm.Flatten)
    inn.append(fm.NICECouplingBlock, subnet_constructor=dense_subnet)
    return inn


def branching_graph(ff: Any, fm: Any) -> nn.Module:
    """A branching graph: split, two branches (one conditioned), concat, Haar."""
    inp, cond = ff.InputNode(3, 8, 8, name="input"), ff.ConditionNode(1, 8, 8, name="cond")
    split = ff.Node(inp, fm.Split, {"section_sizes": [1, 2]}, name="split")
    flat1 = ff.Node(split.out0, fm.Flatten, {}, name="flatten1")
    perm = ff.Node(flat1, fm.PermuteRandom, {}, name="perm")  # unseeded, as above
    back1 = ff.Node(perm, fm.Reshape, {"output_dims": (1, 8, 8)}, name="unflatten1")
    conv = ff.Node(split.out1, fm.RNVPCouplingBlock,
                   {"subnet_constructor": conv_subnet, "clamp": 1.0}, conditions=cond, name="conv")
    flat2 = ff.Node(conv, fm.Flatten, {}, name="flatten2")
    dense = ff.Node(flat2, fm.AllInOneBlock, {"subnet_constructor": dense_subnet,
                                             "permute_soft": True}, name="linear")
    back2 = ff.Node(dense, fm.Reshape, {"output_dims": (2, 8, 8)}, name="unflatten2")
    cat = ff.Node([back1.out0, back2.out0], fm.Concat, {"dim": 0}, name="concat")
    haar = ff.Node(cat, fm.HaarDownsampling, {}, name="haar")
    out = ff.OutputNode(haar, name="output")
    return ff.GraphINN([inp, cond, split, flat1, perm, back1, conv, flat2, dense, back2, cat,
                        haar, out])


NETWORKS = {  # builder, input shape, condition shape
    "vector_sequence": (vector_chain, (6,), (2,)),
    "image_sequence": (image_chain, (3, 8, 8), (2, 8, 8)),
    "graph": (branching_graph, (3, 8, 8), (1, 8, 8)),
}


def seeded(builder: Callable[[Any, Any], nn.Module], ours: bool, seed: int) -> nn.Module:
    """``builder`` run on FrEIA's or our namespaces after seeding both generators; float64."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    return (builder(If, OURS_NS) if ours else builder(Ff, Fm)).double()


def module_names(net: nn.Module) -> List[str]:
    """A name per ``module_list`` entry: its graph node's name, or its position."""
    nodes = getattr(net, "node_list", None)
    if nodes is None:
        return [str(k) for k in range(len(net.module_list))]
    by_module = {id(n.module): n.name for n in nodes if getattr(n, "module", None) is not None}
    return [by_module[id(m)] for m in net.module_list]


def translate(src: nn.Module, dst: nn.Module) -> Dict[str, Tensor]:
    """``src``'s state with ``module_list`` indices renumbered to ``dst``'s module order.

    FrEIA 0.2 orders the branches of a graph by memory address, so its ``module_list.k``
    may name another node than ours; the nodes' names match them up.
    """
    index = {name: k for k, name in enumerate(module_names(dst))}
    names = module_names(src)
    out = {}
    for key, value in src.state_dict().items():
        _, k, rest = key.split(".", 2)
        out[f"module_list.{index[names[int(k)]]}.{rest}"] = value
    return out


def run_net(net: nn.Module, x: Tensor, c: Optional[Tensor], rev: bool) -> Tuple[Tensor, Tensor]:
    """``net(x, c=[c], rev=rev)`` (no ``c`` if ``None``) on a clone of ``x``."""
    out, log_det = net(x.clone(), rev=rev) if c is None else net(x.clone(), c=[c], rev=rev)
    return out, log_det


@pytest.mark.parametrize("name", NETWORKS)
def test_network_matches_pypi_freia(name: str) -> None:
    """Same code and seeds build the same network; checkpoints move both ways; same numbers."""
    builder, shape, cond_shape = NETWORKS[name]
    theirs, ours = seeded(builder, False, 0), seeded(builder, True, 0)
    state, ours_state = translate(theirs, ours), ours.state_dict()
    assert layout(state) == layout(ours_state)
    assert all(torch.equal(state[k], ours_state[k]) for k in state)  # same seeds, same net
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, *shape, generator=gen, dtype=torch.float64)
    c = torch.randn(B, *cond_shape, generator=gen, dtype=torch.float64)
    perturb(theirs, seed=7)
    ours = seeded(builder, True, 1)
    ours.load_state_dict(translate(theirs, ours))
    back = seeded(builder, False, 2)
    back.load_state_dict(translate(ours, back))  # our checkpoint loads into FrEIA too
    assert_all_close([run_net(back, x, c, False)[0]], [run_net(theirs, x, c, False)[0]])
    emulate_pypi_clamp(ours)
    z, log_det = run_net(theirs, x, c, rev=False)
    z_ours, log_det_ours = run_net(ours, x, c, rev=False)
    assert_all_close([z_ours, log_det_ours], [z, log_det])
    x_back, log_det_rev = run_net(theirs, z, c, rev=True)
    x_ours, log_det_rev_ours = run_net(ours, z, c, rev=True)
    assert_all_close([x_ours, log_det_rev_ours], [x_back, log_det_rev])


def fastflow_like(ff: Any, fm: Any) -> nn.Module:
    """anomalib FastFlow style: ActNorm, then hard-permutation AllInOneBlocks on images."""
    inn = ff.SequenceINN(4, 8, 8)
    inn.append(fm.ActNorm)
    for _ in range(3):
        inn.append(fm.AllInOneBlock, subnet_constructor=conv_subnet, affine_clamping=2.0,
                   permute_soft=False)
    return inn


def cflow_like(ff: Any, fm: Any) -> nn.Module:
    """anomalib CFlow style: conditional hard-permutation AllInOneBlocks on vectors, ActNorm."""
    inn = ff.SequenceINN(6)
    for _ in range(3):
        inn.append(fm.AllInOneBlock, cond=0, cond_shape=(4,), subnet_constructor=dense_subnet,
                   affine_clamping=1.9, global_affine_type="SOFTPLUS", permute_soft=False)
    inn.append(fm.ActNorm)
    return inn


@pytest.mark.parametrize(("builder", "shape", "cond_shape"),
                         [(fastflow_like, (4, 8, 8), None), (cflow_like, (6,), (4,))])
def test_pypi_checkpoint_of_a_network_loads(
    builder: Any, shape: Shape, cond_shape: Optional[Shape]
) -> None:
    """Nested PyPI-0.2 formats load strictly: one-hot ``w_perm`` kernels and ActNorm's
    ``scale``/``bias`` under ``module_list.<k>.``; with the old clamp the outputs agree."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(8, *shape, generator=gen, dtype=torch.float64)
    c = None if cond_shape is None else torch.randn(8, *cond_shape, generator=gen,
                                                    dtype=torch.float64)
    theirs = seeded(builder, False, 0)
    run_net(theirs, x, c, rev=False)  # initialises the ActNorm
    perturb(theirs, seed=7)
    state = theirs.state_dict()
    assert state["module_list.1.w_perm"].dim() == len(shape) + 1  # (C, C, 1, ...) float
    assert any(k.endswith(".scale") for k in state)
    ours = seeded(builder, True, 1)
    with pytest.warns(DeprecationWarning, match="scale.*bias"):
        ours.load_state_dict(state)
    emulate_pypi_clamp(ours)
    z, log_det = run_net(theirs, x, c, rev=False)
    z_ours, log_det_ours = run_net(ours, x, c, rev=False)
    assert_all_close([z_ours, log_det_ours], [z, log_det])
    x_back, log_det_rev = run_net(theirs, z, c, rev=True)
    x_ours, log_det_rev_ours = run_net(ours, z, c, rev=True)
    assert_all_close([x_ours, log_det_rev_ours], [x_back, log_det_rev])


def test_legacy_clamp_keyword_reproduces_a_pypi_block() -> None:
    """``AllInOneBlock(..., legacy_clamp=True)`` loads a PyPI-0.2 checkpoint and gives its numbers
    (image input, a condition, hard permutation, κ = 2), both directions, with no emulation."""
    row = Row("AllInOneBlock", IMG, {**CONV, "affine_clamping": 2.0}, IC)
    theirs = build(Fm.AllInOneBlock, row, 0)
    torch.manual_seed(1)
    ours = AllInOneBlock(list(row.dims), list(row.dims_c), legacy_clamp=True, **row.kwargs).double()
    perturb(theirs, seed=7)
    ours.load_state_dict(theirs.state_dict())
    xs, cs = row_data(row)
    z, log_det = call(theirs, xs, cs, rev=False)
    z_ours, log_det_ours = call(ours, xs, cs, rev=False)
    assert_all_close([*z_ours, log_det_ours], [*z, log_det])
    x_back, log_det_rev = call(theirs, list(z), cs, rev=True)
    x_ours, log_det_rev_ours = call(ours, list(z), cs, rev=True)
    assert_all_close([*x_ours, log_det_rev_ours], [*x_back, log_det_rev])
