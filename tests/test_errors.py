"""A catalogue of misuse: every row must raise (or warn) a clear error.

Each row names the misuse, the call that commits it, the expected exception type(s) and a regex
that the message must match: it names the block or node, what was expected and what came. No
row may surface a bare ``AssertionError``, an ``IndexError`` from deep inside, or a shape error
from inside a subnet. Rows whose fix is pending in a file owned elsewhere are strict xfails
(``pending``), so they turn red the moment the fix lands and the marker must go.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Type, Union

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import invertible.modules as Fm
from invertible.framework.graph_inn import ConditionNode, GraphINN, InputNode, Node, OutputNode
from invertible.framework.sequence_inn import SequenceINN
from invertible.modules.invertible_resnet import IResNetLayer
from invertible.modules.splines import ElementwiseRationalQuadraticSpline
from subnets import conv_subnet, dense_subnet

Errors = Union[Type[BaseException], Tuple[Type[BaseException], ...]]


@dataclass(frozen=True)
class Misuse:
    """One row of the catalogue.

    Attributes:
        id: readable unique id.
        call: commits the misuse.
        error: the exception (or warning) class, or a tuple of classes the error must *all* be.
        pattern: a regex the message must match (``re.search``, dotall).
        cause: for errors a ``GraphINN`` wraps in a ``RuntimeError`` naming the node (the type
            FrEIA raised there): the ``__cause__``'s type.
        warns: the call must warn ``error`` (and may go on) instead of raising.
        pending: the file owned elsewhere whose fix this row waits for (a strict xfail).
    """

    id: str
    call: Callable[[], Any]
    error: Errors
    pattern: str
    cause: Optional[Type[BaseException]] = None
    warns: bool = False
    pending: Optional[str] = None


# --- fixtures of the table -------------------------------------------------------------------


def x(*shape: int, dtype: torch.dtype = torch.float32, batch: int = 3) -> Tensor:
    return torch.randn(batch, *shape, dtype=dtype)


def bad_subnet(c_in: int, c_out: int) -> nn.Module:
    """Returns one channel too many."""
    return nn.Linear(c_in, c_out + 1)


def not_a_module(c_in: int, c_out: int) -> Any:
    return 3


def glow(dims_c: Any = (), subnet: Any = dense_subnet, dims: Any = (4,), **kw: Any) -> nn.Module:
    sub = conv_subnet if len(dims) == 3 and subnet is dense_subnet else subnet
    return Fm.GLOWCouplingBlock([dims], list(dims_c), subnet_constructor=sub, **kw)


def aio(dims_c: Any = (), subnet: Any = dense_subnet, dims: Any = (4,), **kw: Any) -> nn.Module:
    sub = conv_subnet if len(dims) == 3 and subnet is dense_subnet else subnet
    return Fm.AllInOneBlock([dims], list(dims_c), subnet_constructor=sub, **kw)


def sequence(*blocks: Tuple[Any, dict], shape: Tuple[int, ...] = (4,)) -> SequenceINN:
    inn = SequenceINN(*shape)
    for cls, kwargs in blocks:
        inn.append(cls, **kwargs)
    return inn


def conditioned_sequence() -> SequenceINN:
    inn = SequenceINN(4)
    inn.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(2,), subnet_constructor=dense_subnet)
    return inn


def one_block_graph(cls: Any = Fm.ActNorm, conditioned: bool = False) -> GraphINN:
    inp = InputNode(4, name="x")
    cond = ConditionNode(2, name="c") if conditioned else None
    args = {"subnet_constructor": dense_subnet} if cls is not Fm.ActNorm else {}
    node = Node(inp, cls, args, conditions=cond, name="block")
    nodes = [inp, node, OutputNode(node, name="z")]
    return GraphINN(nodes + ([cond] if cond is not None else []))


def cyclic_graph() -> GraphINN:
    """x -> split; split.out0 -> z; split.out1 and perm's output -> cat -> perm -> cat ..."""
    inp = InputNode(4, name="x")
    split = Node(inp, Fm.Split, {}, name="split")
    perm = Node(split.out0, Fm.PermuteRandom, {"seed": 0}, name="perm")
    cat = Node([perm.out0, split.out1], Fm.Concat, {}, name="cat")
    out = OutputNode(cat, name="z")
    perm.inputs = [(cat, 0)]  # rewire into a cycle perm -> cat -> perm
    cat.outputs[0] = (perm, 0)
    split.outputs[0] = (out, 0)
    out.inputs = [(split, 0)]
    return GraphINN([inp, split, perm, cat, out])


def dangling_graph() -> GraphINN:
    inp = InputNode(4, name="x")
    split = Node(inp, Fm.Split, {}, name="split")
    return GraphINN([inp, split, OutputNode(split.out0, name="z")])


def double_use_graph() -> GraphINN:
    inp = InputNode(4, name="x")
    a = Node(inp, Fm.PermuteRandom, {}, name="a")
    b = Node(inp, Fm.PermuteRandom, {}, name="b")
    return GraphINN([inp, a, b, OutputNode(a), OutputNode(b)])


def wrong_index_graph() -> GraphINN:
    inp = InputNode(4, name="x")
    split = Node(inp, Fm.Split, {}, name="split")
    a = Node((split, 2), Fm.PermuteRandom, {}, name="a")
    return GraphINN([inp, split, a, OutputNode(a), OutputNode(split.out1)])


def missing_node_graph() -> GraphINN:
    inp = InputNode(4, name="x")
    a = Node(inp, Fm.PermuteRandom, {}, name="a")
    OutputNode(a, name="z")
    return GraphINN([inp, a])


def expanding_iresnet() -> Tuple[IResNetLayer, Tensor]:
    torch.manual_seed(0)
    layer = IResNetLayer([(3,)], internal_size=4)
    with torch.no_grad():
        for m in layer.layers:
            m.weight.mul_(10.0)
    return layer, x(3)


def gmm() -> Fm.GaussianMixtureModel:
    return Fm.GaussianMixtureModel([(2,)], [(3,), (3, 2), (3, 3), (0,)])


def gmm_conditions(mu_shape: Tuple[int, ...] = (3, 2)) -> List[Any]:
    return [torch.full((3, 3), 1 / 3), torch.randn(3, *mu_shape), torch.zeros(3, 3, 3), 0]


def erqs(dims_c: Any = ((2,),)) -> nn.Module:
    return ElementwiseRationalQuadraticSpline([(4,)], list(dims_c),
                                              subnet_constructor=dense_subnet)


B = r"\(B, "  # the batch in an expected shape, e.g. (B, 4)
PUBLIC = r"^(?!.*\b_[A-Z])"  # the message names no private class such as _AffineCoupling

# --- the catalogue ---------------------------------------------------------------------------

CATALOGUE: List[Misuse] = [
    # wrong number of inputs
    Misuse("permute-two-inputs", lambda: Fm.PermuteRandom([(4,)])([x(4), x(4)]), ValueError,
           r"PermuteRandom takes 1 input tensor\(s\) \(\(B, 4\)\), got 2"),
    Misuse("actnorm-two-inputs", lambda: Fm.ActNorm([(4,)])([x(4), x(4)]), ValueError,
           r"ActNorm takes 1 input tensor\(s\) \(\(B, 4\)\), got 2"),
    Misuse("glow-two-inputs", lambda: glow()([x(4), x(4)]), ValueError,
           r"GLOWCouplingBlock takes .*1 input tensor.*got 2"),
    Misuse("permute-bare-tensor", lambda: Fm.PermuteRandom([(4,)])(x(4)), ValueError,
           r"PermuteRandom takes a list or tuple of 1 input tensor.*got a bare tensor"),
    Misuse("concat-reverse-two-inputs",
           lambda: Fm.Concat([(2,), (3,)])([x(2), x(3)], rev=True), ValueError,
           r"Concat takes 1 reverse input tensor\(s\) \(\(B, 5\)\), got 2"),
    Misuse("sequence-two-inputs", lambda: sequence((Fm.ActNorm, {}))([x(4), x(4)]), ValueError,
           r"SequenceINN takes 1 input tensor\(s\) \(\(B, 4\)\), got 2"),
    Misuse("graph-two-inputs", lambda: one_block_graph()([x(4), x(4)]), ValueError,
           r"GraphINN.*(2.*1|1.*2)"),
    # wrong shape or rank of an input
    Misuse("flatten-wrong-shape", lambda: Fm.Flatten([(4, 2)])([x(9)]), ValueError,
           rf"Flatten: input must have shape {B}4, 2\), got shape \(3, 9\)"),
    Misuse("reshape-reverse-wrong-shape",
           lambda: Fm.Reshape([(4, 2)], output_dims=(8,))([x(9)], rev=True), ValueError,
           rf"Reshape: reverse input must have shape {B}8\), got shape \(3, 9\)"),
    Misuse("haar-odd-input-at-call", lambda: Fm.HaarDownsampling([(4, 6, 6)])([x(4, 5, 5)]),
           ValueError, r"HaarDownsampling needs an even height and width .*got an input of shape "
           r"\(3, 4, 5, 5\)"),
    Misuse("irevnet-wrong-rank", lambda: Fm.IRevNetDownsampling([(4, 6, 6)])([x(4, 6)]),
           ValueError, rf"IRevNetDownsampling: input must have shape {B}4, \*, \*\), got shape "
           r"\(3, 4, 6\)"),
    Misuse("fixed-linear-wrong-shape",
           lambda: Fm.FixedLinearTransform([(4,)], M=torch.eye(4))([x(5)]), ValueError,
           rf"FixedLinearTransform: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("fixed-1x1-wrong-channels",
           lambda: Fm.Fixed1x1Conv([(4, 2, 2)], M=torch.eye(4))([x(3, 2, 2)]), ValueError,
           rf"Fixed1x1Conv: input must have shape {B}4, \*, \*\), got shape \(3, 3, 2, 2\)"),
    Misuse("householder-wrong-shape",
           lambda: Fm.HouseholderPerm([(4,)], n_reflections=2)([x(5)]), ValueError,
           rf"HouseholderPerm: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("invauto-act-wrong-shape", lambda: Fm.InvAutoAct([(4,)])([x(5)]), ValueError,
           rf"InvAutoAct: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("invauto-fc-reverse-wrong-shape",
           lambda: Fm.InvAutoFC([(4,)], dims_out=6)([x(4)], rev=True), ValueError,
           rf"InvAutoFC: reverse input must have shape {B}6\), got shape \(3, 4\)"),
    Misuse("iresnet-wrong-shape", lambda: IResNetLayer([(4,)])([x(5)]), ValueError,
           rf"IResNetLayer: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("sigmoid-wrong-shape", lambda: Fm.InvertibleSigmoid([(4,)])([x(5)]), ValueError,
           rf"InvertibleSigmoid: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("split-wrong-length", lambda: Fm.Split([(4,)])([x(5)]), ValueError,
           rf"Split: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("concat-wrong-shape", lambda: Fm.Concat([(4,), (2,)])([x(4), x(3)]), ValueError,
           rf"Concat: input 1 must have shape {B}2\), got shape \(3, 3\)"),
    Misuse("actnorm-after-init-wrong-shape",
           lambda: (lambda m: (m([x(4)]), m([x(5)])))(Fm.ActNorm([(4,)])), ValueError,
           rf"ActNorm: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("gmm-wrong-shape", lambda: gmm()([x(5)], gmm_conditions()), ValueError,
           rf"GaussianMixtureModel: input must have shape {B}2\), got shape \(3, 5\)"),
    Misuse("glow-wrong-shape", lambda: glow()([x(5)]), ValueError,
           rf"GLOWCouplingBlock: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("glow-wrong-rank", lambda: glow()([x(4, 2)]), ValueError,
           r"GLOWCouplingBlock: .*input.*\(B, 4\).*got.*\(3, 4, 2\)"),
    Misuse("all-in-one-wrong-shape", lambda: aio()([x(5)]), (RuntimeError, ValueError),
           rf"AllInOneBlock: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("sequence-wrong-shape", lambda: sequence((Fm.ActNorm, {}))(x(5)), ValueError,
           rf"SequenceINN: input must have shape {B}4\), got shape \(3, 5\)"),
    Misuse("graph-wrong-shape", lambda: one_block_graph()(x(5)), ValueError,
           rf"GraphINN: the tensor for InputNode 'x' must have shape {B}4\), got shape \(3, 5\)"),
    # wrong dtype or device of an input or a condition
    Misuse("orthogonal-wrong-dtype",
           lambda: Fm.OrthogonalTransform([(4,)])([x(4, dtype=torch.float64)]), TypeError,
           r"OrthogonalTransform: input has dtype torch.float64, but the block's parameters "
           r"are torch.float32"),
    Misuse("permute-integer-input", lambda: Fm.PermuteRandom([(4,)])([x(4).long()]), TypeError,
           r"PermuteRandom: input must be a floating-point tensor, got torch.int64"),
    Misuse("actnorm-wrong-device", lambda: Fm.ActNorm([(4,)])([x(4).to("meta")]), ValueError,
           r"ActNorm: input is on device meta, but the block's parameters are on cpu"),
    Misuse("sequence-wrong-dtype",
           lambda: sequence((Fm.ActNorm, {}))(x(4, dtype=torch.float64)), TypeError,
           r"ActNorm: input has dtype torch.float64, but the block's parameters are "
           r"torch.float32"),
    Misuse("graph-wrong-dtype", lambda: one_block_graph()(x(4, dtype=torch.float64)),
           RuntimeError, r"Node 'block'.*ActNorm: input has dtype torch.float64.*torch.float32",
           cause=TypeError),
    Misuse("erqs-condition-wrong-dtype",
           lambda: erqs()([x(4)], c=[x(2, dtype=torch.float64)]), TypeError,
           r"ElementwiseRationalQuadraticSpline: condition has dtype torch.float64, but the "
           r"block's parameters are torch.float32"),
    Misuse("glow-wrong-dtype", lambda: glow()([x(4, dtype=torch.float64)]), TypeError,
           r"GLOWCouplingBlock: .*dtype torch.float64.*torch.float32"),
    Misuse("glow-condition-wrong-dtype",
           lambda: glow([(2,)])([x(4)], c=[x(2, dtype=torch.float64)]), TypeError,
           r"GLOWCouplingBlock: condition has dtype torch.float64, but the block's parameters "
           r"are torch.float32"),
    Misuse("glow-wrong-device", lambda: glow()([x(4).to("meta")]), ValueError,
           r"GLOWCouplingBlock: .*device meta.*cpu"),
    Misuse("all-in-one-wrong-dtype", lambda: aio()([x(4, dtype=torch.float64)]), TypeError,
           r"AllInOneBlock: .*dtype torch.float64.*torch.float32"),
    Misuse("all-in-one-wrong-device", lambda: aio()([x(4).to("meta")]), ValueError,
           r"AllInOneBlock: input is on device meta, but the block's parameters are on cpu"),
    Misuse("glow-condition-wrong-device",
           lambda: glow([(2,)])([x(4)], c=[x(2).to("meta")]), ValueError,
           r"GLOWCouplingBlock: condition is on device meta, but the block's parameters are "
           r"on cpu"),
    Misuse("householder-condition-other-dtype-than-input",
           lambda: Fm.HouseholderPerm([(3,)], [(6,)], n_reflections=2)(
               [x(3)], c=[x(6, dtype=torch.float64)]), TypeError,
           r"HouseholderPerm: condition has dtype torch.float64, but the (input is|block's "
           r"parameters are) torch.float32"),
    Misuse("gmm-float-component-index",
           lambda: gmm()([x(2)], gmm_conditions()[:3] + [torch.full((3,), 1.7)]), TypeError,
           r"GaussianMixtureModel: the component condition i must hold integer indices, got "
           r"dtype torch.float32"),
    # conditions: missing, unexpected, wrong shape or spatial size
    Misuse("glow-missing-condition", lambda: glow([(2,)])([x(4)]), ValueError,
           r"GLOWCouplingBlock takes 1 condition\(s\) of shapes \[\(2,\)\], got 0"),
    Misuse("glow-unexpected-condition", lambda: glow()([x(4)], c=[x(2)]), ValueError,
           r"GLOWCouplingBlock takes no conditions \(dims_c=\[\]\), but 1 condition tensor\(s\) "
           r"were given"),
    Misuse("glow-unexpected-bare-condition", lambda: glow()([x(4)], c=x(2)), ValueError,
           r"GLOWCouplingBlock takes no conditions \(dims_c=\[\]\), but 1 condition tensor\(s\) "
           r"were given"),
    Misuse("householder-unexpected-condition",
           lambda: Fm.HouseholderPerm([(4,)], n_reflections=2)([x(4)], c=[x(8)]), ValueError,
           r"HouseholderPerm takes no conditions \(dims_c=\[\]\), but 1 condition tensor\(s\) "
           r"were given"),
    Misuse("householder-missing-condition",
           lambda: Fm.HouseholderPerm([(3,)], [(6,)], n_reflections=2)([x(3)]), ValueError,
           r"HouseholderPerm takes 1 condition\(s\) of shapes \[\(6,\)\], got 0"),
    Misuse("actnorm-condition-given", lambda: Fm.ActNorm([(4,)])([x(4)], c=[x(2)]), ValueError,
           r"ActNorm takes no conditions \(dims_c=\[\]\), but 1 condition tensor\(s\) were given"),
    Misuse("all-in-one-missing-condition", lambda: aio([(2,)])([x(4)]), ValueError,
           r"AllInOneBlock takes 1 condition\(s\) of shapes \[\(2,\)\], got 0"),
    Misuse("gmm-missing-conditions", lambda: gmm()([x(2)]), TypeError,
           r"GaussianMixtureModel.forward\(\) missing 1 required positional argument: 'c'"),
    Misuse("gmm-condition-wrong-shape", lambda: gmm()([x(2)], gmm_conditions((3, 5))),
           ValueError, rf"GaussianMixtureModel: condition 1 must have shape {B}3, 2\), got "
           r"shape \(3, 3, 5\)"),
    Misuse("glow-condition-wrong-channels", lambda: glow([(2,)])([x(4)], c=[x(3)]), ValueError,
           rf"GLOWCouplingBlock: condition must have shape {B}2\), got shape \(3, 3\)"),
    Misuse("erqs-condition-wrong-shape", lambda: erqs()([x(4)], c=[x(3)]), ValueError,
           rf"ElementwiseRationalQuadraticSpline: condition must have shape {B}2\), got shape "
           r"\(3, 3\)"),
    Misuse("glow-condition-spatial-build", lambda: glow([(2, 5, 5)], dims=(4, 6, 6)),
           ValueError, r"GLOWCouplingBlock: condition 0 has shape \(2, 5, 5\).*\(6, 6\)"),
    Misuse("spline-condition-spatial-build",
           lambda: Fm.RationalQuadraticSpline([(4, 2, 2)], [(2, 3, 3)],
                                              subnet_constructor=conv_subnet),
           ValueError, r"RationalQuadraticSpline: condition 0 has shape \(2, 3, 3\).*\(2, 2\)"),
    Misuse("glow-condition-spatial-call",
           lambda: glow([(2, 6, 6)], dims=(4, 6, 6))([x(4, 6, 6)], c=[x(2, 5, 5)]), ValueError,
           r"GLOWCouplingBlock: condition 0 of shape \(3, 2, 5, 5\) must have the input's extents "
           r"\(6, 6\)"),
    Misuse("all-in-one-condition-spatial-call",
           lambda: aio([(2, 6, 6)], dims=(4, 6, 6))([x(4, 6, 6)], c=[x(2, 5, 5)]), ValueError,
           r"AllInOneBlock: condition 0 of shape \(3, 2, 5, 5\) must have the input's extents "
           r"\(6, 6\)"),
    Misuse("sequence-missing-condition", lambda: conditioned_sequence()(x(4)), ValueError,
           r"SequenceINN has blocks conditioned on c\[0\], but 0 condition tensor"),
    Misuse("sequence-condition-wrong-shape", lambda: conditioned_sequence()(x(4), c=[x(3)]),
           ValueError, rf"GLOWCouplingBlock: condition must have shape {B}2\), got shape \(3, 3\)"),
    Misuse("graph-missing-condition",
           lambda: one_block_graph(Fm.GLOWCouplingBlock, conditioned=True)(x(4)), ValueError,
           r"GraphINN: Got 0 conditions, but expected 1"),
    Misuse("graph-condition-wrong-shape",
           lambda: one_block_graph(Fm.GLOWCouplingBlock, conditioned=True)(x(4), c=[x(3)]),
           RuntimeError, r"Node 'block'.*GLOWCouplingBlock: condition must have shape "
           r"\(B, 2\), got shape \(3, 3\)", cause=ValueError),
    # a condition of another batch, NumPy data, conditions given to an unconditional network:
    # each named by the public class, never torch's own error or silently ignored
    Misuse("glow-condition-other-batch", lambda: glow([(2,)])([x(4)], c=[x(2, batch=2)]),
           ValueError, r"GLOWCouplingBlock: condition 0 has batch size 2, but the input has 3"),
    Misuse("all-in-one-condition-other-batch",
           lambda: aio([(2,)])([x(4)], c=[x(2, batch=2)]), ValueError,
           r"AllInOneBlock: condition 0 has batch size 2, but the input has 3"),
    Misuse("sequence-condition-other-batch",
           lambda: conditioned_sequence()(x(4), c=[x(2, batch=2)]), ValueError,
           r"(SequenceINN|GLOWCouplingBlock): condition 0 has batch size 2, but the input has "
           r"3"),
    Misuse("glow-numpy-input", lambda: glow()(np.zeros((5, 4), np.float32)), TypeError,
           r"GLOWCouplingBlock takes a list or tuple of 1 input tensor\(s\), e\.g\. \[x\]; got "
           r"ndarray"),
    Misuse("actnorm-numpy-input-in-list",
           lambda: Fm.ActNorm([(4,)])([np.zeros((3, 4), np.float32)]), TypeError,
           r"ActNorm: input must be a torch\.Tensor, got ndarray"),
    Misuse("sequence-numpy-input",
           lambda: sequence((Fm.ActNorm, {}))(np.zeros((5, 4), np.float32)), TypeError,
           r"SequenceINN takes a tensor of shape \(B, 4\) or a one-element list of it; got "
           r"ndarray"),
    Misuse("graph-numpy-input", lambda: one_block_graph()(np.zeros((5, 4), np.float32)),
           TypeError,
           r"GraphINN: x_or_z must be a tensor or a list/tuple of tensors, got ndarray"),
    Misuse("all-in-one-unexpected-condition", lambda: aio()([x(4)], c=[x(2)]), ValueError,
           r"AllInOneBlock takes no conditions \(dims_c=\[\]\), but 1 condition tensor\(s\) "
           r"were given"),
    Misuse("sequence-unconditional-given-conditions",
           lambda: sequence((Fm.ActNorm, {}))(x(4), c=[x(2)]), ValueError,
           r"SequenceINN has no conditioned blocks, but 1 condition tensor\(s\) were given"),
    Misuse("graph-unconditional-given-conditions", lambda: one_block_graph()(x(4), c=[x(2)]),
           ValueError, r"GraphINN: Got 1 conditions, but expected 0"),
    # subnets whose output has the wrong channel count
    Misuse("glow-subnet-channels", lambda: glow(subnet=bad_subnet)([x(4)]), ValueError,
           r"GLOWCouplingBlock: subnet 'subnet2' returned 5 channels.*expected 4"),
    Misuse("nice-subnet-channels",
           lambda: Fm.NICECouplingBlock([(4,)], subnet_constructor=bad_subnet)([x(4)]),
           ValueError, r"NICECouplingBlock: subnet 'F' returned 3 channels.*expected 2"),
    Misuse("all-in-one-subnet-channels", lambda: aio(subnet=bad_subnet)([x(4)]), ValueError,
           r"AllInOneBlock: subnet 'subnet' returned 5 channels \(output shape \(3, 5\)\), "
           r"expected 4"),
    Misuse("spline-subnet-channels",
           lambda: Fm.RationalQuadraticSpline([(4,)], subnet_constructor=bad_subnet)([x(4)]),
           ValueError, r"RationalQuadraticSpline: subnet 'subnet1' returned 63 channels.*"
           r"expected 62"),
    Misuse("erqs-subnet-channels",
           lambda: ElementwiseRationalQuadraticSpline([(4,)], [(2,)],
                                                      subnet_constructor=bad_subnet)(
               [x(4)], c=[x(2)]),
           ValueError, r"ElementwiseRationalQuadraticSpline: subnet returned raw parameters of "
           r"shape \(3, 125\), expected \(3, 124\)"),
    Misuse("glow-subnet-not-a-module", lambda: glow(subnet=not_a_module), TypeError,
           r"GLOWCouplingBlock: .*subnet.*int"),
    Misuse("glow-no-subnet", lambda: Fm.GLOWCouplingBlock([(4,)]), TypeError,
           r"GLOWCouplingBlock needs a subnet_constructor.*got None"),
    Misuse("all-in-one-no-subnet", lambda: Fm.AllInOneBlock([(4,)]), ValueError,
           r"subnet_constructor.*AllInOneBlock got subnet_constructor=None"),
    # a misspelled keyword: the public class, never a private base, and what it takes
    Misuse("glow-misspelled-keyword",
           lambda: Fm.GLOWCouplingBlock([(4,)], subnet_constructor=dense_subnet, clmap=2.0),
           TypeError, PUBLIC + r"GLOWCouplingBlock: got an unexpected keyword argument 'clmap'.*"
           r"GLOWCouplingBlock\(dims_in, .*clamp="),
    Misuse("sequence-append-misspelled-keyword",
           lambda: sequence((Fm.RNVPCouplingBlock, {"subnet_constructor": dense_subnet,
                                                    "clmap": 2.0})),
           TypeError, PUBLIC + r"RNVPCouplingBlock: got an unexpected keyword argument 'clmap'"),
    Misuse("spline-misspelled-keyword",
           lambda: Fm.RationalQuadraticSpline([(4,)], subnet_constructor=dense_subnet, binz=4),
           TypeError, PUBLIC + r"RationalQuadraticSpline: got an unexpected keyword argument "
           r"'binz'; it takes RationalQuadraticSpline\(dims_in, .*bins="),
    # dims_in given as a bare tuple
    Misuse("glow-dims-bare-tuple",
           lambda: Fm.GLOWCouplingBlock((4,), subnet_constructor=dense_subnet), TypeError,
           r"GLOWCouplingBlock.*dims_in.*got 4 in \(4,\).*\[\(4,\)\]"),
    Misuse("actnorm-dims-bare-tuple", lambda: Fm.ActNorm((4, 6, 6)), TypeError,
           r"ActNorm.*dims_in.*got 4 in \(4, 6, 6\).*\[\(4,\)\]"),
    Misuse("sequence-shape-as-tuple", lambda: SequenceINN((4,)), TypeError,
           r"SequenceINN takes the input shape as separate ints.*got the single argument "
           r"\(4,\)"),
    # split lengths
    Misuse("split-len-above-channels", lambda: glow(split_len=5), ValueError,
           r"GLOWCouplingBlock: Int split_len must be in range 0 <= split_len <= channels = 4, "
           r"got 5"),
    Misuse("split-len-fraction-above-one", lambda: glow(split_len=1.5), ValueError,
           r"GLOWCouplingBlock: Float split_len must be in range \[0, 1\], got 1.5"),
    # 0 <= split_len <= C stays valid (a block of C=1 channels must split 0 | 1, as in
    # FrEIA): an empty half without conditions warns, it does not raise
    Misuse("split-len-zero-unconditioned", lambda: glow(split_len=0), UserWarning,
           r"GLOWCouplingBlock: split_len=0 leaves half 1 empty .*4 channels.*no conditions",
           warns=True),
    Misuse("split-len-all-channels-unconditioned", lambda: glow(split_len=4), UserWarning,
           r"GLOWCouplingBlock: split_len=4 leaves half 2 empty .*4 channels.*no conditions",
           warns=True),
    Misuse("split-sections-too-long", lambda: Fm.Split([(4,)], section_sizes=[3, 3]),
           ValueError, r"Split: section_sizes \[3, 3\] sum to 6, more than the length 4"),
    Misuse("split-section-of-zero", lambda: Fm.Split([(4,)], section_sizes=[0, 4]), ValueError,
           r"Split: section_sizes must be positive ints, got \[0, 4\]"),
    Misuse("split-int-section-too-big", lambda: Fm.Split([(4,)], section_sizes=4), ValueError,
           r"Split: an int section_sizes must satisfy 0 < section_sizes < 4.*got 4"),
    Misuse("split-dim-out-of-range", lambda: Fm.Split([(4,)], dim=1), ValueError,
           r"Split: dim=1 is out of range for input shape \(4,\)"),
    Misuse("concat-shapes-differ", lambda: Fm.Concat([(4, 2), (3, 3)]), ValueError,
           r"Concat: all input shapes must be equal except in dim 0, got shapes "
           r"\[\(4, 2\), \(3, 3\)\]"),
    # fixed matrices, reshapes
    Misuse("fixed-linear-singular", lambda: Fm.FixedLinearTransform([(2,)], M=torch.ones(2, 2)),
           ValueError, r"FixedLinearTransform: M of shape \(2, 2\) is not invertible.*rank is 1"),
    Misuse("fixed-1x1-singular", lambda: Fm.Fixed1x1Conv([(2, 4, 4)], M=torch.ones(2, 2)),
           ValueError, r"Fixed1x1Conv: M of shape \(2, 2\) is not invertible"),
    Misuse("fixed-linear-wrong-matrix", lambda: Fm.FixedLinearTransform([(4,)], M=torch.eye(3)),
           ValueError, r"FixedLinearTransform: M must be a square matrix of shape \(4, 4\).*"
           r"got shape \(3, 3\)"),
    Misuse("haar-odd-size", lambda: Fm.HaarDownsampling([(2, 5, 4)]), ValueError,
           r"HaarDownsampling needs an even height and width, got shape \(2, 5, 4\)"),
    Misuse("irevnet-odd-size", lambda: Fm.IRevNetDownsampling([(2, 4, 5)]), ValueError,
           r"IRevNetDownsampling needs an even height and width, got shape \(2, 4, 5\)"),
    Misuse("haar-upsampling-channels", lambda: Fm.HaarUpsampling([(6, 4, 4)]), ValueError,
           r"HaarUpsampling needs a channel count divisible by 4, got shape \(6, 4, 4\)"),
    Misuse("reshape-element-count", lambda: Fm.Reshape([(4, 2)], output_dims=(9,)), ValueError,
           r"Reshape: cannot reshape input shape \(4, 2\) \(8 elements\) to \(9,\)"),
    Misuse("orthogonal-not-a-vector", lambda: Fm.OrthogonalTransform([(4, 2)]), ValueError,
           r"OrthogonalTransform works on vectors \(d,\) only, got an input of shape \(4, 2\)"),
    # building containers
    Misuse("sequence-instance-wrong-dims",
           lambda: sequence((Fm.PermuteRandom([(5,)]), {})), ValueError,
           r"instance of PermuteRandom with dims_in \[\(5,\)\].*output shape is \[\(4,\)\]"),
    Misuse("sequence-multi-output-block", lambda: sequence((Fm.Split, {})), ValueError,
           r"Module of type Split has more than one output: \[\(2,\), \(2,\)\]"),
    Misuse("node-instance-wrong-dims", lambda: Node(InputNode(4), Fm.PermuteRandom([(5,)])),
           ValueError, r"PermuteRandom instance given to Node .* dims_in=\[\(5,\)\].*\[\(4,\)\]"),
    Misuse("sequence-cond-shape-int",
           lambda: SequenceINN(4).append(Fm.GLOWCouplingBlock, cond=0, cond_shape=4,
                                         subnet_constructor=dense_subnet),
           TypeError, r"SequenceINN\.append\(GLOWCouplingBlock, cond=0\): cond_shape must be the "
           r"condition's shape as a tuple of ints.*got 4"),
    Misuse("sequence-append-torch-module",
           lambda: SequenceINN(4).append(nn.Linear, in_features=4, out_features=4), TypeError,
           r"SequenceINN\.append takes an InvertibleModule class.*got Linear, which is not "
           r"invertible"),
    # graph misuse
    Misuse("graph-cycle", cyclic_graph, ValueError, r"cycl.*'(perm|cat)'"),
    Misuse("graph-dangling-output", dangling_graph, ValueError,
           r"Output 1 of Node 'split'.*is not consumed by any node \(dangling output\)"),
    Misuse("graph-output-used-twice", double_use_graph, ValueError,
           r"Output 0 of node InputNode 'x'.*is already consumed by"),
    Misuse("graph-wrong-output-index", wrong_index_graph, ValueError,
           r"Output index 2 is out of range: Node 'split'.*has 2 outputs"),
    Misuse("graph-node-missing-from-list", missing_node_graph, ValueError,
           r"Node 'a'.*OutputNode 'z'.*not in the node_list passed to GraphINN"),
    # arguments
    Misuse("iresnet-spectral-norm-max", lambda: IResNetLayer([(4,)], spectral_norm_max=1.5),
           ValueError, r"IResNetLayer: spectral_norm_max must be in \(0, 1\], got 1.5"),
    Misuse("actnorm-single-sample-init", lambda: Fm.ActNorm([(4,)])([x(4, batch=1)]),
           ValueError, r"ActNorm cannot initialise from a batch of shape \(1, 4\): it holds one "
           r"value per channel"),
    Misuse("householder-no-reflections",
           lambda: Fm.HouseholderPerm([(4,)], n_reflections=0), ValueError,
           r"HouseholderPerm needs at least 1 householder reflection.*got n_reflections=0"),
    Misuse("spline-bins-do-not-fit",
           lambda: Fm.RationalQuadraticSpline([(4,)], subnet_constructor=dense_subnet, bins=100),
           ValueError, r"RationalQuadraticSpline: .*100 bins of minimum width 0.1 do not fit "
           r"into the domain width 6.0"),
    Misuse("glow-unknown-clamp-activation", lambda: glow(clamp_activation="FOO"), ValueError,
           r"GLOWCouplingBlock: Unknown clamp activation \"FOO\""),
    Misuse("permute-seed-string", lambda: Fm.PermuteRandom([(4,)], seed="3"), TypeError,
           r"PermuteRandom: seed must be an int or None, got str '3'"),
    Misuse("all-in-one-seed-negative",
           lambda: Fm.AllInOneBlock([(4,)], subnet_constructor=dense_subnet, seed=-1),
           ValueError, r"AllInOneBlock: seed must lie in \[0, 2\*\*32 - 1\], got -1"),
    Misuse("learned-conv-seed-float", lambda: Fm.Learned1x1Conv([(4,)], seed=2.5), TypeError,
           r"Learned1x1Conv: seed must be an int or None, got float 2.5"),
    # the inverse of an i-ResNet outside its contraction guarantee warns
    Misuse("iresnet-inverse-not-contractive",
           lambda: (lambda m, z: m([z], rev=True, jac=False))(*expanding_iresnet()),
           UserWarning, r"IResNetLayer: the product of the residual layers' spectral norms "
           r"\(.*\) is .* >= 1", warns=True),
]


def _params() -> List[Any]:
    params = []
    for misuse in CATALOGUE:
        marks = []
        if misuse.pending is not None:
            marks.append(pytest.mark.xfail(strict=True, reason=f"fix pending in {misuse.pending}"))
        params.append(pytest.param(misuse, id=misuse.id, marks=marks))
    return params


def _is_all(error: BaseException, expected: Errors) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return all(isinstance(error, kind) for kind in kinds)


@pytest.mark.parametrize("misuse", _params())
def test_misuse_gives_a_clear_error(misuse: Misuse) -> None:
    if misuse.warns:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            misuse.call()
        texts = [str(w.message) for w in caught if issubclass(w.category, misuse.error)]
        assert any(re.search(misuse.pattern, t, re.DOTALL) for t in texts), texts
        return
    with pytest.raises(BaseException) as info:
        misuse.call()
    error = info.value
    assert _is_all(error, misuse.error), f"{type(error).__name__}: {error}"
    if type(error) in (AssertionError, IndexError, KeyError, AttributeError):
        pytest.fail(f"a bare {type(error).__name__} surfaced: {error}")
    assert re.search(misuse.pattern, str(error), re.DOTALL), str(error)
    if misuse.cause is not None:
        assert isinstance(error.__cause__, misuse.cause), repr(error.__cause__)


def test_catalogue_is_large_and_ids_are_unique() -> None:
    ids = [m.id for m in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert len(CATALOGUE) >= 30
