"""Glow: a multi-scale flow on images with a learned prior for the factored-out latents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Dict, List, Optional

from torch import nn

from .. import modules as Fm
from ..distributions import FlowDistribution, LearnedPrior
from ..framework import ConditionNode, GraphINN, InputNode, Node, OutputNode
from ..utils import output_dims_compatible
from ._common import ConvSubnet, check_count, seeded, zeroed

__all__ = ["Glow", "split_prior_net"]

SQUEEZES: Dict[str, Any] = {"irevnet": Fm.IRevNetDownsampling, "haar": Fm.HaarDownsampling}


def split_prior_net(source_channels: int, channels: int) -> nn.Module:
    """The network of a factored-out latent's prior: from the next level's latent
    ``(source_channels, H/2, W/2)`` to mean and log-scale ``(2 channels, H, W)``.

    A 3x3 convolution that starts at zero (so the prior starts as :math:`\\mathcal N(0, I)`),
    then ``PixelShuffle(2)`` back to the latent's resolution.
    """
    conv = zeroed(nn.Conv2d(source_channels, 8 * channels, 3, padding=1))
    return nn.Sequential(conv, nn.PixelShuffle(2))


def Glow(  # noqa: N802 - named after the architecture
        shape: Sequence[int], levels: int = 3, steps: int = 4, hidden_channels: int = 64,
        context: int = 0, squeeze: str = "irevnet", clamp: float = 2.0,
        seed: int = 0) -> FlowDistribution:
    r"""A Glow density on images ``shape = (C, H, W)``: multi-scale, with a learned prior.

    The network is a ``GraphINN``. Each of the ``levels`` levels squeezes its input
    (``IRevNetDownsampling`` or ``HaarDownsampling``: :math:`(C, H, W) \to (4C, H/2, W/2)`),
    then runs ``steps`` flow steps, each ``ActNorm`` (initialised from the first batch it
    sees: call ``log_prob`` on data before sampling), ``Learned1x1Conv`` and a
    ``AffineCouplingOneSided``: Glow's affine coupling, which scales and shifts the second half
    of the channels as a function of the first with one subnet, Glow's (3x3 conv, ReLU, 1x1
    conv, ReLU, zero 3x3 conv; ``hidden_channels`` wide). The next step's 1x1 convolution mixes
    the halves, so a second, mirrored coupling per step (``GLOWCouplingBlock``) would only
    double the subnet work. Every level but the last then splits its channels in half
    (``Split``): the first half goes on to the next level, the second is a latent output
    ("factored out"); the last level's output is the final latent. Outputs are ordered by
    level, the final latent last.

    The final latent has the base :math:`\mathcal N(0, I)`. A factored-out latent :math:`z_l`
    has Glow's learned prior :math:`\mathcal N(\mu, e^{2s})` (``LearnedPrior``) with
    :math:`(\mu, s)` computed by :func:`split_prior_net` from the next level's latent
    :math:`z_{l+1}` (``source = l + 1``). Glow computes them from the kept half itself; a base
    sees only outputs of the network, and the kept half is transformed further, so here each
    latent is conditioned on the latent of the coarser level below it (for two levels, that
    latent is an invertible function of the kept half). Sampling draws the final latent first,
    then the factored-out ones from the coarsest to the finest, then runs the inverse.

    With ``context > 0`` every coupling's subnets also get a ``(context,)`` condition vector,
    broadcast over the pixels: call ``log_prob(x, c)``, ``sample(n, c)``. The priors do not see
    it. ``H`` and ``W`` must be divisible by ``2 ** levels``.

    Building is deterministic in ``seed`` and leaves torch's global generator as it was: the
    1x1 convolutions take ``seed + k``, and the subnets' weights are drawn inside
    ``torch.random.fork_rng()`` seeded with ``seed``.

    References: Kingma, Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    NeurIPS 2018; Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017
    (the multi-scale architecture).

    Args:
        shape: the image shape ``(C, H, W)``.
        levels: the number of levels (squeezes).
        steps: the flow steps per level.
        hidden_channels: the width of the coupling subnets.
        context: the size of the condition vector (0: unconditional).
        squeeze: ``"irevnet"`` or ``"haar"``.
        clamp: the soft bound of the couplings' log-scales.
        seed: the seed of the 1x1 convolutions and the initial weights.

    Returns:
        A :class:`~invertible.distributions.FlowDistribution` (``.inn`` the ``GraphINN``).

    Raises:
        ValueError: a shape that is not ``(C, H, W)`` with extents divisible by
            ``2 ** levels``, a count out of range or an unknown ``squeeze``.
    """
    dims = tuple(int(d) for d in shape)
    check_count("Glow", "levels", levels, 1)
    check_count("Glow", "steps", steps, 1)
    check_count("Glow", "hidden_channels", hidden_channels, 1)
    check_count("Glow", "context", context, 0)
    if len(dims) != 3 or min(dims) < 1 or dims[1] % 2**levels or dims[2] % 2**levels:
        raise ValueError(f"Glow: shape must be (C, H, W) with H and W divisible by 2 ** levels "
                         f"= {2**levels}, got {tuple(shape)}.")
    if squeeze not in SQUEEZES:
        raise ValueError(f"Glow: squeeze must be one of {sorted(SQUEEZES)}, got {squeeze!r}.")
    with seeded(seed):
        inn = _glow_graph(dims, levels, steps, hidden_channels, context, SQUEEZES[squeeze],
                          clamp, seed)
        shapes = output_dims_compatible(inn)
        bases: List[Optional[LearnedPrior]] = [
            LearnedPrior(shapes[k], split_prior_net(shapes[k + 1][0], shapes[k][0]),
                         source=k + 1)
            for k in range(levels - 1)]
    return FlowDistribution(inn, base=[*bases, None])


def _glow_graph(shape: Sequence[int], levels: int, steps: int, hidden: int, context: int,
                squeeze: Any, clamp: float, seed: int) -> GraphINN:
    """The ``GraphINN`` of :func:`Glow`; outputs the factored-out latents, then the last."""
    x = InputNode(*shape, name="x")
    nodes: List[Any] = [x]
    conditions = [ConditionNode(context, name="c")] if context else []
    coupling = {"subnet_constructor": ConvSubnet(hidden), "clamp": clamp}
    outputs: List[OutputNode] = []
    node: Any = x
    for level in range(levels):
        node = Node(node, squeeze, {}, name=f"squeeze{level}")
        nodes.append(node)
        for step in range(steps):
            name = f"level{level}.step{step}"
            norm = Node(node, Fm.ActNorm, {}, name=f"{name}.actnorm")
            conv = Node(norm, Fm.Learned1x1Conv, {"seed": seed + level * steps + step},
                        name=f"{name}.conv1x1")
            node = Node(conv, Fm.AffineCouplingOneSided, coupling, conditions=conditions or None,
                        name=f"{name}.coupling")
            nodes += [norm, conv, node]
        if level < levels - 1:
            split = Node(node, Fm.Split, {"n_sections": 2, "dim": 0}, name=f"split{level}")
            outputs.append(OutputNode((split, 1), name=f"z{level}"))
            nodes.append(split)
            node = (split, 0)  # the kept half
    outputs.append(OutputNode(node, name=f"z{levels - 1}"))
    return GraphINN([*nodes, *conditions, *outputs])
