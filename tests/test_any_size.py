"""Blocks run at any image size where their math allows it, and refuse others clearly.

Each image block below is built for extents ``(6, 4)`` and then called at two other sizes in
float64: the round trip is exact both ways, the outputs have the shapes ``output_dims`` gives
for that size, and the log-det equals ``slogdet`` of the autograd Jacobian in both directions.
Blocks whose parameters fix the extents (``fixed_size``) refuse another size with a
``ValueError`` naming the block; the 2x2 reshapes refuse an odd height or width at call time.
"""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import pytest
import torch
from torch import Tensor

from invertible import testing as T
from invertible.modules import (
    ActNorm,
    Concat,
    Fixed1x1Conv,
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    InvAutoAct,
    InvAutoActTwoSided,
    InvAutoConv2D,
    InvertibleModule,
    InvertibleSigmoid,
    IResNetLayer,
    IRevNetDownsampling,
    IRevNetUpsampling,
    LearnedElementwiseScaling,
    PermuteRandom,
    Reshape,
    Split,
)

BUILT = (6, 4)
OTHER_SIZES = [(2, 2), (4, 8)]
F64 = torch.float64
Shape = Tuple[int, ...]


def _matrix(n: int) -> Tensor:
    """A well-conditioned invertible ``(n, n)`` matrix."""
    gen = torch.Generator().manual_seed(3)
    return torch.eye(n, dtype=F64) + 0.3 * torch.randn(n, n, generator=gen, dtype=F64)


def _actnorm(channels: int) -> ActNorm:
    gen = torch.Generator().manual_seed(4)
    data = 2.0 + 3.0 * torch.randn(16, channels, *BUILT, generator=gen, dtype=F64)
    return ActNorm([(channels, *BUILT)], init_data=data.float())


#: (id, factory(built extents) -> block, channels of each input)
ANY_SIZE: List[Tuple[str, Callable[[], InvertibleModule], Sequence[int]]] = [
    ("actnorm", lambda: _actnorm(3), [3]),
    ("permute", lambda: PermuteRandom([(5, *BUILT)], seed=1), [5]),
    ("fixed-1x1-conv", lambda: Fixed1x1Conv([(3, *BUILT)], M=_matrix(3)), [3]),
    ("sigmoid", lambda: InvertibleSigmoid([(2, *BUILT)]), [2]),
    ("inv-auto-act", lambda: InvAutoAct([(3, *BUILT)], slope_init=1.7), [3]),
    ("inv-auto-act-two-sided", lambda: InvAutoActTwoSided([(3, *BUILT)]), [3]),
    ("irevnet-down", lambda: IRevNetDownsampling([(2, *BUILT)]), [2]),
    ("irevnet-down-legacy", lambda: IRevNetDownsampling([(2, *BUILT)], legacy_backend=True), [2]),
    ("irevnet-up", lambda: IRevNetUpsampling([(8, *BUILT)]), [8]),
    ("haar-down", lambda: HaarDownsampling([(2, *BUILT)], order_by_wavelet=True,
                                           rebalance=0.5), [2]),
    ("haar-up", lambda: HaarUpsampling([(8, *BUILT)], rebalance=2.0), [8]),
    ("split-channels", lambda: Split([(5, *BUILT)], section_sizes=[2, 3]), [5]),
    ("concat-channels", lambda: Concat([(2, *BUILT), (3, *BUILT)]), [2, 3]),
]


def _inputs(channels: Sequence[int], extents: Shape, batch: int = 2) -> List[Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(batch, c, *extents, generator=gen, dtype=F64) for c in channels]


@pytest.mark.parametrize("extents", OTHER_SIZES, ids=["2x2", "4x8"])
@pytest.mark.parametrize(("factory", "channels"), [(f, c) for _, f, c in ANY_SIZE],
                         ids=[name for name, _, _ in ANY_SIZE])
def test_runs_exactly_at_other_sizes(factory: Callable[[], InvertibleModule],
                                     channels: Sequence[int], extents: Shape) -> None:
    module = factory().double()
    xs = _inputs(channels, extents)
    expected = module.output_dims([(c, *extents) for c in channels])
    T.check_output_shapes(module, xs, None, expected)
    T.check_round_trip(module, xs, None, atol=1e-10)
    zs = [z.detach() for z in T.run(module, xs)[0]]
    T.check_reverse_round_trip(module, zs, None, atol=1e-10)
    T.check_log_det_autograd(module, xs, None, atol=1e-8)
    T.check_log_det_autograd(module, zs, None, atol=1e-8, rev=True)


def test_condition_follows_the_input_size() -> None:
    """A condition must have its input's extents at the call's size, not the built size."""
    module = InvertibleSigmoid([(2, *BUILT)], dims_c=[(3, *BUILT)]).double()
    x, c = _inputs([2, 3], (2, 2))
    T.check_round_trip(module, [x], [c], atol=1e-10)
    with pytest.raises(ValueError, match=r"InvertibleSigmoid: condition 0 .*extents \(2, 2\)"):
        module([x], c=[torch.randn(2, 3, *BUILT, dtype=F64)])


def test_wrong_channels_or_rank_still_refused_at_another_size() -> None:
    module = Fixed1x1Conv([(3, *BUILT)], M=_matrix(3)).double()
    with pytest.raises(ValueError, match=r"Fixed1x1Conv: input must have shape \(B, 3, \*, \*\)"):
        module([torch.randn(2, 4, 2, 2, dtype=F64)])
    with pytest.raises(ValueError, match=r"Fixed1x1Conv: input must have shape \(B, 3, \*, \*\)"):
        module([torch.randn(2, 3, 2, dtype=F64)])


def test_approximate_blocks_run_at_other_sizes() -> None:
    """InvAutoConv2D's reverse is approximate and IResNetLayer's log-det stochastic: at another
    size their outputs have the right shapes, and i-ResNet's fixed-point inverse is exact."""
    conv = InvAutoConv2D([(3, *BUILT)], dims_out=(4, 4, 2), kernel_size=3, padding=0).double()
    x = _inputs([3], (5, 7))[0]
    with pytest.warns(UserWarning, match="not tractable"):
        (y,), _ = conv([x])
    assert y.shape == (2, 4, 3, 5)
    (x_back,), _ = conv([y], rev=True, jac=False)
    assert x_back.shape == x.shape
    torch.manual_seed(0)
    layer = IResNetLayer([(2, *BUILT)], spectral_norm_max=0.5, fixed_point_iterations=200).double()
    layer.lipschitz_correction()
    for extents in OTHER_SIZES:
        (x,) = _inputs([2], extents)
        (z,), log_det = layer([x])
        assert z.shape == x.shape and log_det.shape == (2,)
        (x_back,), _ = layer([z], rev=True, jac=False)
        assert torch.allclose(x_back, x, atol=1e-10)


FIXED: List[Tuple[str, Callable[[], InvertibleModule], Sequence[Shape]]] = [
    ("Flatten", lambda: Flatten([(2, *BUILT)]), [(2, 2, 2)]),
    ("Reshape", lambda: Reshape([(2, *BUILT)], output_dims=(6, 8)), [(2, 2, 2)]),
    ("LearnedElementwiseScaling", lambda: LearnedElementwiseScaling([(2, *BUILT)]), [(2, 2, 2)]),
    ("Split", lambda: Split([(2, *BUILT)], section_sizes=[2, 4], dim=1), [(2, 6, 2)]),
    ("Concat", lambda: Concat([(2, *BUILT), (2, 2, 4)], dim=1), [(2, 6, 2), (2, 2, 2)]),
]


@pytest.mark.parametrize(("name", "factory", "shapes"), FIXED, ids=[n for n, _, _ in FIXED])
def test_fixed_size_blocks_refuse_other_sizes(name: str, factory: Callable[[], InvertibleModule],
                                              shapes: Sequence[Shape]) -> None:
    module = factory()
    assert module.fixed_size
    built = [torch.randn(2, *s) for s in module.dims_in]
    zs, _ = T.run(module, built)  # the built size runs
    with pytest.raises(ValueError, match=name):
        module([torch.randn(2, *s) for s in shapes])
    wrong = [torch.cat([z, z], dim=-1) for z in zs]
    with pytest.raises(ValueError, match=name):
        module(wrong, rev=True)


@pytest.mark.parametrize(("block", "shape", "rev"), [
    (IRevNetDownsampling([(2, *BUILT)]), (2, 3, 4), False),
    (IRevNetDownsampling([(2, *BUILT)], legacy_backend=True), (2, 4, 5), False),
    (HaarDownsampling([(2, *BUILT)]), (2, 5, 5), False),
    (IRevNetUpsampling([(8, *BUILT)]), (2, 3, 4), True),
    (HaarUpsampling([(8, *BUILT)]), (2, 4, 7), True),
], ids=["irevnet", "irevnet-legacy", "haar", "irevnet-up-rev", "haar-up-rev"])
def test_odd_extents_are_refused_at_call_time(block: InvertibleModule, shape: Shape,
                                              rev: bool) -> None:
    name = type(block).__name__
    with pytest.raises(ValueError, match=rf"{name} needs an even height and width.*{shape[1:]}"):
        block([torch.randn(3, *shape)], rev=rev)


def test_capabilities() -> None:
    """Approximate blocks say so; only blocks whose parameters fix the extents are fixed_size."""
    from invertible.modules import (
        GaussianMixtureModel,
        InvAutoFC,
        OrthogonalTransform,
    )

    for cls in (IResNetLayer, InvAutoFC, InvAutoConv2D, OrthogonalTransform,
                GaussianMixtureModel):
        assert cls.exact_inverse is False
    for _, factory, _ in ANY_SIZE:
        block = factory()
        assert block.exact_inverse and not block.fixed_size
    assert Split([(4, 2)], dim=-1).fixed_size and not Split([(4, 2)]).fixed_size
