"""Fully convolutional containers run at any image size, as in FrEIA 0.2 and anomalib.

A FastFlow-style SequenceINN and a U-Flow-style multi-scale GraphINN are built for one image size
and run forward and in reverse on a small crop and on a larger image, with exact log-dets
(against the autograd Jacobian where it is small enough to compute, and per pixel where it is
not); with 1x1-conv subnets every pixel is mapped on its own, so each pixel of a large image comes
out as it does on a 1x1 crop. Memory-efficient training works at other sizes too. What a call at
another size still must get right (channel count and rank, conditions of the input's size) is
refused with an error naming the container or block.
"""

from __future__ import annotations

from typing import Callable, List

import pytest
import torch
from torch import Tensor, nn

import invertible.framework as Ff
import invertible.modules as Fm
from invertible.testing import autograd_log_det

D64 = torch.float64


def conv(kernel: int, hidden: int = 0) -> Callable[[int, int], nn.Module]:
    """Conv(kernel) - ReLU - Conv(kernel) with 'same' padding; ``hidden`` 0 means c_in."""

    def make(c_in: int, c_out: int) -> nn.Module:
        width = hidden or c_in
        return nn.Sequential(nn.Conv2d(c_in, width, kernel, padding=kernel // 2), nn.ReLU(),
                             nn.Conv2d(width, c_out, kernel, padding=kernel // 2))

    return make


def fastflow(channels: int = 64, kernels=(3, 1, 3, 1), size: int = 32) -> Ff.SequenceINN:
    """FastFlow's flow: AllInOneBlocks with 3x3/1x1 conv subnets, clamp 2, hard permutation."""
    torch.manual_seed(0)
    inn = Ff.SequenceINN(channels, size, size)
    for k in kernels:
        inn.append(Fm.AllInOneBlock, subnet_constructor=conv(k), affine_clamping=2.0,
                   permute_soft=False)
    return inn.double()


def uflow(channels: int = 4, size: int = 16) -> Ff.GraphINN:
    """A U-Flow-like multi-scale graph: IRevNet and Haar downsampling, Split, couplings at two
    scales, Haar upsampling back and Concat, then a last AllInOneBlock."""
    torch.manual_seed(0)
    inp = Ff.InputNode(channels, size, size, name="x")
    down = Ff.Node(inp, Fm.IRevNetDownsampling, name="down")
    split = Ff.Node(down, Fm.Split, {"section_sizes": [2 * channels, 2 * channels]}, name="split")
    fine = Ff.Node(split.out0, Fm.GLOWCouplingBlock, {"subnet_constructor": conv(3, 8),
                                                      "clamp": 1.5}, name="fine")
    haar = Ff.Node(split.out1, Fm.HaarDownsampling, name="haar")
    coarse = Ff.Node(haar, Fm.AllInOneBlock, {"subnet_constructor": conv(3, 8),
                                              "affine_clamping": 1.5}, name="coarse")
    up = Ff.Node(coarse, Fm.HaarUpsampling, name="up")
    cat = Ff.Node([fine.out0, up.out0], Fm.Concat, name="cat")
    last = Ff.Node(cat, Fm.AllInOneBlock, {"subnet_constructor": conv(1, 8)}, name="last")
    out = Ff.OutputNode(last, name="z")
    return Ff.GraphINN([inp, down, split, fine, haar, coarse, up, cat, last, out]).double()


def randn(*shape: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=D64)


def assert_round_trip(net: nn.Module, x: Tensor) -> Tensor:
    """Forward then reverse at ``x``'s size; returns the log-det."""
    z, log_det = net(x)
    assert z.shape == x.shape[:1] + z.shape[1:] and log_det.shape == (x.shape[0],)
    x_rev, log_det_rev = net(z, rev=True)
    torch.testing.assert_close(x_rev, x)
    torch.testing.assert_close(log_det_rev, -log_det)
    return log_det


@pytest.mark.parametrize("shape", [(1, 64, 2, 2), (2, 64, 48, 40)], ids=["crop", "large"])
def test_fastflow_chain_runs_at_other_sizes(shape: tuple) -> None:
    inn = fastflow()
    with torch.no_grad():
        assert_round_trip(inn, 0.5 * randn(*shape))


def test_fastflow_log_det_is_exact_on_a_crop() -> None:
    inn = fastflow(channels=8)  # built for 32x32, run on 3x2: the Jacobian is 48 x 48
    x = randn(2, 8, 3, 2)
    _, log_det = inn(x)
    torch.testing.assert_close(log_det.detach(), autograd_log_det(inn, [x], None))
    z = inn(x)[0].detach()
    torch.testing.assert_close(inn(z, rev=True)[1].detach(),
                               autograd_log_det(inn, [z], None, rev=True))


def test_pixels_of_a_large_image_equal_their_own_1x1_crops() -> None:
    """With 1x1-conv subnets each pixel is an independent flow of its channel vector: the large
    image's outputs are those of its pixels run as 1x1 crops, and its log-det is the sum of the
    pixels' log-dets (so the log-det at the large size is exact too)."""
    inn = fastflow(channels=16, kernels=(1, 1, 1))
    x = randn(2, 16, 40, 24)
    with torch.no_grad():
        z, log_det = inn(x)
        pixels = x.permute(0, 2, 3, 1).reshape(-1, 16, 1, 1)  # one 1x1 crop per pixel
        z_pixels, log_det_pixels = inn(pixels)
    torch.testing.assert_close(z, z_pixels.reshape(2, 40, 24, 16).permute(0, 3, 1, 2))
    torch.testing.assert_close(log_det, log_det_pixels.reshape(2, -1).sum(1))
    assert_round_trip(inn, x[:, :, :5, :3])


@pytest.mark.parametrize("shape", [(1, 4, 4, 4), (2, 4, 24, 12)], ids=["smaller", "larger"])
def test_multi_scale_graph_runs_at_other_sizes(shape: tuple) -> None:
    graph = uflow()  # built for (4, 16, 16)
    with torch.no_grad():
        assert_round_trip(graph, randn(*shape))


def test_multi_scale_graph_log_det_is_exact_at_another_size() -> None:
    graph = uflow()
    x = randn(2, 4, 4, 8)  # 128 dimensions
    _, log_det = graph(x)
    torch.testing.assert_close(log_det.detach(), autograd_log_det(graph, [x], None))


def _gradients(net: nn.Module, x: Tensor, c: List[Tensor]) -> List[Tensor]:
    net.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    z, log_det = net(x, c=c or None)
    (0.5 * z.pow(2).sum() + 0.1 * z.pow(3).sum() - log_det.sum()).backward()
    return [x.grad] + [p.grad for p in net.parameters()]


@pytest.mark.parametrize("kind", ["sequence", "graph"])
def test_memory_efficient_training_at_another_size(kind: str) -> None:
    net = fastflow(channels=8) if kind == "sequence" else uflow()
    x = randn(2, *((8, 6, 10) if kind == "sequence" else (4, 8, 12)))
    expected = _gradients(net, x, [])
    net.memory_efficient = True
    assert "ByInversion" in type(net(x.clone().requires_grad_())[0].grad_fn).__name__
    for e, g in zip(expected, _gradients(net, x, [])):
        torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-9)


def test_conditions_follow_the_input_size() -> None:
    """An image condition must have the input's extents at call time; a vector condition is
    broadcast over them."""
    torch.manual_seed(0)
    inn = Ff.SequenceINN(4, 8, 8)
    inn.append(Fm.AllInOneBlock, cond=0, cond_shape=(2, 8, 8), subnet_constructor=conv(3))
    inn.append(Fm.GLOWCouplingBlock, cond=1, cond_shape=(3,), subnet_constructor=conv(1))
    inn = inn.double()
    x, c = randn(2, 4, 6, 10), [randn(2, 2, 6, 10), randn(2, 3)]
    z, log_det = inn(x, c)
    x_rev, log_det_rev = inn(z, c, rev=True)
    torch.testing.assert_close(x_rev, x)
    torch.testing.assert_close(log_det_rev, -log_det)
    with pytest.raises(ValueError, match=r"condition.*\(2, 2, 8, 8\).*\(2, 4, 6, 10\)"):
        inn(x, [randn(2, 2, 8, 8), c[1]])


def test_channel_count_and_rank_are_still_checked() -> None:
    inn = fastflow(channels=8)
    with pytest.raises(ValueError, match=r"SequenceINN: input must have shape \(B, 8, \*, \*\), "
                       r"got shape \(2, 6, 4, 4\)"):
        inn(randn(2, 6, 4, 4))
    with pytest.raises(ValueError, match=r"SequenceINN: input must have shape \(B, 8, \*, \*\)"):
        inn(randn(2, 8, 4))
    with pytest.raises(ValueError, match=r"GraphINN: the tensor for InputNode 'x' must have shape "
                       r"\(B, 4, \*, \*\), got shape \(2, 3, 8, 8\)"):
        uflow()(randn(2, 3, 8, 8))
