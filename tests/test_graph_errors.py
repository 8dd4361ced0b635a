"""Graph errors: bad node construction, bad graphs and bad calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from invertible._errors import InvertibleIndexError, InvertibleTypeError
from invertible.framework.graph_inn import (
    ConditionNode,
    FeedForwardNode,
    GraphINN,
    InputNode,
    Node,
    OutputNode,
    parse_flexible_inputs,
)
from invertible.modules.base import InvertibleModule
from invertible.modules.coupling_layers import GLOWCouplingBlock, RNVPCouplingBlock
from invertible.modules.graph_topology import Concat, Split
from invertible.modules.reshapes import Flatten
from subnets import conv_subnet, dense_subnet

DENSE = {"subnet_constructor": dense_subnet}


class Misbehaving(InvertibleModule):
    """Returns a malformed result chosen by ``mode`` (to test ``Node.forward``'s checks)."""

    def __init__(self, dims_in, dims_c=None, mode: str = "ok"):
        super().__init__(dims_in, dims_c)
        self.mode = mode

    def forward(self, x, rev=False, jac=True):
        y = x[0] * 1.0
        results = {
            "ok": ((y,), torch.zeros(y.shape[0])),
            "bare": y,
            "triple": ((y,), 0.0, 0.0),
            "bare_outputs": (y, 0.0),
            "two_outputs": ((y, y), 0.0),
            "string_jac": ((y,), "zero"),
            "none_jac": ((y,), None),
        }
        return results[self.mode]

    def output_dims(self, input_dims):
        return input_dims


def make_linear(dims_in):
    """A factory that returns a module which is not invertible."""
    return nn.Linear(dims_in[0][0], dims_in[0][0])


def graph_with(mode: str) -> GraphINN:
    inp = InputNode(3, name="x")
    node = Node(inp, Misbehaving, {"mode": mode}, name="bad")
    return GraphINN([inp, node, OutputNode(node)])


# ---------------------------------------------------------------------------------- parsing


def test_parse_errors() -> None:
    inp = InputNode(3)
    for bad in (5, "x", None, {inp: 0}):
        with pytest.raises(TypeError, match="invalid type"):
            parse_flexible_inputs(bad)
    for bad in ([inp, "x"], [inp.out0, 3.0], [(inp,)], [5, 3]):
        with pytest.raises(ValueError, match="Cannot parse"):
            parse_flexible_inputs(bad)
    with pytest.raises(TypeError, match="invalid type"):
        Node(7, Flatten)


# ---------------------------------------------------------------------------------- nodes


def test_instance_with_args_or_wrong_dims() -> None:
    inp = InputNode(4)
    block = GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet)
    with pytest.raises(ValueError, match="also provided arguments"):
        Node(inp, block, {"clamp": 1.0})
    wrong = GLOWCouplingBlock([(6,)], subnet_constructor=dense_subnet)
    with pytest.raises(ValueError, match=r"dims_in=\[\(6,\)\].*\[\(4,\)\]"):  # FrEIA printed
        Node(inp, wrong)  # the wrong shapes here
    assert inp.outputs == [None]  # a failed node consumes nothing
    with pytest.raises(ValueError, match="also provided arguments"):
        FeedForwardNode(ConditionNode(2), (3,), nn.Linear(2, 3), {"bias": False})
    with pytest.raises(TypeError, match="module_type"):
        Node(inp, 5)
    for module_type in (nn.Linear, nn.Linear(4, 4)):  # FrEIA: torch's own constructor error
        with pytest.raises(TypeError, match=r"Node.*module_type must be an Invertible.*Linear"):
            Node(inp, module_type, {"in_features": 4, "out_features": 4}
                 if isinstance(module_type, type) else None)
    with pytest.raises(TypeError, match=r"Node.*the factory make_linear returned a Linear"):
        Node(inp, make_linear)
    assert inp.outputs == [None]


def test_output_consumed_twice() -> None:
    inp = InputNode(4, name="x")
    Node(inp, Flatten, name="first")
    with pytest.raises(ValueError, match=r"Output 0 of node InputNode 'x'.*already consumed"):
        Node(inp, Flatten, name="second")
    a = InputNode(2)
    with pytest.raises(ValueError, match="already consumed"):
        Node([a.out0, a.out0], Concat)
    assert a.outputs == [None]


def test_output_index_out_of_range() -> None:
    split = Node(InputNode(4), Split, name="split")
    with pytest.raises(InvertibleIndexError, match=r"Node 'split'.*2 outputs") as info:
        Node((split, 2), Flatten)
    assert isinstance(info.value, IndexError) and isinstance(info.value, ValueError)
    cond = ConditionNode(2, name="c")
    with pytest.raises(IndexError, match="ConditionNode 'c'"):
        Node(split.out0, GLOWCouplingBlock, DENSE, conditions=(cond, 1))


def test_non_consumable_nodes_as_inputs() -> None:
    cond = ConditionNode(4)
    with pytest.raises(TypeError, match="only as conditions"):
        Node(cond, Flatten)
    ff = FeedForwardNode(cond, (4,), nn.Linear, {"in_features": 4, "out_features": 4})
    with pytest.raises(TypeError, match="FeedForwardNode"):
        Node(ff, Flatten)
    out = OutputNode(InputNode(4), name="o")
    with pytest.raises(TypeError, match="OutputNode"):
        Node(out, Flatten)


def test_source_and_output_node_errors() -> None:
    with pytest.raises(ValueError, match="empty shape"):
        InputNode()
    with pytest.raises(ValueError, match="empty shape"):
        ConditionNode(name="c")
    inp = InputNode(4)
    split = Node(inp, Split)
    with pytest.raises(ValueError, match="received 2 inputs"):
        OutputNode([split.out0, split.out1])
    with pytest.raises(ValueError, match="received 0 inputs"):
        OutputNode([])
    out = OutputNode(split.out0)
    with pytest.raises(ValueError, match="no outputs"):
        out.rev_input(0)


# ---------------------------------------------------------------------------------- graphs


def test_dangling_output() -> None:
    inp = InputNode(4)
    split = Node(inp, Split, name="split")
    out = OutputNode(split.out0)
    with pytest.raises(InvertibleTypeError, match=r"Output 1 of Node 'split'.*not consumed"):
        GraphINN([inp, split, out])
    with pytest.raises(TypeError):
        GraphINN([inp, split, out])


def test_node_missing_from_node_list() -> None:
    inp, cond = InputNode(4, name="x"), ConditionNode(2, name="c")
    glow = Node(inp, GLOWCouplingBlock, DENSE, conditions=cond, name="glow")
    out = OutputNode(glow, name="z")
    with pytest.raises(ValueError, match=r"ConditionNode 'c'.*not in the node_list"):
        GraphINN([inp, glow, out])
    with pytest.raises(ValueError, match=r"InputNode 'x'.*not in the node_list"):
        GraphINN([cond, glow, out])
    with pytest.raises(ValueError, match=r"OutputNode 'z'.*not in the node_list"):
        GraphINN([inp, cond, glow])
    with pytest.raises(ValueError, match="more than once"):
        GraphINN([inp, cond, glow, out, glow])
    with pytest.raises(TypeError, match="not a node"):
        GraphINN([inp, cond, glow, out, "node"])


def test_input_not_connected_and_cycles() -> None:
    inp, dummy = InputNode(4, name="x"), InputNode(2)
    cat = Node([inp.out0, dummy.out0], Concat, name="cat")
    split = Node(cat, Split, {"section_sizes": [4, 2]}, name="split")
    out = OutputNode(split.out0)
    cat.inputs[1] = (split, 1)  # feed split's second output back into cat: a cycle
    split.outputs[1] = (cat, 1)
    with pytest.raises(ValueError, match=r"InputNode 'x'.*not connected to any output"):
        GraphINN([inp, cat, split, out])
    a = Node(InputNode(4), Flatten, name="a")
    b = Node(a, Flatten, name="b")
    a.inputs, b.outputs = [(b, 0)], [(a, 0)]  # an isolated loop a -> b -> a
    inp2 = InputNode(4)
    with pytest.raises(ValueError, match="cyclic"):
        GraphINN([inp2, OutputNode(inp2), a, b])


def test_unused_feed_forward_node() -> None:
    inp, cond = InputNode(4), ConditionNode(2)
    ff = FeedForwardNode(cond, (3,), nn.Linear, {"in_features": 2, "out_features": 3},
                         name="unused")
    glow = Node(inp, GLOWCouplingBlock, DENSE, conditions=cond)
    with pytest.raises(ValueError, match=r"cyclic.*output.*unused"):
        GraphINN([inp, cond, ff, glow, OutputNode(glow)])


def test_output_dims_of_single_output_graph() -> None:
    with pytest.raises(ValueError, match="more than one output"):
        graph_with("ok").output_dims([(3,)])
    inp = InputNode(3)
    with pytest.raises(ValueError, match="more than one output"):
        Node(inp, graph_with("ok"))  # not embeddable: it returns a bare tensor


# ---------------------------------------------------------------------------------- calls


def test_wrong_number_and_shape_of_inputs() -> None:
    graph = graph_with("ok")
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"Got 2 inputs, but expected 1\."):
        graph([x, x])
    with pytest.raises(ValueError, match=r"Got 1 conditions, but expected 0\."):
        graph(x, c=[x])  # a graph without ConditionNodes refuses conditions (FrEIA ignored them)
    with pytest.raises(ValueError, match=r"GraphINN: the tensor for InputNode 'x' must have shape "
                       r"\(B, 3\), got shape \(2, 4\)"):
        graph(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"the tensor for InputNode 'x' must have shape \(B, 3\)"):
        graph(torch.randn(2, 3, 1))
    with pytest.raises(ValueError, match="x_or_z"):
        graph()
    with pytest.raises(TypeError, match="c must be"):
        graph(x, c=3)
    for rev in (False, True):
        with pytest.raises(TypeError, match=r"GraphINN: the tensor for (In|Out)putNode .* must be "
                           r"a torch.Tensor, got float"):
            graph([3.0], rev=rev)
    with pytest.raises(TypeError, match=r"GraphINN: x_or_z must be a tensor.*got ndarray"):
        graph(np.zeros((2, 3), dtype=np.float32))


def test_reverse_inputs_are_checked_by_the_blocks() -> None:
    """In reverse the graph checks the count and type only: the first blocks check the rest
    (some blocks return more than their declared output shape and take it back in reverse)."""
    inp = InputNode(4, name="x")
    glow = Node(inp, GLOWCouplingBlock, DENSE, name="glow")
    graph = GraphINN([inp, glow, OutputNode(glow, name="z")])
    with pytest.raises(RuntimeError, match=r"Node 'glow'.*GLOWCouplingBlock.*reverse input.*"
                       r"\(B, 4\).*\(2, 5\)") as info:
        graph(torch.randn(2, 5), rev=True)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize(("mode", "message"), [
    ("bare", "instead of a tuple"),
    ("triple", "3 values"),
    ("bare_outputs", "as outputs"),
    ("two_outputs", "returned 2 outputs, expected 1"),
    ("string_jac", "non-tensor as Jacobian"),
    ("none_jac", "non-tensor as Jacobian"),
])
def test_node_result_validation_is_wrapped(mode: str, message: str) -> None:
    with pytest.raises(RuntimeError, match=f"Node 'bad'.*encountered an error.*{message}") as info:
        graph_with(mode)(torch.randn(2, 3))
    assert isinstance(info.value.__cause__, ValueError)
    assert "Misbehaving" in str(info.value)


def test_jac_false_rejects_a_string_but_accepts_none() -> None:
    with pytest.raises(RuntimeError, match="neither None nor a Jacobian"):
        graph_with("string_jac")(torch.randn(2, 3), jac=False)
    z, log_det = graph_with("none_jac")(torch.randn(2, 3), jac=False)
    assert torch.equal(log_det, torch.zeros(2))


def conditioning_graph() -> GraphINN:
    """FrEIA's conditioning test graph: (3,10,10) -> RNVP | c1 -> Flatten -> RNVP | [c2, c3]."""
    inp = InputNode(3, 10, 10, name="x")
    c1, c2, c3 = ConditionNode(1, 10, 10), ConditionNode(50), ConditionNode(20)
    conv = Node(inp, RNVPCouplingBlock, {"subnet_constructor": conv_subnet, "clamp": 1.0},
                conditions=c1, name="conv")
    flat = Node(conv, Flatten, name="flat")
    dense = Node(flat, RNVPCouplingBlock, {"subnet_constructor": dense_subnet, "clamp": 1.0},
                 conditions=[c2, c3], name="dense")
    return GraphINN([inp, c1, c2, c3, conv, flat, dense, OutputNode(dense)])


def test_conditions_in_wrong_order_or_size_raise_runtime_error() -> None:
    torch.manual_seed(0)
    graph = conditioning_graph()
    x = torch.randn(2, 3, 10, 10)
    c1, c2, c3 = torch.randn(2, 1, 10, 10), torch.randn(2, 50), torch.randn(2, 20)
    z, log_det = graph(x, [c1, c2, c3])
    assert z.shape == (2, 300) and log_det.shape == (2,)
    x_rev, log_det_rev = graph(z, [c1, c2, c3], rev=True)
    assert torch.allclose(x_rev, x, atol=1e-4) and torch.allclose(log_det_rev, -log_det, atol=1e-4)
    for bad in ([c1, c3, c2], [c1, c2, torch.randn(2, 21)]):
        with pytest.raises(RuntimeError, match=r"Node 'dense'.*encountered an error") as info:
            graph(x, bad)
        assert info.value.__cause__ is not None
        assert str(info.value.__cause__) in str(info.value)
