"""Hypothesis: random shapes, split lengths, clamps and block sequences keep the invariants."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import invertible.modules as Fm
from invertible import testing as T
from invertible.framework import SequenceINN
from subnets import conv1x1_subnet, dense_subnet

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

COUPLINGS = [
    Fm.NICECouplingBlock,
    Fm.RNVPCouplingBlock,
    Fm.GLOWCouplingBlock,
    Fm.GINCouplingBlock,
    Fm.AffineCouplingOneSided,
]


@st.composite
def shapes(draw: st.DrawFn) -> Tuple[int, ...]:
    """A vector shape (C,) or an image shape (C, H, W); C >= 2 so both halves are non-empty."""
    channels = draw(st.integers(2, 7))
    if draw(st.booleans()):
        return (channels,)
    return (channels, draw(st.integers(1, 3)), draw(st.integers(1, 3)))


@st.composite
def block_specs(draw: st.DrawFn, channels: int, conditioned: bool) -> List[tuple]:
    """A list of (class, kwargs) for a random chain of blocks."""
    specs = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["coupling", "all_in_one", "permute"]))
        cond = conditioned and draw(st.booleans())
        if kind == "permute":
            specs.append((Fm.PermuteRandom, {"seed": draw(st.integers(0, 100))}, False))
        elif kind == "all_in_one":
            kwargs = {
                "affine_clamping": draw(st.floats(0.5, 3.0)),
                "gin_block": draw(st.booleans()),
                "global_affine_type": draw(st.sampled_from(["SOFTPLUS", "SIGMOID", "EXP"])),
                "reverse_permutation": draw(st.booleans()),
            }
            specs.append((Fm.AllInOneBlock, kwargs, cond))
        else:
            cls = draw(st.sampled_from(COUPLINGS))
            half = draw(st.integers(1, channels - 1))
            kwargs = {"split_len": half}
            if cls is not Fm.NICECouplingBlock:
                kwargs["clamp"] = draw(st.floats(0.5, 3.0))
                kwargs["clamp_activation"] = draw(st.sampled_from(["ATAN", "TANH", "SIGMOID"]))
            specs.append((cls, kwargs, cond))
    return specs


def build_chain(shape: Tuple[int, ...], specs: List[tuple], cond_dim: int) -> SequenceINN:
    subnet = dense_subnet if len(shape) == 1 else conv1x1_subnet
    inn = SequenceINN(*shape)
    for cls, kwargs, cond in specs:
        extra = {} if cls is Fm.PermuteRandom else {"subnet_constructor": subnet}
        if cond:
            cond_shape = (cond_dim, *shape[1:])
            inn.append(cls, cond=0, cond_shape=cond_shape, **kwargs, **extra)
        else:
            inn.append(cls, **kwargs, **extra)
    return inn.double()


@SETTINGS
@given(data=st.data(), shape=shapes(), batch=st.integers(1, 4), conditioned=st.booleans())
def test_random_chains_are_exact(
    data: st.DataObject, shape: Tuple[int, ...], batch: int, conditioned: bool
) -> None:
    specs = data.draw(block_specs(shape[0], conditioned))
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    inn = build_chain(shape, specs, cond_dim=2)
    x = torch.randn(batch, *shape, dtype=torch.float64)
    cs: Optional[List[torch.Tensor]] = None
    if any(cond for _, _, cond in specs):
        cs = [torch.randn(batch, 2, *shape[1:], dtype=torch.float64)]
    T.check_output_shapes(inn, [x], cs, [shape])
    T.check_round_trip(inn, [x], cs, atol=1e-9)
    T.check_log_det_autograd(inn, [x], cs, atol=1e-6)
    T.check_inputs_unchanged(inn, [x], cs)
