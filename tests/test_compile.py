"""``torch.compile(fullgraph=True)`` of SequenceINN and GraphINN around every public block.

Each block class of ``invertible.modules.__all__`` is wrapped in a tiny container (one-input
blocks in a SequenceINN, Split/Concat and the mixture model in a GraphINN) and compiled with
Dynamo's cheap ``eager`` backend, forward and inverse in one compiled round trip, with and
without conditions where the block takes them; the results must equal eager mode's. Blocks that
cannot compile are listed in ``EXCLUDED`` (the whole class) or ``PARTIAL`` (one configuration),
each with the reason, and a test shows that failure. The containers themselves add no graph
breaks (``torch._dynamo.explain``). A slow test runs the inductor backend (needs a C compiler).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest
import torch
import torch._dynamo
from torch import Tensor, nn

import invertible.modules as Fm
from invertible.framework.graph_inn import ConditionNode, GraphINN, InputNode, Node, OutputNode
from invertible.framework.sequence_inn import SequenceINN
from invertible.modules._permutation import permute_channels
from subnets import conv_subnet, dense_subnet

Shape = Tuple[int, ...]
Built = Tuple[nn.Module, List[Any]]  # the container and its conditions for a batch of B
B = 3
DENSE = {"subnet_constructor": dense_subnet}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Every compilation starts from an empty cache (all containers share one code object)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def chain(shape: Shape, block: Any, cond: Optional[Shape] = None, **kwargs: Any) -> Built:
    """A SequenceINN holding one block (conditioned on ``c[0]`` of shape ``cond`` if given)."""
    inn = SequenceINN(*shape)
    if cond is None:
        inn.append(block, **kwargs)
        return inn, []
    inn.append(block, cond=0, cond_shape=cond, **kwargs)
    return inn, [torch.randn(B, *cond)]


def split_concat(split: type, concat: type) -> Built:
    """Input (6,) -> Split -> GLOW on one part -> Concat -> output, as a GraphINN."""
    inp = InputNode(6, name="x")
    cut = Node(inp, split, {}, name="split")
    glow = Node(cut.out0, Fm.GLOWCouplingBlock, DENSE, name="glow")
    cat = Node([glow.out0, cut.out1], concat, {}, name="cat")
    return GraphINN([inp, cut, glow, cat, OutputNode(cat)]), []


def conditional_graph() -> Built:
    """Split | GLOW conditioned on c0 | RNVP conditioned on [c1, c0] | Concat; two outputs."""
    inp, c0, c1 = InputNode(6, name="x"), ConditionNode(2, name="c0"), ConditionNode(3, name="c1")
    cut = Node(inp, Fm.Split, {}, name="split")
    glow = Node(cut.out0, Fm.GLOWCouplingBlock, DENSE, conditions=c0, name="glow")
    rnvp = Node(cut.out1, Fm.RNVPCouplingBlock, DENSE, conditions=[c1, c0], name="rnvp")
    net = GraphINN([inp, c0, c1, cut, glow, rnvp, OutputNode(glow), OutputNode(rnvp)])
    return net, [torch.randn(B, 2), torch.randn(B, 3)]


def mixture(index: Any) -> Built:
    """A GaussianMixtureModel (d=3, K=2) in a GraphINN; ``index`` is its condition ``i``."""
    d, k = 3, 2
    shapes = [(k,), (k, d), (k, d * (d + 1) // 2), (1,)]
    inp, conds = InputNode(d, name="x"), [ConditionNode(*s) for s in shapes]
    gmm = Node(inp, Fm.GaussianMixtureModel, {}, conditions=conds, name="gmm")
    w = torch.softmax(torch.randn(B, k), dim=1)
    values = [w, torch.randn(B, k, d), 0.3 * torch.randn(B, k, d * (d + 1) // 2), index]
    return GraphINN([inp, *conds, gmm, OutputNode(gmm)]), values


def actnorm_initialised() -> Built:
    """ActNorm initialised from data at construction (so its forward has no init branch)."""
    return chain((3,), Fm.ActNorm, init_data=torch.randn(16, 3))


def inverse_glow(cond: Optional[Shape] = None) -> Built:
    """``Inverse(GLOWCouplingBlock)`` appended as an instance."""
    dims_c = [] if cond is None else [cond]
    block = Fm.Inverse(Fm.GLOWCouplingBlock([(4,)], dims_c, **DENSE))
    return chain((4,), block) if cond is None else chain((4,), block, cond)


def _coupling(block: type, image: bool = False) -> List[Tuple[str, Callable[[], Built]]]:
    """Vector and conditioned vector (and image) configurations of a coupling-type block."""
    builds = [
        ("vec", functools.partial(chain, (4,), block, **DENSE)),
        ("vec-cond", functools.partial(chain, (4,), block, (2,), **DENSE)),
    ]
    if image:
        builds.append(("img", functools.partial(chain, (2, 4, 4), block,
                                                subnet_constructor=conv_subnet)))
    return builds


M3 = 2.0 * torch.eye(3) + 0.1
#: class name -> configurations that compile with fullgraph=True and match eager mode.
BUILDS: Dict[str, List[Tuple[str, Callable[[], Built]]]] = {
    "AllInOneBlock": _coupling(Fm.AllInOneBlock, image=True) + [
        ("soft-permute", functools.partial(chain, (4,), Fm.AllInOneBlock, permute_soft=True,
                                           **DENSE))],
    "GLOWCouplingBlock": _coupling(Fm.GLOWCouplingBlock, image=True),
    "RNVPCouplingBlock": _coupling(Fm.RNVPCouplingBlock),
    "NICECouplingBlock": _coupling(Fm.NICECouplingBlock),
    "GINCouplingBlock": _coupling(Fm.GINCouplingBlock),
    "AffineCouplingOneSided": _coupling(Fm.AffineCouplingOneSided),
    "ConditionalAffineTransform": [
        ("vec-cond", functools.partial(chain, (4,), Fm.ConditionalAffineTransform, (2,),
                                       **DENSE))],
    "RationalQuadraticSpline": _coupling(Fm.RationalQuadraticSpline),
    "LinearSpline": _coupling(Fm.LinearSpline),
    "ElementwiseRationalQuadraticSpline": _coupling(Fm.ElementwiseRationalQuadraticSpline),
    "PermuteRandom": [("vec", functools.partial(chain, (4,), Fm.PermuteRandom, seed=0))],
    "FixedLinearTransform": [("vec", functools.partial(chain, (3,), Fm.FixedLinearTransform,
                                                       M=M3, b=torch.ones(3)))],
    "Fixed1x1Conv": [("img", functools.partial(chain, (3, 2, 2), Fm.Fixed1x1Conv, M=M3))],
    "Learned1x1Conv": [("vec", functools.partial(chain, (4,), Fm.Learned1x1Conv, seed=0)),
                       ("img-full", functools.partial(chain, (3, 2, 2), Fm.Learned1x1Conv,
                                                      lu=False, seed=0))],
    "AutoregressiveAffine": [
        ("vec", functools.partial(chain, (4,), Fm.AutoregressiveAffine, order="random", seed=0)),
        ("vec-cond-iaf", functools.partial(chain, (4,), Fm.AutoregressiveAffine, (2,),
                                           inverse_autoregressive=True, seed=0))],
    "AutoregressiveRQSpline": [
        ("vec", functools.partial(chain, (4,), Fm.AutoregressiveRQSpline, order="random",
                                  seed=0)),
        ("vec-cond-iaf", functools.partial(chain, (4,), Fm.AutoregressiveRQSpline, (2,),
                                           inverse_autoregressive=True, seed=0))],
    "InvertibleSigmoid": [("vec", functools.partial(chain, (3,), Fm.InvertibleSigmoid))],
    "ActNorm": [("initialised", actnorm_initialised)],
    "InvAutoAct": [("vec", functools.partial(chain, (3,), Fm.InvAutoAct))],
    "InvAutoActFixed": [("vec", functools.partial(chain, (3,), Fm.InvAutoActFixed))],
    "InvAutoActTwoSided": [("vec", functools.partial(chain, (3,), Fm.InvAutoActTwoSided))],
    "LearnedElementwiseScaling": [
        ("vec", functools.partial(chain, (3,), Fm.LearnedElementwiseScaling))],
    "HouseholderPerm": [
        ("vec", functools.partial(chain, (4,), Fm.HouseholderPerm, n_reflections=2)),
        ("vec-cond", functools.partial(chain, (4,), Fm.HouseholderPerm, (8,), n_reflections=2))],
    "IRevNetDownsampling": [("img", functools.partial(chain, (2, 4, 4), Fm.IRevNetDownsampling))],
    "IRevNetUpsampling": [("img", functools.partial(chain, (8, 2, 2), Fm.IRevNetUpsampling))],
    "HaarDownsampling": [("img", functools.partial(chain, (2, 4, 4), Fm.HaarDownsampling))],
    "HaarUpsampling": [("img", functools.partial(chain, (8, 2, 2), Fm.HaarUpsampling))],
    "Flatten": [("img", functools.partial(chain, (2, 2, 2), Fm.Flatten))],
    "Reshape": [("img", functools.partial(chain, (2, 2, 2), Fm.Reshape, output_dims=(4, 2)))],
    "Split": [("graph-cond", conditional_graph)],
    "Concat": [("graph", functools.partial(split_concat, Fm.Split, Fm.Concat))],
    "SplitChannel": [("graph", functools.partial(split_concat, Fm.SplitChannel,
                                                 Fm.ConcatChannel))],
    "ConcatChannel": [("graph", functools.partial(split_concat, Fm.SplitChannel,
                                                  Fm.ConcatChannel))],
    "GaussianMixtureModel": [("index-tensor", lambda: mixture(torch.randint(0, 2, (B,))))],
    "Inverse": [("glow", inverse_glow), ("glow-cond", functools.partial(inverse_glow, (2,)))],
}

#: class name -> why no configuration of it compiles with fullgraph=True.
EXCLUDED: Dict[str, str] = {
    "InvertibleModule": "the abstract base: its forward raises NotImplementedError",
    "CouplingBlock": "the base of the couplings: a subclass supplies the transform; the "
    "couplings built on it are compiled above",
    "IResNetLayer": "forward asks torch.is_inference_mode_enabled() (invertible_resnet.py), "
    "which Dynamo refuses; the reverse checks contractivity with a data-dependent float() and "
    "warns; the log-det draws Hutchinson noise, so outputs are random anyway",
    "InvAutoFC": "forward calls warnings.warn (the log-det is not tractable) on every call "
    "with jac=True, which Dynamo cannot trace; compiles with jac=False",
    "InvAutoConv2D": "as InvAutoFC",
    "OrthogonalTransform": "forward registers a tensor hook whose weight correction mutates "
    "the module (back_counter, numpy draws) during backward; compiles under no_grad only",
}

#: (class name, configuration) -> why that configuration does not compile.
PARTIAL: Dict[Tuple[str, str], str] = {
    ("ActNorm", "uninitialised"): "the one-shot data-dependent initialisation branches on the "
    "is_initialized buffer; after the first (eager) call the block compiles",
    ("GaussianMixtureModel", "int-seed"): "an int seed for the component index makes "
    "pick_mixture_component create a torch.Generator, an opaque object to Dynamo",
}


def _failing_builds() -> Dict[str, Callable[[], Built]]:
    """One build per exclusion whose failure is shown by a test."""
    return {
        "IResNetLayer": functools.partial(chain, (3,), Fm.IResNetLayer, internal_size=4,
                                          n_internal_layers=0),
        "InvAutoFC": functools.partial(chain, (3,), Fm.InvAutoFC),
        "InvAutoConv2D": functools.partial(chain, (2, 3, 3), Fm.InvAutoConv2D),
        "OrthogonalTransform": functools.partial(chain, (4,), Fm.OrthogonalTransform),
        "ActNorm/uninitialised": functools.partial(chain, (3,), Fm.ActNorm),
        "GaussianMixtureModel/int-seed": functools.partial(mixture, 3),
    }


def _roundtrip(net: nn.Module, x: Any, c: Sequence[Any], jac: bool = True) -> Tuple[Any, ...]:
    """Forward, then inverse of the forward's output: both directions in one compiled graph."""
    z, log_det = net(x, c=list(c), jac=jac)
    x_rev, log_det_rev = net(z, c=list(c), rev=True, jac=jac)
    return z, log_det, x_rev, log_det_rev


def _inputs(net: nn.Module) -> Any:
    """Random inputs for the container's input shapes (one tensor, or a list)."""
    xs = [torch.rand(B, *shape) * 2 - 1 for shape in net.dims_in]
    return xs[0] if len(xs) == 1 else xs


def _cases() -> List[Any]:
    return [pytest.param(name, build, id=f"{name}-{variant}")
            for name, variants in BUILDS.items() for variant, build in variants]


@pytest.mark.parametrize(("name", "build"), _cases())
def test_compiles_fullgraph_and_matches_eager(name: str, build: Callable[[], Built]) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # deprecated aliases (SplitChannel, InvAutoActFixed) warn
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        net, conds = build()
    x = _inputs(net)
    expected = _roundtrip(net, x, conds)
    compiled = torch.compile(functools.partial(_roundtrip, net), fullgraph=True, backend="eager")
    got = compiled(x, conds)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_every_public_block_is_compiled_or_excluded() -> None:
    covered = set(BUILDS) | set(EXCLUDED)
    assert sorted(set(Fm.__all__) - covered) == []
    assert not set(BUILDS) & set(EXCLUDED)
    assert {name for name, _ in PARTIAL} <= set(BUILDS)


@pytest.mark.parametrize("key", sorted(_failing_builds()))
def test_excluded_configurations_fail_to_compile(key: str) -> None:
    name, _, variant = key.partition("/")
    assert name in EXCLUDED or (name, variant) in PARTIAL
    torch.manual_seed(0)
    net, conds = _failing_builds()[key]()
    compiled = torch.compile(functools.partial(_roundtrip, net), fullgraph=True, backend="eager")
    x = _inputs(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(torch._dynamo.exc.TorchDynamoException):
            compiled(x, conds)


def test_partial_blocks_compile_where_documented() -> None:
    """InvAutoFC with jac=False, OrthogonalTransform under no_grad, ActNorm after its init."""
    torch.manual_seed(0)
    fc, _ = chain((3,), Fm.InvAutoFC)
    x = _inputs(fc)
    compiled = torch.compile(functools.partial(_roundtrip, fc, jac=False), fullgraph=True,
                             backend="eager")
    torch.testing.assert_close(compiled(x, []), _roundtrip(fc, x, [], jac=False))
    torch._dynamo.reset()
    orth, _ = chain((4,), Fm.OrthogonalTransform)
    x = _inputs(orth)
    with torch.no_grad():
        compiled = torch.compile(functools.partial(_roundtrip, orth), fullgraph=True,
                                 backend="eager")
        torch.testing.assert_close(compiled(x, []), _roundtrip(orth, x, []))
    torch._dynamo.reset()
    act, _ = chain((3,), Fm.ActNorm)
    act(torch.randn(8, 3))  # the eager first call initialises
    x = _inputs(act)
    compiled = torch.compile(functools.partial(_roundtrip, act), fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, []), _roundtrip(act, x, []))


def _graph_breaks(net: nn.Module, x: Any, conds: List[Tensor], rev: bool) -> Tuple[int, int]:
    """``(graph count, graph break count)`` of one call, from ``torch._dynamo.explain``."""
    explanation = torch._dynamo.explain(net)(x, c=conds, rev=rev)
    return explanation.graph_count, explanation.graph_break_count


@pytest.mark.parametrize("rev", [False, True])
def test_containers_add_no_graph_breaks(rev: bool) -> None:
    torch.manual_seed(0)
    inn = SequenceINN(4)
    inn.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(2,), **DENSE)
    inn.append(Fm.PermuteRandom, seed=0)
    inn.append(Fm.RNVPCouplingBlock, **DENSE)
    assert _graph_breaks(inn, torch.randn(B, 4), [torch.randn(B, 2)], rev) == (1, 0)
    torch._dynamo.reset()
    graph, conds = conditional_graph()
    xs = [torch.randn(B, 3), torch.randn(B, 3)] if rev else torch.randn(B, 6)
    assert _graph_breaks(graph, xs, conds, rev) == (1, 0)


def test_compiled_training_step_matches_eager_gradients() -> None:
    """AOTAutograd (``aot_eager``) traces the backward too; new batch sizes recompile."""
    torch.manual_seed(0)
    inn = SequenceINN(4)
    inn.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(2,), **DENSE)
    inn.append(Fm.PermuteRandom, seed=0)
    inn.append(Fm.RNVPCouplingBlock, **DENSE)
    compiled = torch.compile(inn, fullgraph=True, backend="aot_eager")
    for batch in (B, B + 2):
        x, c = torch.randn(batch, 4), torch.randn(batch, 2)
        grads = []
        for model in (inn, compiled):
            inn.zero_grad()
            z, log_det = model(x, c=[c])
            (0.5 * z.pow(2).sum() - log_det.sum()).backward()
            grads.append([p.grad.clone() for p in inn.parameters() if p.requires_grad])
        for eager, traced in zip(*grads):
            torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_inductor_compiles_chain_and_graph() -> None:
    """The real backend (C++ code generation, needs a C compiler) on a chain and a graph."""
    torch.manual_seed(0)
    for net, conds in (_coupling(Fm.GLOWCouplingBlock)[1][1](), conditional_graph()):
        x = _inputs(net)
        compiled = torch.compile(functools.partial(_roundtrip, net), fullgraph=True)
        torch.testing.assert_close(compiled(x, conds), _roundtrip(net, x, conds), rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_vector_permutation_is_exact(dtype: torch.dtype) -> None:
    """Compiled, vectors are permuted by a one-hot product (one BLAS call): still bit-exact,
    forward and gradient, and equal to the eager index gather."""
    index = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    x = (torch.randn(32, 16, dtype=dtype) * 1e3).requires_grad_()
    compiled = torch.compile(permute_channels, fullgraph=True, backend="aot_eager")
    y = compiled(x, index)
    assert torch.equal(y, x.index_select(1, index))
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, g)
    assert torch.equal(grad, g.index_select(1, torch.argsort(index)))
