"""GraphINN and nodes: node API, topological order, execution, pickling, embedding."""

from __future__ import annotations

import copy
import io
import math
import sys
import warnings
from typing import List

import numpy as np
import pytest
import torch
from torch import nn

from invertible.framework.graph_inn import (
    ConditionNode,
    FeedForwardNode,
    GraphINN,
    InputNode,
    Node,
    OutputNode,
    collect_nodes,
    parse_flexible_inputs,
    topological_order,
)
from invertible.framework.reversible_graph_net import ReversibleGraphNet
from invertible.framework.sequence_inn import SequenceINN
from invertible.modules.all_in_one_block import AllInOneBlock
from invertible.modules.base import InvertibleModule
from invertible.modules.coupling_layers import GLOWCouplingBlock, RNVPCouplingBlock
from invertible.modules.fixed_transforms import PermuteRandom
from invertible.modules.graph_topology import Concat, Split
from invertible.modules.reshapes import Flatten, HaarDownsampling, Reshape
from subnets import conv_subnet, dense_subnet
from toy_blocks import ScalarLogDetScale, Scale2

D64 = torch.float64
DENSE = {"subnet_constructor": dense_subnet}
FREIA_ORDER = ["input", "cond", "split1", "conv", "flatten2", "flatten1", "linear", "perm",
           "unflatten2", "unflatten1", "concat", "haar", "output"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: extra intra-op threads only add contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def freia_test_graph(size: int = 10) -> List:
    """FrEIA's 13-node test graph (its own tests use ``size`` 10), nodes in construction order."""
    inp, cond = InputNode(3, size, size, name="input"), ConditionNode(1, size, size, name="cond")
    split = Node(inp, Split, {"section_sizes": [1, 2], "dim": 0}, name="split1")
    flatten1 = Node(split.out0, Flatten, {}, name="flatten1")
    perm = Node(flatten1, PermuteRandom, {"seed": 123}, name="perm")
    unflatten1 = Node(perm, Reshape, {"output_dims": (1, size, size)}, name="unflatten1")
    conv = Node(split.out1, RNVPCouplingBlock, {"subnet_constructor": conv_subnet, "clamp": 1.0},
                conditions=cond, name="conv")
    flatten2 = Node(conv, Flatten, {}, name="flatten2")
    linear = Node(flatten2, RNVPCouplingBlock, {"subnet_constructor": dense_subnet, "clamp": 1.0},
                  name="linear")
    unflatten2 = Node(linear, Reshape, {"output_dims": (2, size, size)}, name="unflatten2")
    concat = Node([unflatten1.out0, unflatten2.out0], Concat, {"dim": 0}, name="concat")
    haar = Node(concat, HaarDownsampling, {}, name="haar")
    return [inp, cond, split, flatten1, perm, unflatten1, conv, flatten2, linear, unflatten2,
            concat, haar, OutputNode(haar, name="output")]


def chain(n_blocks: int, width: int = 4) -> GraphINN:
    """Input -> ``n_blocks`` GLOW couplings -> output."""
    node = InputNode(width, name="in")
    nodes = [node]
    for k in range(n_blocks):
        node = Node(node, GLOWCouplingBlock, DENSE, name=f"glow{k}")
        nodes.append(node)
    return GraphINN([*nodes, OutputNode(node, name="out")])


# ---------------------------------------------------------------------------------- nodes


def test_parse_flexible_inputs_forms() -> None:
    a = InputNode(4)
    b = Node(a, Split, {"section_sizes": [1, 3]})
    assert parse_flexible_inputs(a) == [(a, 0)]
    assert parse_flexible_inputs(b.out1) == [(b, 1)]
    assert parse_flexible_inputs([b, 1]) == [(b, 1)]  # a 2-list ending in an int: one connection
    assert parse_flexible_inputs([b.out0, (b, 1)]) == [(b, 0), (b, 1)]
    assert parse_flexible_inputs([b, a]) == [(b, 0), (a, 0)]
    assert parse_flexible_inputs([]) == []
    assert all(isinstance(conn, tuple) for conn in parse_flexible_inputs([[b, 1]]))


def test_node_attributes_and_strings() -> None:
    inp = InputNode(3, 4, 4, name="x")
    node = Node(inp, Split, {"section_sizes": [1, 2]}, name="split")
    assert (node.inputs, node.input_dims, node.conditions, node.condition_dims) == (
        [(inp, 0)], [(3, 4, 4)], [], [])
    assert node.output_dims == [(1, 4, 4), (2, 4, 4)]
    assert (node.out0, node.out1) == ((node, 0), (node, 1))
    assert not hasattr(node, "out2")
    assert node.outputs == [None, None] and inp.outputs == [(node, 0)]
    assert node.module_type is Split and node.module_args == {"section_sizes": [1, 2]}
    assert isinstance(node.module, Split)
    assert str(node) == "Node 'split': [(3, 4, 4)] -> Split -> [(1, 4, 4), (2, 4, 4)]"
    assert repr(node) == "Node 'split'" and str(inp) == "InputNode 'x': [] ->  -> [(3, 4, 4)]"
    assert node.rev_input(0) is None
    unnamed = Node(node.out0, Flatten)
    assert unnamed.name == hex(id(unnamed))[-6:] and unnamed.module_args is None


def test_source_and_output_nodes() -> None:
    inp, cond = InputNode(3, 10, 10), ConditionNode(2, name="c")
    for node in (inp, cond):
        assert (node.dims, node.output_dims, node.input_dims) == ((node.dims), [node.dims], [])
        assert (node.inputs, node.conditions, node.module, node.module_type) == ([], [], None, None)
        assert node.module_args == {}
    assert inp.outputs == [None] and cond.outputs == [] and cond.out0 == (cond, 0)
    assert cond.rev_input(0) == (cond, 0)
    out = OutputNode([inp.out0])
    assert (out.output_dims, out.outputs, out.input_dims) == ([], [], [(3, 10, 10)])
    assert not hasattr(out, "out0") and inp.rev_input(0) == (out, 0)
    graph = GraphINN([inp, out])
    assert inp.output_dims == out.input_dims == graph.dims_in
    x = torch.randn(2, 3, 10, 10)
    z, log_det = graph(x)
    assert z is x and torch.equal(log_det, torch.zeros(2))


def test_node_with_class_without_args_and_with_instance() -> None:
    inp = InputNode(4)
    perm = Node(inp, PermuteRandom)
    block = AllInOneBlock(perm.output_dims, subnet_constructor=nn.Linear)
    aio = Node(perm, block)
    assert aio.module is block and aio.module_type is AllInOneBlock and aio.module_args is None
    graph = GraphINN([inp, perm, aio, OutputNode(aio)])
    z, log_det = graph(torch.randn(3, 4))
    assert z.shape == (3, 4) and log_det.shape == (3,)


def test_conditioned_module_gets_dims_c() -> None:
    inp, c1, c2 = InputNode(4), ConditionNode(3), ConditionNode(2)
    node = Node(inp, GLOWCouplingBlock, DENSE, conditions=[c1, c2.out0])
    assert node.condition_dims == [(3,), (2,)] and node.module.dims_c == [(3,), (2,)]
    assert node.rev_conditions() == [(c1, 0), (c2, 0)]


# ---------------------------------------------------------------------------------- order


def test_freia_graph_order_module_list_and_state_dict_are_deterministic() -> None:
    keys = None
    for attempt in range(3):
        nodes = freia_test_graph()
        order = nodes if attempt == 0 else nodes[::-1] if attempt == 1 else nodes[1::2] + nodes[::2]
        torch.manual_seed(0)
        graph = GraphINN(order)
        assert [n.name for n in graph.node_list] == FREIA_ORDER
        assert [n.name for n in graph.node_list_rev] == [
            "output", "haar", "concat", "unflatten2", "linear", "unflatten1", "cond", "flatten2",
            "perm", "conv", "flatten1", "split1", "input"]
        assert [type(m).__name__ for m in graph.module_list] == [
            "Split", "RNVPCouplingBlock", "Flatten", "Flatten", "RNVPCouplingBlock",
            "PermuteRandom", "Reshape", "Reshape", "Concat", "HaarDownsampling"]
        keys = keys or list(graph.state_dict())
        assert list(graph.state_dict()) == keys
    assert keys[0].startswith("module_list.1.subnet_s1.")
    assert "module_list.5.perm" in keys


def test_topological_order_function_and_collect_nodes() -> None:
    nodes = freia_test_graph()
    inp, out = nodes[0], nodes[-1]
    assert [n.name for n in topological_order(nodes, [inp], [out])] == FREIA_ORDER
    rev = topological_order(nodes, [inp], [out], rev=True)
    assert rev[0] is out and rev[-1] is inp
    found = collect_nodes(inp, nodes[1])
    assert set(found) == set(nodes) and found[0] is inp and len(found) == 13
    assert set(collect_nodes(inp)) == set(nodes)  # the condition is found through `conv`


def test_freia_graph_round_trip_and_numerical_log_det() -> None:
    torch.manual_seed(0)
    graph = GraphINN(freia_test_graph()).double()
    x = torch.randn(2, 3, 10, 10, dtype=D64)
    c = torch.randn(2, 1, 10, 10, dtype=D64)
    z, log_det = graph(x, c)
    assert z.shape == (2, 12, 5, 5) and log_det.shape == (2,) and log_det.dtype == D64
    x_rev, log_det_rev = graph(z, [c], rev=True)
    assert torch.allclose(x_rev, x, atol=1e-10)
    assert torch.allclose(log_det + log_det_rev, torch.zeros(2, dtype=D64), atol=1e-10)
    numerical = graph.log_jacobian_numerical(x, c, h=1e-3)
    assert numerical.dtype == D64 and torch.allclose(numerical, log_det, rtol=0.03)
    assert graph.get_node_by_name("perm") is graph.node_list[7]
    assert graph.get_module_by_name("perm") is graph.module_list[5]
    assert graph.get_module_by_name("input") is None and graph.get_node_by_name("nope") is None


def test_order_of_inputs_outputs_and_conditions_follows_node_list() -> None:
    a, b = InputNode(2, name="a"), InputNode(3, name="b")
    ca, cb = ConditionNode(1, name="ca"), ConditionNode(2, name="cb")
    cat = Node([a, b], Concat, conditions=None)
    glow = Node(cat, GLOWCouplingBlock, DENSE, conditions=[cb, ca])
    split = Node(glow, Split, {"section_sizes": [1, 4]})
    o1, o2 = OutputNode(split.out0, name="o1"), OutputNode(split.out1, name="o2")
    graph = GraphINN([b, o2, cb, glow, a, cat, split, ca, o1])
    assert graph.in_nodes == [b, a] and graph.out_nodes == [o2, o1]
    assert graph.condition_nodes == [cb, ca] and graph.dims_in == [(3,), (2,)]
    assert graph.dims_c == [(2,), (1,)] and graph.global_out_shapes == [(4,), (1,)]
    assert graph.output_dims() == [(4,), (1,)] and graph.output_dims([(9,)]) == [(4,), (1,)]
    xb, xa = torch.randn(5, 3), torch.randn(5, 2)
    cond_b, cond_a = torch.randn(5, 2), torch.randn(5, 1)
    (z2, z1), log_det = graph([xb, xa], [cond_b, cond_a])
    assert z2.shape == (5, 4) and z1.shape == (5, 1)
    (xb2, xa2), _ = graph((z2, z1), (cond_b, cond_a), rev=True)
    assert torch.allclose(xa2, xa, atol=1e-6) and torch.allclose(xb2, xb, atol=1e-6)


# ---------------------------------------------------------------------------------- execution


def test_log_det_normalisation_and_accumulator_dtype() -> None:
    inp = InputNode(3)
    scale = Node(inp, Scale2, {})  # Python-float log-det
    summed = Node(scale, ScalarLogDetScale, {})  # 0-dim log-det: broadcast to every sample
    graph = GraphINN([inp, scale, summed, OutputNode(summed)]).double()
    x = torch.randn(4, 3, dtype=D64)
    z, log_det = graph(x)
    expected = 3 * math.log(2.0) + 0.3 * 3
    assert log_det.dtype == D64 and torch.allclose(log_det, torch.full((4,), expected, dtype=D64))
    _, zeros = graph(x, jac=False)
    assert torch.equal(zeros, torch.zeros(4, dtype=D64))


class NumpyLogDet(InvertibleModule):
    """Returns a numpy scalar log-det, and ``None`` when ``jac=False``."""

    def forward(self, x, rev=False, jac=True):
        return [x[0] + 1.0], (np.float64(-0.5 if rev else 0.5) if jac else None)

    def output_dims(self, input_dims):
        return input_dims


def test_numpy_scalar_and_none_log_dets() -> None:
    inp = InputNode(2)
    node = Node(inp, NumpyLogDet)
    graph = GraphINN([inp, node, OutputNode(node)])
    x = torch.randn(3, 2)
    assert torch.equal(graph(x)[1], torch.full((3,), 0.5))
    z, log_det = graph(x, jac=False)
    assert torch.equal(z, x + 1.0) and torch.equal(log_det, torch.zeros(3))


def test_intermediate_outputs_and_deprecated_x_alias() -> None:
    torch.manual_seed(0)
    graph = chain(2)
    x = torch.randn(3, 4)
    values, jacobians = graph(x, intermediate_outputs=True)
    inp, glow0, glow1, out = (graph.get_node_by_name(n) for n in ("in", "glow0", "glow1", "out"))
    assert values[(inp, 0)] is x and values[(out, 0)] is values[(glow1, 0)]
    assert set(jacobians) == {glow0, glow1}
    z, log_det = graph(x)
    assert torch.allclose(values[(out, 0)], z)
    assert torch.allclose(jacobians[glow0] + jacobians[glow1], log_det)
    values_rev, none = graph(z, rev=True, jac=False, intermediate_outputs=True)
    assert none is None and torch.allclose(values_rev[(inp, 0)], x, atol=1e-6)
    assert values_rev[(inp, 0)] is values_rev[(glow0, 0)]
    with pytest.warns(DeprecationWarning, match="x_or_z"):
        z2, _ = graph(x=x)
    assert torch.equal(z2, z)


class PairSum(nn.Module):
    """A plain module taking two condition tensors positionally."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([a, b], dim=1))


def test_feed_forward_node_plain_and_invertible_module() -> None:
    inp, c1, c2 = InputNode(4), ConditionNode(3), ConditionNode(2)
    embed = FeedForwardNode([c1, c2], (4,), PairSum, name="embed")
    assert (embed.inputs, embed.outputs, embed.output_dims) == ([], [], [(4,)])
    assert embed.module_output_dims == (4,) and embed.rev_input(0) == (embed, 0)
    doubled = FeedForwardNode(embed, (4,), Scale2([(4,)]), name="doubled")  # log-det ignored
    glow = Node(inp, GLOWCouplingBlock, DENSE, conditions=[doubled, c1])
    graph = GraphINN([inp, c1, c2, embed, doubled, glow, OutputNode(glow)])
    assert graph.ff_nodes == [embed, doubled] and len(graph.module_list) == 3
    x, cs = torch.randn(3, 4), [torch.randn(3, 3), torch.randn(3, 2)]
    z, log_det = graph(x, cs)
    cond = 2.0 * embed.module(*cs)
    z_direct, log_det_direct = glow.module([x], c=[cond, cs[0]])
    assert torch.allclose(z, z_direct[0])
    assert torch.allclose(log_det, log_det_direct)  # no log-det from the feed-forward nodes
    x_rev, log_det_rev = graph(z, cs, rev=True)
    assert torch.allclose(x_rev, x, atol=1e-6) and torch.allclose(log_det_rev, -log_det)


def test_condition_as_single_tensor_list_or_tuple() -> None:
    inp, cond = InputNode(4), ConditionNode(3)
    glow = Node(inp, GLOWCouplingBlock, DENSE, conditions=cond)
    graph = GraphINN([inp, cond, glow, OutputNode(glow)])
    x, c = torch.randn(2, 4), torch.randn(2, 3)
    results = [graph(x, c)[0], graph([x], [c])[0], graph((x,), (c,))[0]]
    assert all(torch.equal(r, results[0]) for r in results)


def test_replica_modules_are_used_not_node_modules() -> None:
    """Under DataParallel a replica swaps ``module_list``; forward must follow it."""
    torch.manual_seed(0)
    graph = chain(2)
    replica = graph._replicate_for_data_parallel()
    replica._modules["module_list"] = copy.deepcopy(graph.module_list)
    with torch.no_grad():
        for p in replica.module_list.parameters():
            p.add_(0.5)
    x = torch.randn(3, 4)
    assert not torch.allclose(replica(x)[0], graph(x)[0])


def test_fullgraph_compile_both_directions() -> None:
    torch.manual_seed(0)
    graph = GraphINN(freia_test_graph(size=4))
    x, c = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
    z, log_det = graph(x, c)
    compiled = torch.compile(graph, fullgraph=True, backend="eager")
    z_c, log_det_c = compiled(x, c)
    x_c, _ = compiled(z, c, rev=True)
    assert torch.allclose(z_c, z) and torch.allclose(log_det_c, log_det)
    assert torch.allclose(x_c, x, atol=1e-5)


def gmm_graph(Ff, Fm, d: int, k: int):
    """FrEIA's own GMM test graph: ConditionNodes w, mu, U, i feeding a GaussianMixtureModel."""
    inp = Ff.InputNode(d, name="x")
    conds = [Ff.ConditionNode(*s, name=n) for s, n in
             [((k,), "w"), ((k, d), "mu"), ((k, d * (d + 1) // 2), "U"), ((0,), "i")]]
    gmm = Ff.Node(inp, Fm.GaussianMixtureModel, {}, conditions=conds, name="gmm")
    return Ff.GraphINN([inp, *conds, gmm, Ff.OutputNode(gmm, name="z")])


def test_gaussian_mixture_with_all_components_both_directions() -> None:
    """Without a component index the mixture maps x (B, D) to z (B, K, D), one latent per
    component, and back: the graph takes the (B, K, D) latents in reverse (FrEIA's own test of
    this passes on FrEIA). Their log-dets are per component, so they need jac=False."""
    import invertible.framework as Ff
    import invertible.modules as Fm

    batch, d, k = 5, 3, 4
    graph = gmm_graph(Ff, Fm, d, k).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, d, generator=gen, dtype=D64)
    c = [Fm.GaussianMixtureModel.normalize_weights(torch.randn(batch, k, generator=gen, dtype=D64)),
         torch.randn(batch, k, d, generator=gen, dtype=D64),
         0.3 * torch.randn(batch, k, d * (d + 1) // 2, generator=gen, dtype=D64), None]
    z, log_det = graph(x, c, jac=False)
    assert z.shape == (batch, k, d) and torch.equal(log_det, torch.zeros(batch, dtype=D64))
    x_rev, _ = graph(z, c, rev=True, jac=False)
    assert x_rev.shape == (batch, k, d)
    torch.testing.assert_close(x_rev, x[:, None].expand(batch, k, d))
    with pytest.raises(RuntimeError, match=r"'gmm'.*log-det of shape \(5, 4\).*jac=False") as info:
        graph(x, c)
    assert isinstance(info.value.__cause__, ValueError)
    freia_fm = pytest.importorskip("FrEIA.modules")  # FrEIA 0.2 runs it in float32 only
    freia = gmm_graph(pytest.importorskip("FrEIA.framework"), freia_fm, d, k)
    x, c = x.float(), [t.float() for t in c[:3]] + [None]
    z_freia, _ = freia(x, c, jac=False)
    torch.testing.assert_close(z.float(), z_freia)
    torch.testing.assert_close(graph.float()(z_freia, c, rev=True, jac=False)[0],
                               freia(z_freia, c, rev=True, jac=False)[0])


# ---------------------------------------------------------------------------------- state


def test_pickle_and_deepcopy_of_a_deep_graph_need_no_raised_recursion_limit() -> None:
    torch.manual_seed(0)
    graph = chain(200)
    x = torch.randn(2, 4)
    z, log_det = graph(x)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        buffer = io.BytesIO()
        torch.save(graph, buffer)
        buffer.seek(0)
        copies = [torch.load(buffer, weights_only=False), copy.deepcopy(graph)]
    finally:
        sys.setrecursionlimit(limit)
    for other in copies:
        z2, log_det2 = other(x)
        assert torch.equal(z2, z) and torch.equal(log_det2, log_det)
        first = other.node_list[1]
        assert first.module is other.module_list[0] and first is not graph.node_list[1]
        assert first.outputs[0][0] is other.node_list[2] and other.in_nodes[0].out0[0] is (
            other.node_list[0])
        assert [n.name for n in other.node_list] == [n.name for n in graph.node_list]


def make_subnet_factory(hidden: int):
    """A closure subnet constructor, as anomalib's U-Flow passes in ``module_args``."""

    def constructor(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, c_out))

    return constructor


def test_torch_save_with_a_closure_in_module_args() -> None:
    inp = InputNode(4)
    node = Node(inp, GLOWCouplingBlock, {"subnet_constructor": make_subnet_factory(8),
                                         "clamp": 1.5})
    graph = GraphINN([inp, node, OutputNode(node)])
    buffer = io.BytesIO()
    torch.save(graph, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(3, 4)
    assert torch.equal(loaded(x)[0], graph(x)[0])
    args = loaded.node_list[1].module_args
    assert args["clamp"] == 1.5 and "constructor" in repr(args["subnet_constructor"])


# ---------------------------------------------------------------------------------- embedding


def test_graph_embedded_in_a_sequence_inn_and_in_a_graph() -> None:
    torch.manual_seed(0)
    inner = chain(2)
    inner.force_tuple_output = True
    seq = SequenceINN(4)
    seq.append(inner)
    seq.append(GLOWCouplingBlock, subnet_constructor=dense_subnet)
    x = torch.randn(3, 4)
    z, log_det = seq(x)
    z_inner, log_det_inner = inner(x)
    assert torch.allclose(seq.module_list[1]([z_inner[0]])[0][0], z)
    x_rev, log_det_rev = seq(z, rev=True)
    assert torch.allclose(x_rev, x, atol=1e-6) and torch.allclose(log_det_rev, -log_det)
    outer_in = InputNode(4)
    sub = Node(outer_in, inner)
    outer = GraphINN([outer_in, sub, OutputNode(sub)])
    assert torch.allclose(outer(x)[0], z_inner[0]) and torch.allclose(outer(x)[1], log_det_inner)
    assert "module_list.0.module_list.0.subnet1.0.weight" in outer.state_dict()


def test_output_dims_needs_a_tuple_returning_graph() -> None:
    graph = chain(1)
    with pytest.raises(ValueError, match="force_tuple_output"):
        graph.output_dims()
    graph.force_tuple_output = True
    assert graph.output_dims() == [(4,)]


def test_verbose_prints_and_plot_delegates(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    import invertible.utils

    inp = InputNode(4)
    node = Node(inp, GLOWCouplingBlock, DENSE)
    graph = GraphINN([inp, node, OutputNode(node)], verbose=True)
    assert "GLOWCouplingBlock" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(invertible.utils, "plot_graph", lambda *a: calls.append(a))
    graph.plot("some/dir", "graph")
    assert calls == [(graph.node_list, "some/dir", "graph")]


def test_reversible_graph_net_legacy(capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    inp = InputNode(4)
    node = Node(inp, GLOWCouplingBlock, DENSE)
    nodes = [inp, node, OutputNode(node)]
    with pytest.warns(DeprecationWarning, match="GraphINN"):
        legacy = ReversibleGraphNet(nodes)
    assert "GLOWCouplingBlock" in capsys.readouterr().out  # verbose=True by default
    x = torch.randn(2, 4)
    with pytest.warns(DeprecationWarning, match=r"tuple \(output, jacobian\)"):
        z, log_det = legacy(x)
    assert torch.equal(z, GraphINN(nodes)(x)[0]) and log_det.shape == (2,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for kwargs in ({"ind_in": [0]}, {"ind_out": [1]}):
            with pytest.raises(ValueError, match="ind_in"):
                ReversibleGraphNet(nodes, verbose=False, **kwargs)
        quiet = ReversibleGraphNet(nodes, verbose=False, force_tuple_output=True)
        assert capsys.readouterr().out == "" and isinstance(quiet(x)[0], tuple)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_freia_graph_on_cuda() -> None:
    torch.manual_seed(0)
    graph = GraphINN(freia_test_graph()).cuda()
    x = torch.randn(2, 3, 10, 10, device="cuda")
    c = torch.randn(2, 1, 10, 10, device="cuda")
    z, log_det = graph(x, c)
    assert z.device.type == log_det.device.type == "cuda"
    x_rev, log_det_rev = graph(z, c, rev=True)
    assert torch.allclose(x_rev, x, atol=1e-4) and torch.allclose(log_det_rev, -log_det, atol=1e-4)
    numerical = graph.log_jacobian_numerical(x, c, h=1e-3)
    assert numerical.device.type == "cuda" and torch.allclose(numerical, log_det, rtol=0.03)
    if torch.cuda.device_count() > 1:
        parallel = nn.DataParallel(graph)
        assert torch.allclose(parallel(x, c)[0], z, atol=1e-5)
