"""Property-suite cases for `GraphINN`: chains, several inputs/outputs, conditions, nesting."""

from __future__ import annotations

import warnings

from torch import nn

from invertible.framework.graph_inn import (
    ConditionNode,
    FeedForwardNode,
    GraphINN,
    InputNode,
    Node,
    OutputNode,
)
from invertible.framework.reversible_graph_net import ReversibleGraphNet
from invertible.modules.all_in_one_block import AllInOneBlock
from invertible.modules.coupling_layers import GLOWCouplingBlock, RNVPCouplingBlock
from invertible.modules.fixed_transforms import PermuteRandom
from invertible.modules.graph_topology import Concat, Split
from invertible.modules.reshapes import Flatten, HaarDownsampling
from subnets import conv_subnet, dense_subnet

from . import Case

__all__ = [
    "CASES",
    "chain_image_graph",
    "chain_vector_graph",
    "conditional_graph",
    "feed_forward_graph",
    "legacy_graph",
    "multi_io_graph",
    "nested_graph",
]

DENSE = {"subnet_constructor": dense_subnet}


def chain_vector_graph() -> GraphINN:
    """Input (5,) -> GLOW -> PermuteRandom -> RNVP -> AllInOneBlock -> output (tuple output)."""
    inp = InputNode(5, name="x")
    glow = Node(inp, GLOWCouplingBlock, DENSE, name="glow")
    perm = Node(glow, PermuteRandom, {"seed": 3}, name="perm")
    rnvp = Node(perm, RNVPCouplingBlock, DENSE, name="rnvp")
    aio = Node(rnvp.out0, AllInOneBlock, {"subnet_constructor": dense_subnet}, name="aio")
    return GraphINN([inp, glow, perm, rnvp, aio, OutputNode(aio, name="z")],
                    force_tuple_output=True)


def chain_image_graph() -> GraphINN:
    """Input (2, 4, 4) -> GLOW (conv) -> Haar -> Flatten -> GLOW (dense) -> output."""
    inp = InputNode(2, 4, 4, name="x")
    conv = Node(inp, GLOWCouplingBlock, {"subnet_constructor": conv_subnet}, name="conv")
    haar = Node(conv, HaarDownsampling, {}, name="haar")
    flat = Node(haar, Flatten, name="flat")
    dense = Node(flat, GLOWCouplingBlock, DENSE, name="dense")
    return GraphINN([inp, conv, haar, flat, dense, OutputNode(dense)], force_tuple_output=True)


def multi_io_graph() -> GraphINN:
    """Inputs (3,) and (4,) -> Concat -> GLOW -> Split 2|5 -> RNVP on one part -> two outputs."""
    a, b = InputNode(3, name="a"), InputNode(4, name="b")
    cat = Node([a.out0, b], Concat, {"dim": 0}, name="cat")
    glow = Node(cat, GLOWCouplingBlock, DENSE, name="glow")
    split = Node(glow, Split, {"section_sizes": [2, 5]}, name="split")
    rnvp = Node(split.out1, RNVPCouplingBlock, DENSE, name="rnvp")
    outs = [OutputNode(split.out0, name="z0"), OutputNode([rnvp.out0], name="z1")]
    return GraphINN([a, b, cat, glow, split, rnvp, *outs])


def conditional_graph() -> GraphINN:
    """Input (4,) -> RNVP | c1 -> GLOW | [c2, c1] -> output; the conditions come as [c1, c2]."""
    inp, c1, c2 = InputNode(4, name="x"), ConditionNode(3, name="c1"), ConditionNode(2, name="c2")
    rnvp = Node(inp, RNVPCouplingBlock, DENSE, conditions=c1, name="rnvp")
    glow = Node(rnvp, GLOWCouplingBlock, DENSE, conditions=[c2, c1.out0], name="glow")
    return GraphINN([inp, c1, c2, rnvp, glow, OutputNode(glow)], force_tuple_output=True)


def feed_forward_graph() -> GraphINN:
    """A FeedForwardNode embeds the condition (3,) -> (6,) for two conditioned couplings."""
    inp, cond = InputNode(4, name="x"), ConditionNode(3, name="c")
    embed = FeedForwardNode(cond, (6,), nn.Linear, {"in_features": 3, "out_features": 6},
                            name="embed")
    first = Node(inp, GLOWCouplingBlock, DENSE, conditions=embed, name="first")
    second = Node(first, RNVPCouplingBlock, DENSE, conditions=[embed.out0, cond], name="second")
    return GraphINN([inp, cond, embed, first, second, OutputNode(second)],
                    force_tuple_output=True)


def nested_graph() -> GraphINN:
    """A two-output GraphINN used as a node instance inside another graph, conditioned.

    The inner graph needs ``force_tuple_output=True``: with one input, its reverse pass would
    otherwise return a bare tensor (FrEIA's rule for a single result).
    """
    inner_in, inner_c = InputNode(5, name="inner_x"), ConditionNode(2, name="inner_c")
    glow = Node(inner_in, GLOWCouplingBlock, DENSE, conditions=inner_c, name="inner_glow")
    split = Node(glow, Split, {"section_sizes": [3, 2]}, name="inner_split")
    inner = GraphINN([inner_in, inner_c, glow, split, OutputNode(split.out0),
                      OutputNode(split.out1)], force_tuple_output=True)
    inp, cond = InputNode(5, name="x"), ConditionNode(2, name="c")
    sub = Node(inp, inner, conditions=cond, name="sub")
    cat = Node([sub.out0, sub.out1], Concat, name="cat")
    return GraphINN([inp, cond, sub, cat, OutputNode(cat)], force_tuple_output=True)


def legacy_graph() -> ReversibleGraphNet:
    """The deprecated ``ReversibleGraphNet`` on a small chain (its warnings silenced here)."""
    inp = InputNode(4, name="x")
    glow = Node(inp, GLOWCouplingBlock, DENSE, name="glow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ReversibleGraphNet([inp, glow, OutputNode(glow)], verbose=False,
                                  force_tuple_output=True)


CASES = [
    Case("graph-chain-vector", chain_vector_graph,
         covers=(GLOWCouplingBlock, PermuteRandom, RNVPCouplingBlock, AllInOneBlock)),
    Case("graph-chain-image", chain_image_graph, covers=(HaarDownsampling, Flatten)),
    Case("graph-multi-io", multi_io_graph, covers=(Concat, Split)),
    Case("graph-conditional", conditional_graph, cond_shapes=((3,), (2,))),
    Case("graph-feed-forward", feed_forward_graph, cond_shapes=((3,),)),
    Case("graph-nested", nested_graph, cond_shapes=((2,),)),
    Case("graph-legacy", legacy_graph),
]
