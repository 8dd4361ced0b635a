"""Third-party code written against FrEIA (anomalib's style); it imports only ``FrEIA``.

The alias test imports this file after ``invertible.compat.install_freia_alias()``, so every
class here is built from ``invertible``; run as a script (``python -m invertible.compat
tests/freia_style_code.py``) it builds each model and checks its round trip. Models:

* ``fastflow_style``: a ``SequenceINN`` of ``AllInOneBlock``s with conv subnets on ``(C, H, W)``.
* ``cflow_style``: a conditional ``SequenceINN`` (``append(..., cond=0, cond_shape=...)``).
* ``uflow_style``: a U-shaped multi-scale ``GraphINN``: flow at the coarsest scale, ``Split``
  half of it out, ``IRevNetUpsampling`` the rest and ``Concat`` it with the next scale's input.
* ``csflow_style``: a ``GraphINN`` over three scales of the custom 3-input, 3-output blocks
  ``CrossScaleCoupling`` and ``ParallelFlip``, which subclass ``FrEIA.modules.InvertibleModule``
  with ``forward(self, input_tensor, rev=False, jac=True)`` and a static ``output_dims``.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import torch
import torch.nn.functional as F
from FrEIA.modules import AllInOneBlock, InvertibleModule
from torch import Tensor, nn

__all__ = [
    "CrossScaleCoupling",
    "CrossScaleSubnet",
    "ParallelFlip",
    "cflow_style",
    "csflow_style",
    "fastflow_style",
    "subnet_conv",
    "subnet_fc",
    "uflow_style",
]

Shape = Tuple[int, ...]

#: U-Flow example: input shape per scale, coarsest first (channels are chosen so that half of
#: each flow's output, upsampled 2x, plus the next input's channels is again divisible by 4).
UFLOW_SCALES: Tuple[Shape, ...] = ((8, 2, 2), (7, 4, 4), (3, 8, 8))
#: CS-Flow example: the same channels at three resolutions, finest first.
CSFLOW_SCALES: Tuple[Shape, ...] = ((4, 8, 8), (4, 4, 4), (4, 2, 2))


def subnet_conv(c_in: int, c_out: int) -> nn.Module:
    """3x3 conv, ReLU, 3x3 conv (FastFlow's subnet, small)."""
    return nn.Sequential(
        nn.Conv2d(c_in, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, c_out, 3, padding=1)
    )


def subnet_fc(c_in: int, c_out: int) -> nn.Module:
    """Linear, ReLU, linear (CFlow's subnet, small)."""
    return nn.Sequential(nn.Linear(c_in, 32), nn.ReLU(), nn.Linear(32, c_out))


def fastflow_style(channels: int = 4, size: int = 8, flow_steps: int = 3) -> Ff.SequenceINN:
    """FastFlow's per-scale flow: AllInOneBlocks with conv subnets on one feature map."""
    nodes = Ff.SequenceINN(channels, size, size)
    for _ in range(flow_steps):
        nodes.append(
            Fm.AllInOneBlock, subnet_constructor=subnet_conv, affine_clamping=2.0,
            permute_soft=False,
        )
    return nodes


def cflow_style(dim: int = 6, cond_dim: int = 3, coupling_blocks: int = 3) -> Ff.SequenceINN:
    """CFlow's decoder: AllInOneBlocks conditioned on a positional encoding ``c[0]``."""
    coder = Ff.SequenceINN(dim)
    for _ in range(coupling_blocks):
        coder.append(
            AllInOneBlock, cond=0, cond_shape=(cond_dim,), subnet_constructor=subnet_fc,
            affine_clamping=1.9, global_affine_type="SOFTPLUS", permute_soft=True,
        )
    return coder


def _flow_stage(node: Ff.Node, steps: int, name: str) -> List[Ff.Node]:
    """``steps`` AllInOneBlock nodes in a chain after ``node``."""
    stage: List[Ff.Node] = []
    for k in range(steps):
        stage.append(Ff.Node(
            stage[-1] if stage else node, Fm.AllInOneBlock,
            {"subnet_constructor": subnet_conv, "affine_clamping": 2.0, "permute_soft": False},
            name=f"{name}_flow_{k}",
        ))
    return stage


def uflow_style(
    scales: Sequence[Shape] = UFLOW_SCALES, steps_per_scale: int = 2
) -> Ff.GraphINN:
    """U-Flow's U-shaped multi-scale flow, coarsest scale first.

    Outputs, in order: half of each intermediate scale's flow output, then the finest flow's.
    """
    inputs = [Ff.InputNode(*shape, name=f"input_{k}") for k, shape in enumerate(scales)]
    nodes: List[Ff.Node] = []
    outputs: List[Ff.OutputNode] = []
    node: Ff.Node = inputs[0]
    for k in range(len(scales)):
        if k > 0:  # `node` is the previous scale's upsampled half
            node = Ff.Node([node.out0, inputs[k].out0], Fm.Concat, {"dim": 0}, name=f"cat_{k}")
            nodes.append(node)
        stage = _flow_stage(node, steps_per_scale, f"scale_{k}")
        nodes.extend(stage)
        if k == len(scales) - 1:
            outputs.append(Ff.OutputNode(stage[-1], name=f"output_{k}"))
            break
        channels = stage[-1].output_dims[0][0]
        halves = [channels // 2, channels - channels // 2]
        split = Ff.Node(stage[-1], Fm.Split, {"section_sizes": halves, "dim": 0},
                        name=f"split_{k}")
        node = Ff.Node(split.out1, Fm.IRevNetUpsampling, {}, name=f"up_{k}")
        nodes.extend([split, node])
        outputs.append(Ff.OutputNode(split.out0, name=f"output_{k}"))
    return Ff.GraphINN(inputs + nodes + outputs)


class CrossScaleSubnet(nn.Module):
    """For each scale: a conv net over that scale's input and the other scales' inputs resized
    to its resolution (CS-Flow's cross-scale convolutions, small)."""

    def __init__(self, c_in: int, c_out: int, n_scales: int = 3, hidden: int = 8) -> None:
        super().__init__()
        self.nets = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(n_scales * c_in, hidden, 3, padding=1), nn.LeakyReLU(0.1),
                nn.Conv2d(hidden, c_out, 3, padding=1),
            )
            for _ in range(n_scales)
        )

    def forward(self, xs: Sequence[Tensor]) -> List[Tensor]:
        """One output per scale, at that scale's resolution."""
        outs = []
        for k, net in enumerate(self.nets):
            size = xs[k].shape[-2:]
            resized = [x if i == k else F.interpolate(x, size=size, mode="bilinear",
                                                      align_corners=False)
                       for i, x in enumerate(xs)]
            outs.append(net(torch.cat(resized, dim=1)))
        return outs


class CrossScaleCoupling(InvertibleModule):
    """CS-Flow-style coupling of three scales: each scale's second half is scaled and shifted
    from the first halves of all scales, then the first halves from the new second halves."""

    def __init__(self, dims_in: Sequence[Shape], clamp: float = 3.0) -> None:
        super().__init__(dims_in)
        channels = dims_in[0][0]
        self.clamp = clamp
        self.split_len1 = channels - channels // 2
        self.split_len2 = channels // 2
        self.subnet1 = CrossScaleSubnet(self.split_len1, 2 * self.split_len2, len(dims_in))
        self.subnet2 = CrossScaleSubnet(self.split_len2, 2 * self.split_len1, len(dims_in))

    def _coefficients(self, subnet: nn.Module, passive: List[Tensor], n: int
                      ) -> Tuple[List[Tensor], List[Tensor]]:
        """Soft-clamped log-scales and shifts for each scale."""
        a = subnet(passive)
        s = [self.clamp * 0.636 * torch.atan(ai[:, :n] / self.clamp) for ai in a]
        return s, [ai[:, n:] for ai in a]

    def forward(self, input_tensor: Sequence[Tensor], rev: bool = False, jac: bool = True
                ) -> Tuple[List[Tensor], Tensor]:
        """The coupling (``rev=False``) or its inverse; log-det per sample."""
        x1 = [x[:, : self.split_len1] for x in input_tensor]
        x2 = [x[:, self.split_len1 :] for x in input_tensor]
        if not rev:
            s2, t2 = self._coefficients(self.subnet1, x1, self.split_len2)
            x2 = [x * torch.exp(s) + t for x, s, t in zip(x2, s2, t2)]
            s1, t1 = self._coefficients(self.subnet2, x2, self.split_len1)
            x1 = [x * torch.exp(s) + t for x, s, t in zip(x1, s1, t1)]
        else:
            s1, t1 = self._coefficients(self.subnet2, x2, self.split_len1)
            x1 = [(x - t) * torch.exp(-s) for x, s, t in zip(x1, s1, t1)]
            s2, t2 = self._coefficients(self.subnet1, x1, self.split_len2)
            x2 = [(x - t) * torch.exp(-s) for x, s, t in zip(x2, s2, t2)]
        log_jac = sum(s.flatten(1).sum(1) for s in s1 + s2)
        out = [torch.cat([a, b], dim=1) for a, b in zip(x1, x2)]
        return out, -log_jac if rev else log_jac

    @staticmethod
    def output_dims(input_dims: Sequence[Shape]) -> Sequence[Shape]:
        """The input shapes."""
        return input_dims


class ParallelFlip(InvertibleModule):
    """Reverses the channel order of each scale; returns FrEIA's scalar ``0.`` log-det."""

    def __init__(self, dims_in: Sequence[Shape]) -> None:
        super().__init__(dims_in)

    def forward(self, input_tensor: Sequence[Tensor], rev: bool = False, jac: bool = True
                ) -> Tuple[List[Tensor], float]:
        """Flip channels (its own inverse)."""
        return [x.flip(1) for x in input_tensor], 0.0

    @staticmethod
    def output_dims(input_dims: Sequence[Shape]) -> Sequence[Shape]:
        """The input shapes."""
        return input_dims


def csflow_style(
    scales: Sequence[Shape] = CSFLOW_SCALES, n_coupling_blocks: int = 2, clamp: float = 3.0
) -> Ff.GraphINN:
    """CS-Flow's graph: three inputs, couplings with channel flips between, three outputs."""
    nodes: List[Ff.Node] = [
        Ff.InputNode(*shape, name=f"input_{k}") for k, shape in enumerate(scales)
    ]
    wires = [node.out0 for node in nodes]
    for k in range(n_coupling_blocks):
        if k > 0:
            nodes.append(Ff.Node(wires, ParallelFlip, {}, name=f"flip_{k}"))
            wires = [nodes[-1].out0, nodes[-1].out1, nodes[-1].out2]
        nodes.append(Ff.Node(wires, CrossScaleCoupling, {"clamp": clamp}, name=f"coupling_{k}"))
        wires = [nodes[-1].out0, nodes[-1].out1, nodes[-1].out2]
    outputs = [Ff.OutputNode(wire, name=f"output_{k}") for k, wire in enumerate(wires)]
    return Ff.GraphINN(nodes + outputs)


def _round_trip_error(model: nn.Module, xs: List[Tensor], c: Sequence[Tensor] = ()) -> float:
    """max |x - f^-1(f(x))| and the log-det sign check, as a user would script it."""
    cond = list(c) if c else None
    z, log_det = model(xs if len(xs) > 1 else xs[0], c=cond)
    x_rev, log_det_rev = model(z, c=cond, rev=True)
    x_rev = list(x_rev) if isinstance(x_rev, (list, tuple)) else [x_rev]
    error = max(float((a - b).abs().max()) for a, b in zip(xs, x_rev))
    return max(error, float((log_det + log_det_rev).abs().max()))


def main() -> None:
    """Build every model and print its round-trip error (run with the FrEIA alias)."""
    torch.manual_seed(0)
    batch = 2
    checks = {
        "fastflow": (fastflow_style(), [torch.randn(batch, 4, 8, 8)], ()),
        "cflow": (cflow_style(), [torch.randn(batch, 6)], (torch.randn(batch, 3),)),
        "uflow": (uflow_style(), [torch.randn(batch, *s) for s in UFLOW_SCALES], ()),
        "csflow": (csflow_style(), [torch.randn(batch, *s) for s in CSFLOW_SCALES], ()),
    }
    print(f"FrEIA is {Ff.__name__.split('.')[0]}")
    for name, (model, xs, c) in checks.items():
        with torch.no_grad():
            error = _round_trip_error(model, xs, c)
        print(f"{name}: {type(model).__module__}.{type(model).__name__} round trip {error:.1e}")
        if error > 1e-4:
            raise SystemExit(f"{name}: round trip error {error}")


if __name__ == "__main__":
    main()
