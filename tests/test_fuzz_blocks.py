"""Hypothesis: random shapes, split lengths, clamps, conditions and block sequences keep the
property-suite invariants (shapes, exact round trips, log-det = autograd slogdet, ``jac=False``,
eval-mode batch independence, untouched inputs).

Single blocks built for one image size also run at another (exact round trip there).

The number of examples comes from the hypothesis profile (tests/conftest.py): ``ci`` (default,
fast) or ``long`` (``HYPOTHESIS_PROFILE=long``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import invertible.modules as Fm
from invertible import testing as T
from invertible.framework.graph_inn import ConditionNode, GraphINN, InputNode, Node, OutputNode
from invertible.framework.sequence_inn import SequenceINN
from invertible.modules.orthogonal import orth_correction
from invertible.modules.splines import ElementwiseRationalQuadraticSpline
from subnets import conv1x1_subnet, dense_subnet

#: Random split sizes are often unequal, which ``Split`` warns about (as FrEIA's does).
pytestmark = pytest.mark.filterwarnings("ignore:Split will create sections of unequal size")
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
D = torch.float64
Shape = Tuple[int, ...]
#: (class, kwargs, condition channels or 0): one block of a chain
Spec = Tuple[Any, Dict[str, Any], int]

COUPLINGS = [
    Fm.NICECouplingBlock,
    Fm.RNVPCouplingBlock,
    Fm.GLOWCouplingBlock,
    Fm.GINCouplingBlock,
    Fm.AffineCouplingOneSided,
]
CLAMP_ACTIVATIONS = ["ATAN", "TANH", "SIGMOID"]


# --- strategies --------------------------------------------------------------------------------


@st.composite
def shapes(draw: st.DrawFn, min_channels: int = 2) -> Shape:
    """A vector shape (C,) or an image shape (C, H, W); H, W often even (for the reshapes)."""
    channels = draw(st.integers(min_channels, 7))
    if draw(st.booleans()):
        return (channels,)
    return (channels, draw(st.sampled_from([1, 2, 3, 4])), draw(st.sampled_from([1, 2, 4])))


@st.composite
def split_lengths(draw: st.DrawFn, channels: int) -> Any:
    """A coupling ``split_len`` giving two non-empty halves: an int or a fraction."""
    if draw(st.booleans()):
        return draw(st.integers(1, channels - 1))
    return draw(st.sampled_from([f for f in (0.25, 0.4, 0.5, 0.6, 0.75)
                                 if 1 <= round(channels * f) <= channels - 1] or [0.5]))


@st.composite
def coupling_spec(draw: st.DrawFn, shape: Shape, cond: int) -> Spec:
    cls = draw(st.sampled_from(COUPLINGS))
    kwargs: Dict[str, Any] = {"split_len": draw(split_lengths(shape[0]))}
    if cls is not Fm.NICECouplingBlock:
        kwargs["clamp"] = draw(st.floats(0.3, 4.0))
        kwargs["clamp_activation"] = draw(st.sampled_from(CLAMP_ACTIVATIONS))
    return cls, kwargs, cond


@st.composite
def all_in_one_spec(draw: st.DrawFn, shape: Shape, cond: int) -> Spec:
    kwargs = {
        "affine_clamping": draw(st.floats(0.3, 4.0)),
        "gin_block": draw(st.booleans()),
        "global_affine_type": draw(st.sampled_from(["SOFTPLUS", "SIGMOID", "EXP"])),
        "reverse_permutation": draw(st.booleans()),
        "permute_soft": draw(st.booleans()),
        "learned_householder_permutation": draw(st.sampled_from([0, 0, 2])),
    }
    return Fm.AllInOneBlock, kwargs, cond


@st.composite
def spline_spec(draw: st.DrawFn, shape: Shape, cond: int) -> Spec:
    cls = draw(st.sampled_from([Fm.RationalQuadraticSpline, Fm.LinearSpline]))
    tails = draw(st.booleans())  # one bin with identity tails is the identity map
    kwargs = {"bins": draw(st.integers(2 if tails else 1, 5)), "identity_tails": tails,
              "split_len": draw(split_lengths(shape[0]))}
    return cls, kwargs, cond


def unconditioned_specs(shape: Shape) -> List[Spec]:
    """Blocks without subnets or conditions that fit ``shape``."""
    specs: List[Spec] = [
        (Fm.ActNorm, {}, 0),
        (Fm.PermuteRandom, {"seed": 3}, 0),
        (Fm.InvAutoAct, {"slope_init": 1.5}, 0),
        (Fm.InvAutoActTwoSided, {}, 0),
        (Fm.LearnedElementwiseScaling, {"init_scale": 0.7}, 0),
        (ElementwiseRationalQuadraticSpline, {"bins": 3}, 0),
    ]
    if len(shape) == 1:
        specs += [(Fm.HouseholderPerm, {"n_reflections": 3}, 0),
                  (Fm.OrthogonalTransform, {}, 0)]
    else:
        specs.append((Fm.Flatten, {}, 0))
        if shape[1] % 2 == 0 and shape[2] % 2 == 0:
            specs += [(Fm.HaarDownsampling, {"rebalance": 0.5}, 0),
                      (Fm.IRevNetDownsampling, {}, 0)]
    return specs


@st.composite
def block_step(draw: st.DrawFn, shape: Shape, conditioned: bool) -> Spec:
    """One block that fits ``shape``; conditioned blocks get a fresh condition of 1-3 channels."""
    cond = draw(st.integers(1, 3)) if conditioned and draw(st.booleans()) else 0
    kind = draw(st.sampled_from(["coupling", "all_in_one", "spline", "simple"]))
    if kind == "coupling":
        return draw(coupling_spec(shape, cond))
    if kind == "all_in_one":
        return draw(all_in_one_spec(shape, cond))
    if kind == "spline":
        return draw(spline_spec(shape, cond))
    return draw(st.sampled_from(unconditioned_specs(shape)))


def out_shape(cls: Any, kwargs: Dict[str, Any], shape: Shape) -> Shape:
    """The block's output shape (built without side effects on the chain)."""
    return tuple(cls([shape], **_subnet_args(cls, shape)).output_dims([shape])[0])


def _subnet_args(cls: Any, shape: Shape) -> Dict[str, Any]:
    if cls in COUPLINGS or cls in (Fm.AllInOneBlock, Fm.RationalQuadraticSpline,
                                   Fm.LinearSpline):
        return {"subnet_constructor": dense_subnet if len(shape) == 1 else conv1x1_subnet}
    return {}


@st.composite
def chains(draw: st.DrawFn, conditioned: bool) -> Tuple[Shape, List[Tuple[Spec, Shape]]]:
    """An input shape and 1-5 blocks, each with the shape it receives."""
    shape = draw(shapes())
    steps: List[Tuple[Spec, Shape]] = []
    current = shape
    for _ in range(draw(st.integers(1, 5))):
        spec = draw(block_step(current, conditioned))
        steps.append((spec, current))
        if spec[0] in (Fm.Flatten, Fm.HaarDownsampling, Fm.IRevNetDownsampling):
            current = out_shape(spec[0], spec[1], current)
    return shape, steps


# --- builders ----------------------------------------------------------------------------------


def build_chain(shape: Shape, steps: List[Tuple[Spec, Shape]], gen: torch.Generator):
    """The SequenceINN (float64) and the condition tensors' shapes it expects, in order."""
    inn = SequenceINN(*shape)
    cond_shapes: List[Shape] = []
    for (cls, kwargs, cond), current in steps:
        extra = dict(_subnet_args(cls, current))
        if cls is Fm.ActNorm:
            extra["init_data"] = 1.0 + 2.0 * torch.randn(8, *current, generator=gen)
        if cond:
            cond_shapes.append((cond, *current[1:]))
            inn.append(cls, cond=len(cond_shapes) - 1, cond_shape=cond_shapes[-1], **kwargs,
                       **extra)
        else:
            inn.append(cls, **kwargs, **extra)
    return exact_in_float64(inn.double()), cond_shapes


def exact_in_float64(module: nn.Module) -> nn.Module:
    """Re-orthonormalise, in float64, the rotations that FrEIA's layout stores in float32.

    A soft ``AllInOneBlock`` permutation (``w_perm``, ``w_perm_inv = w_permᵀ``, or ``w_0`` of
    the Householder variant) and ``OrthogonalTransform.weights`` are orthogonal only to ~1e-7
    after ``.double()``; the blocks assume exact orthogonality, so a deep random chain would
    drift by 1e-6 (see tests/cases/all_in_one.py and orthogonal.py, which do the same).
    """
    for block in module.modules():
        if isinstance(block, Fm.OrthogonalTransform):
            orth_correction(block.weights.data)
        if isinstance(block, Fm.AllInOneBlock):
            w_perm = getattr(block, "w_perm", None)
            if isinstance(w_perm, Tensor) and w_perm.is_floating_point():
                channels = w_perm.shape[0]
                rotation = orth_correction(w_perm.data.reshape(channels, channels).clone())
                w_perm.data.copy_(rotation.reshape(w_perm.shape))
                block.w_perm_inv.data.copy_(rotation.t().reshape(w_perm.shape))
            w_0 = getattr(block, "w_0", None)
            if isinstance(w_0, Tensor):
                orth_correction(w_0.data)
    return module


def check_invariants(module: Any, xs: List[Tensor], cs: Optional[List[Tensor]],
                     expected: List[Shape]) -> None:
    """The property suite's invariants, in float64."""
    T.check_output_shapes(module, xs, cs, expected)
    T.check_round_trip(module, xs, cs, atol=1e-8)
    T.check_log_det_autograd(module, xs, cs, atol=1e-6)
    zs = [z.detach() for z in T.run(module, xs, cs)[0]]
    T.check_log_det_autograd(module, zs, cs, atol=1e-6, rev=True)
    T.check_jac_false(module, xs, cs)
    T.check_batch_independence(module, xs, cs)
    T.check_inputs_unchanged(module, xs, cs)


# --- tests -------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), batch=st.integers(1, 4), conditioned=st.booleans())
def test_random_chains_keep_the_invariants(
    data: st.DataObject, batch: int, conditioned: bool
) -> None:
    shape, steps = data.draw(chains(conditioned))
    seed = data.draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    inn, cond_shapes = build_chain(shape, steps, gen)
    x = torch.randn(batch, *shape, dtype=D, generator=gen)
    cs = [torch.randn(batch, *s, dtype=D, generator=gen) for s in cond_shapes] or None
    check_invariants(inn, [x], cs, [tuple(inn.shapes[-1])])


@st.composite
def split_specs(draw: st.DrawFn) -> Tuple[Shape, Dict[str, Any], int]:
    """A shape, Split's keyword arguments (sizes, section count or an int), and the axis."""
    shape = draw(shapes())
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    length = shape[dim]
    if length < 2:
        return shape, {"dim": dim, "n_sections": 1}, dim  # rejected below: too short
    how = draw(st.sampled_from(["sizes", "n", "int"]))
    if how == "int":
        return shape, {"section_sizes": draw(st.integers(1, length - 1)), "dim": dim}, dim
    if how == "n":
        return shape, {"n_sections": draw(st.integers(2, length)), "dim": dim}, dim
    cut = sorted(draw(st.sets(st.integers(1, length - 1), min_size=1, max_size=3)))
    sizes = [b - a for a, b in zip([0, *cut], [*cut, length])]
    return shape, {"section_sizes": sizes, "dim": dim}, dim


def branch(node: Any, shape: Shape, cond: Optional[Any], k: int) -> Any:
    """A coupling on a branch when it has at least 2 channels, else a learned scaling."""
    if shape[0] >= 2:
        subnet = dense_subnet if len(shape) == 1 else conv1x1_subnet
        conditions = None if cond is None or shape[1:] != cond[1] else cond[0]
        return Node(node, Fm.GLOWCouplingBlock, {"subnet_constructor": subnet, "clamp": 1.5},
                    conditions=conditions, name=f"coupling_{k}")
    return Node(node, Fm.LearnedElementwiseScaling, {"init_scale": 1.3}, name=f"scale_{k}")


@SETTINGS
@given(data=st.data(), spec=split_specs(), batch=st.integers(1, 3), merge=st.booleans(),
       conditioned=st.booleans())
def test_random_split_graphs_keep_the_invariants(
    data: st.DataObject, spec: Tuple[Shape, Dict[str, Any], int], batch: int, merge: bool,
    conditioned: bool,
) -> None:
    shape, kwargs, dim = spec
    if kwargs.get("n_sections") == 1:
        return
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    inp = InputNode(*shape, name="x")
    cond = ConditionNode(2, *shape[1:], name="c") if conditioned else None
    split = Node(inp, Fm.Split, kwargs, name="split")
    cond_info = None if cond is None else (cond, tuple(shape[1:]))
    branches = [branch((split, k), s, cond_info, k)
                for k, s in enumerate(split.output_dims)]
    nodes = [inp, split, *branches] + ([cond] if cond is not None else [])
    if merge:
        cat = Node([b.out0 for b in branches], Fm.Concat, {"dim": dim}, name="cat")
        nodes += [cat, OutputNode(cat, name="z")]
    else:
        nodes += [OutputNode(b, name=f"z{k}") for k, b in enumerate(branches)]
    graph = GraphINN(nodes, force_tuple_output=True).double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(batch, *shape, dtype=D, generator=gen)
    used = cond is not None and any(b.conditions for b in branches)
    if cond is not None and not used:
        return  # an unused ConditionNode is a graph error, tested elsewhere
    cs = [torch.randn(batch, 2, *shape[1:], dtype=D, generator=gen)] if used else None
    check_invariants(graph, [x], cs, [tuple(s) for s in graph.global_out_shapes])


@SETTINGS
@given(shape=shapes(), batch=st.integers(1, 4), data=st.data())
def test_random_block_configurations_alone(shape: Shape, batch: int, data: st.DataObject) -> None:
    """Single blocks with random split lengths, clamps and condition shapes, called directly,
    images also at another size than the one they were built for."""
    cond = data.draw(st.integers(0, 3))
    spec_strategy: Callable[..., Any] = data.draw(
        st.sampled_from([coupling_spec, all_in_one_spec, spline_spec])
    )
    cls, kwargs, _ = data.draw(spec_strategy(shape, cond))
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    dims_c = [(cond, *shape[1:])] if cond else []
    block = exact_in_float64(cls([shape], dims_c, **kwargs, **_subnet_args(cls, shape)).double())
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(batch, *shape, dtype=D, generator=gen)
    cs = [torch.randn(batch, *dims_c[0], dtype=D, generator=gen)] if cond else None
    check_invariants(block, [x], cs, [shape])
    if cs is not None:
        T.check_conditions_used(block, [x], cs)
    if len(shape) == 3 and not block.fixed_size:  # built for one image size, run at another
        other = (shape[0], shape[1] + 1, shape[2] + 2)
        x2 = torch.randn(batch, *other, dtype=D, generator=gen)
        cs2 = [torch.randn(batch, cond, *other[1:], dtype=D, generator=gen)] if cond else None
        T.check_output_shapes(block, [x2], cs2, [other])
        T.check_round_trip(block, [x2], cs2, atol=1e-8)
