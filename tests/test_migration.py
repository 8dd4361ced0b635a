"""FrEIA 0.2 checkpoints: one call makes a network built with `invertible` compute 0.2's numbers.

Each network is built with the real PyPI FrEIA 0.2 (the ``test`` extra) from fixed seeds, run
once (ActNorm initialises from data), moved off its initial values and saved with ``torch.save``:
a real 0.2 checkpoint. The same network built with ``invertible`` from other seeds then loads it
with :func:`invertible.compat.load_freia_02_checkpoint` and must give 0.2's outputs and log-dets
in both directions; a plain ``load_state_dict`` must not (so each test can fail).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import invertible.framework as If
import invertible.modules as Im
from invertible.compat import load_freia_02_checkpoint
from subnets import conv_subnet, dense_subnet

Ff = pytest.importorskip("FrEIA.framework")
Fm = pytest.importorskip("FrEIA.modules")

pytestmark = pytest.mark.filterwarnings("ignore:.*old parameter names:DeprecationWarning")

B = 5
#: float32: 1e-6 relative (log-dets of images are sums over hundreds of terms); float64: 1e-10.
TOL = {torch.float32: 1e-6, torch.float64: 1e-10}


def fastflow_like(ff: Any, fm: Any) -> nn.Module:
    """anomalib's FastFlow: hard-permutation AllInOneBlocks with conv subnets on a feature map."""
    inn = ff.SequenceINN(4, 8, 8)
    for _ in range(4):
        inn.append(fm.AllInOneBlock, subnet_constructor=conv_subnet, affine_clamping=2.0,
                   permute_soft=False)
    return inn


def vector_net(ff: Any, fm: Any) -> nn.Module:
    """A conditional vector SequenceINN: ActNorm, both permutation kinds, every global affine
    activation, a seeded PermuteRandom, GLOW and RealNVP couplings."""
    inn = ff.SequenceINN(6)
    cond = {"cond": 0, "cond_shape": (2,)}
    inn.append(fm.ActNorm)
    inn.append(fm.AllInOneBlock, **cond, subnet_constructor=dense_subnet, affine_clamping=1.5,
               global_affine_type="SIGMOID", permute_soft=True)
    inn.append(fm.PermuteRandom, seed=3)
    inn.append(fm.GLOWCouplingBlock, subnet_constructor=dense_subnet, clamp=2.0)
    inn.append(fm.AllInOneBlock, subnet_constructor=dense_subnet, affine_clamping=3.0,
               global_affine_type="EXP", reverse_permutation=True)
    inn.append(fm.RNVPCouplingBlock, **cond, subnet_constructor=dense_subnet)
    inn.append(fm.AllInOneBlock, subnet_constructor=dense_subnet, gin_block=True)
    return inn


def branching_graph(ff: Any, fm: Any) -> nn.Module:
    """A GraphINN with parallel branches of different blocks, as multi-scale flows have."""
    inp = ff.InputNode(3, 8, 8, name="input")
    split = ff.Node(inp, fm.Split, {"section_sizes": [1, 2]}, name="split")
    flat = ff.Node(split.out0, fm.Flatten, {}, name="flatten")
    perm = ff.Node(flat, fm.PermuteRandom, {}, name="perm")
    back = ff.Node(perm, fm.Reshape, {"output_dims": (1, 8, 8)}, name="unflatten")
    conv = ff.Node(split.out1, fm.AllInOneBlock, {"subnet_constructor": conv_subnet},
                   name="conv")
    cat = ff.Node([back.out0, conv.out0], fm.Concat, {}, name="concat")
    haar = ff.Node(cat, fm.HaarDownsampling, {}, name="haar")
    return ff.GraphINN([inp, split, flat, perm, back, conv, cat, haar,
                        ff.OutputNode(haar, name="output")])


def twin_branches(ff: Any, fm: Any) -> nn.Module:
    """Two parallel AllInOneBlocks of the same shape: a 0.2 checkpoint cannot tell them apart."""
    inp = ff.InputNode(8, name="input")
    split = ff.Node(inp, fm.Split, {"section_sizes": [4, 4]}, name="split")
    left = ff.Node(split.out0, fm.AllInOneBlock, {"subnet_constructor": dense_subnet},
                   name="left")
    right = ff.Node(split.out1, fm.AllInOneBlock, {"subnet_constructor": dense_subnet},
                    name="right")
    cat = ff.Node([left.out0, right.out0], fm.Concat, {}, name="concat")
    return ff.GraphINN([inp, split, left, right, cat, ff.OutputNode(cat, name="output")])


Builder = Callable[[Any, Any], nn.Module]
NETWORKS: Dict[str, Tuple[Builder, Tuple[int, ...], Optional[Tuple[int, ...]]]] = {
    "fastflow": (fastflow_like, (4, 8, 8), None),
    "vector": (vector_net, (6,), (2,)),
    "graph": (branching_graph, (3, 8, 8), None),
}


def build(builder: Builder, pypi: bool, seed: int, dtype: torch.dtype) -> nn.Module:
    """``builder`` on FrEIA 0.2's namespaces (``pypi``) or ours, both generators seeded."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    return (builder(Ff, Fm) if pypi else builder(If, Im)).to(dtype)


def data(shape: Tuple[int, ...], cond: Optional[Tuple[int, ...]], dtype: torch.dtype
         ) -> Tuple[Tensor, Optional[List[Tensor]]]:
    """Seeded inputs and (optional) conditions."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, *shape, generator=gen).to(dtype)
    return x, None if cond is None else [torch.randn(B, *cond, generator=gen).to(dtype)]


def run(net: nn.Module, x: Tensor, c: Optional[List[Tensor]], rev: bool) -> Tuple[Tensor, Tensor]:
    """``net(x, c, rev)`` without gradients; the output as one tensor."""
    with torch.no_grad():
        out, log_det = net(x.clone(), c=c, rev=rev)
    return (out[0] if isinstance(out, (list, tuple)) else out), log_det


def trained_pypi(builder: Builder, x: Tensor, c: Optional[List[Tensor]]) -> nn.Module:
    """The 0.2 network, built, initialised by a first call and moved off its initial values."""
    theirs = build(builder, True, 0, x.dtype)
    run(theirs, x, c, rev=False)  # data-dependent initialisation (ActNorm)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in theirs.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=gen).to(p.dtype))
    return theirs


def save_pypi_checkpoint(builder: Builder, x: Tensor, c: Optional[List[Tensor]],
                         path: Path) -> nn.Module:
    """:func:`trained_pypi`, with its state_dict written to ``path`` by ``torch.save``."""
    theirs = trained_pypi(builder, x, c)
    torch.save(theirs.state_dict(), path)
    return theirs


def gap(a: nn.Module, b: nn.Module, x: Tensor, c: Optional[List[Tensor]]) -> float:
    """The largest difference of outputs and log-dets of ``a`` and ``b``, both directions."""
    (za, la), (zb, lb) = run(a, x, c, False), run(b, x, c, False)
    (xa, ra), (xb, rb) = run(a, za, c, True), run(b, za, c, True)
    return max(float((u - v).abs().max()) for u, v in [(za, zb), (la, lb), (xa, xb), (ra, rb)])


def assert_same_function(ours: nn.Module, theirs: nn.Module, x: Tensor,
                         c: Optional[List[Tensor]]) -> None:
    """Outputs and log-dets agree forward, and reverse from 0.2's latent codes."""
    tol = TOL[x.dtype]
    z, log_det = run(theirs, x, c, rev=False)
    back, log_det_rev = run(theirs, z, c, rev=True)
    for got, want in [(run(ours, x, c, False), (z, log_det)),
                      (run(ours, z, c, True), (back, log_det_rev))]:
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_freia_is_the_real_pypi_package() -> None:
    """The comparisons below mean something only against the real FrEIA, not the alias."""
    assert not Fm.__name__.startswith("invertible") and Fm.AllInOneBlock is not Im.AllInOneBlock


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", NETWORKS)
def test_one_call_gives_the_numbers_of_freia_02(name: str, dtype: torch.dtype,
                                                 tmp_path: Path) -> None:
    builder, shape, cond = NETWORKS[name]
    x, c = data(shape, cond, dtype)
    path = tmp_path / "flow.pt"
    theirs = save_pypi_checkpoint(builder, x, c, path)
    ours = build(builder, False, 1, dtype)
    plain = copy.deepcopy(ours)
    assert load_freia_02_checkpoint(ours, path) is ours
    assert_same_function(ours, theirs, x, c)
    try:
        plain.load_state_dict(torch.load(path))
    except RuntimeError:  # the graph: 0.2 may have numbered its branches in another order
        assert name == "graph"
    else:
        assert gap(plain, theirs, x, c) > 1e-2  # HEAD's clamp on 0.2's weights


def module_order(net: Any) -> List[str]:
    """The node names of a graph's ``module_list``, in order."""
    return [node.name for node in net.node_list if node.module is not None]


def test_graph_saved_with_its_branches_in_another_order(tmp_path: Path) -> None:
    """FrEIA 0.2 ordered parallel branches by memory address: build until it picks another
    order than ours (about one build in three), then that checkpoint still loads exactly."""
    x, _ = data((3, 8, 8), None, torch.float32)
    ours = build(branching_graph, False, 1, torch.float32)
    keep: List[object] = []  # keeps old nodes alive: the next build lands elsewhere in memory
    for attempt in range(40):
        keep.append([object() for _ in range(7 * attempt)])
        theirs = save_pypi_checkpoint(branching_graph, x, None, tmp_path / "flow.pt")
        keep.append(theirs)
        if module_order(theirs) != module_order(ours):
            break
    assert module_order(theirs) != module_order(ours)
    with pytest.raises(RuntimeError):
        copy.deepcopy(ours).load_state_dict(torch.load(tmp_path / "flow.pt"))
    load_freia_02_checkpoint(ours, tmp_path / "flow.pt")
    assert_same_function(ours, theirs, x, None)


def test_flows_nested_in_a_user_module(tmp_path: Path) -> None:
    """anomalib keeps one flow per feature scale in an ``nn.ModuleList`` (keys such as
    ``1.module_list.4.subnet...``): the call walks into every container."""
    x, _ = data((4, 8, 8), None, torch.float32)
    theirs = nn.ModuleList([trained_pypi(fastflow_like, x, None),
                            trained_pypi(branching_graph, x[:, :3], None)])
    torch.save(theirs.state_dict(), tmp_path / "model.pt")
    ours = nn.ModuleList([build(fastflow_like, False, 1, torch.float32),
                          build(branching_graph, False, 1, torch.float32)])
    load_freia_02_checkpoint(ours, tmp_path / "model.pt")
    assert_same_function(ours[0], theirs[0], x, None)
    assert_same_function(ours[1], theirs[1], x[:, :3], None)


def test_twin_branches_are_refused(tmp_path: Path) -> None:
    x, _ = data((8,), None, torch.float32)
    save_pypi_checkpoint(twin_branches, x, None, tmp_path / "flow.pt")
    ours = build(twin_branches, False, 1, torch.float32)
    with pytest.raises(ValueError, match=r"\['left', 'right'\] in more than one order"):
        load_freia_02_checkpoint(ours, tmp_path / "flow.pt")


def test_what_is_not_a_checkpoint_of_the_network() -> None:
    ours = build(vector_net, False, 1, torch.float32)
    with pytest.raises(TypeError, match=r"expected a state_dict .* got list"):
        load_freia_02_checkpoint(ours, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="entry 'state_dict' is of type OrderedDict"):
        load_freia_02_checkpoint(ours, {"state_dict": ours.state_dict()})  # type: ignore[dict-item]
    graph = build(branching_graph, False, 1, torch.float32)
    with pytest.raises(RuntimeError, match=r"Error.* loading state_dict"):
        load_freia_02_checkpoint(graph, build(twin_branches, False, 1, torch.float32).state_dict())
