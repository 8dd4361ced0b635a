"""Focused tests of the reshaping blocks: FrEIA's layouts and state, exact inverses, FrEIA's
bugs fixed (upsampling shapes, in-place reverse, shape lists, ``view``), errors, signatures."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from invertible.modules.reshapes import (
    Flatten,
    HaarDownsampling,
    HaarUpsampling,
    IRevNetDownsampling,
    IRevNetUpsampling,
    Reshape,
)

IMAGE = torch.arange(32.0).reshape(1, 2, 4, 4)
SPACE_TO_DEPTH = [IRevNetDownsampling, IRevNetUpsampling, HaarDownsampling, HaarUpsampling]
ALL = [*SPACE_TO_DEPTH, Flatten, Reshape]


# --- reference layouts computed with FrEIA --------------------------------------------------


def test_haar_wavelet_order_reference_values() -> None:
    module = HaarDownsampling([(2, 4, 4)], rebalance=0.5, order_by_wavelet=True)
    (y,), log_det = module([IMAGE])
    expected00 = [2.5, 18.5, -0.5, -0.5, -2.0, -2.0, 0.0, 0.0]
    expected11 = [12.5, 28.5, -0.5, -0.5, -2.0, -2.0, 0.0, 0.0]
    assert torch.allclose(y[0, :, 0, 0], torch.tensor(expected00), atol=1e-6)
    assert torch.allclose(y[0, :, 1, 1], torch.tensor(expected11), atol=1e-6)
    assert log_det.shape == (1,) and abs(float(log_det[0]) - (-22.180710)) < 1e-5
    assert abs(float(log_det[0]) - 32 * math.log(0.5)) < 1e-5


def test_haar_default_order_is_channel_major() -> None:
    (y,), log_det = HaarDownsampling([(2, 4, 4)])([IMAGE])
    # channel c, band w -> 4c + w; bands of the first block of channel 0: [10, -2, -8, 0] / 2
    assert y[0, :, 0, 0].tolist() == [5.0, -1.0, -4.0, 0.0, 37.0, -1.0, -4.0, 0.0]
    assert log_det.tolist() == [0.0]


def test_irevnet_reference_values() -> None:
    (y,), log_det = IRevNetDownsampling([(2, 4, 4)])([IMAGE])
    assert y[0, :, 0, 0].tolist() == [0, 1, 4, 5, 16, 17, 20, 21]
    assert y[0, :, 1, 1].tolist() == [10, 11, 14, 15, 26, 27, 30, 31]
    assert log_det.shape == (1,) and not log_det.any()


def test_irevnet_legacy_reference_values() -> None:
    (y,), _ = IRevNetDownsampling([(2, 4, 4)], legacy_backend=True)([IMAGE])
    assert y[0, :, 0, 0].tolist() == [0, 16, 1, 17, 4, 20, 5, 21]
    assert y[0, :, 1, 1].tolist() == [10, 26, 11, 27, 14, 30, 15, 31]


# --- upsampling = exact inverse ------------------------------------------------------------


@pytest.mark.parametrize(
    ("down", "up", "kwargs"),
    [
        (IRevNetDownsampling, IRevNetUpsampling, {}),
        (IRevNetDownsampling, IRevNetUpsampling, {"legacy_backend": True}),
        (HaarDownsampling, HaarUpsampling, {"order_by_wavelet": True, "rebalance": 0.5}),
        (HaarDownsampling, HaarUpsampling, {"rebalance": 3.0}),
    ],
)
def test_upsampling_is_the_inverse_and_stores_its_real_input_shape(
    down: type, up: type, kwargs: dict
) -> None:
    """FrEIA stored the *output* shape in the upsampling's dims_in; here the input shape."""
    d = down([(3, 4, 6)], **kwargs)
    u = up([(12, 2, 3)], **kwargs)
    assert u.dims_in == [(12, 2, 3)]
    assert u.output_dims(u.dims_in) == [(3, 4, 6)]
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    d, u = d.double(), u.double()
    (z,), log_det = d([x])
    (z_up,), log_det_up = u([x], rev=True)
    assert torch.equal(z, z_up) and torch.allclose(log_det, log_det_up)
    (x_back,), log_det_back = u([z])
    assert torch.allclose(x_back, x) and torch.allclose(log_det_back, -log_det)
    assert {k: v.shape for k, v in d.state_dict().items()} == {
        k: v.shape for k, v in u.state_dict().items()
    }


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (IRevNetDownsampling, {}, "downsample_kernel"),
        (HaarDownsampling, {}, "haar_weights"),
        (HaarDownsampling, {"order_by_wavelet": True}, "haar_weights"),
    ],
)
def test_state_dict_keys_shapes(cls: type, kwargs: dict, key: str) -> None:
    """FrEIA's state: one frozen (4C, 1, 2, 2) parameter; the upsampling uses C' = C_in / 4."""
    down = cls([(3, 4, 4)], **kwargs)
    up = {IRevNetDownsampling: IRevNetUpsampling, HaarDownsampling: HaarUpsampling}[cls]
    for module in (down, up([(12, 2, 2)], **kwargs)):
        state = module.state_dict()
        assert list(state) == [key]
        assert state[key].shape == (12, 1, 2, 2) and state[key].dtype == torch.float32
        param = getattr(module, key)
        assert isinstance(param, torch.nn.Parameter) and not param.requires_grad


def test_legacy_backend_has_no_state() -> None:
    assert not IRevNetDownsampling([(3, 4, 4)], legacy_backend=True).state_dict()
    assert not IRevNetUpsampling([(12, 4, 4)], legacy_backend=True).state_dict()


def test_attributes() -> None:
    irev = IRevNetUpsampling([(8, 2, 2)], legacy_backend=True)
    assert (irev.channels, irev.block_size, irev.block_size_sq) == (2, 2, 4)
    assert irev.legacy_backend is True
    haar = HaarDownsampling([(3, 2, 2)], order_by_wavelet=True, rebalance=2.0)
    assert (haar.in_channels, haar.fac_fwd, haar.fac_rev, haar.permute) == (3, 1.0, 0.25, True)
    assert math.isclose(haar.jac_fwd, math.log(2.0))
    assert math.isclose(haar.jac_rev, -math.log(2.0))
    assert haar.perm.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert torch.equal(haar.perm[haar.perm_inv], torch.arange(12))


def test_haar_log_det_is_a_batch_tensor_of_numel_log_rebalance() -> None:
    module = HaarUpsampling([(8, 1, 2)], rebalance=0.25).double()
    y = torch.randn(3, 8, 1, 2, dtype=torch.float64)
    (_,), log_det = module([y])
    assert log_det.shape == (3,) and log_det.dtype == torch.float64
    assert torch.allclose(log_det, torch.full((3,), -16 * math.log(0.25), dtype=torch.float64))


def test_haar_negative_rebalance_has_finite_log_det() -> None:
    (_,), log_det = HaarDownsampling([(1, 2, 2)], rebalance=-2.0)([torch.randn(2, 1, 2, 2)])
    assert torch.allclose(log_det, torch.full((2,), 4 * math.log(2.0)))


# --- FrEIA bugs fixed: in-place reverse, shape lists, view ---------------------------------


@pytest.mark.parametrize("rev", [False, True])
def test_haar_never_mutates_its_input(rev: bool) -> None:
    """FrEIA's Haar reverse multiplied the caller's tensor in place; here it is left alone."""
    for module in (HaarDownsampling([(2, 4, 4)], rebalance=0.5), HaarUpsampling([(8, 2, 2)])):
        shape = module.dims_in[0] if not rev else module.output_dims(module.dims_in)[0]
        x = torch.randn(2, *shape)
        before = x.clone()
        module([x], rev=rev)
        assert torch.equal(x, before)


def test_output_dims_are_lists_of_tuples() -> None:
    """FrEIA returned tuples, or echoed a user list as the shape; here lists of int tuples."""
    modules = [
        IRevNetDownsampling([(2, 4, 4)]),
        IRevNetUpsampling([(8, 2, 2)]),
        HaarDownsampling([(2, 4, 4)]),
        HaarUpsampling([(8, 2, 2)]),
        Flatten([(2, 4, 4)]),
        Reshape([(2, 4, 4)], output_dims=[4, 8]),
    ]
    for module in modules:
        dims = module.output_dims(module.dims_in)
        assert isinstance(dims, list) and all(type(d) is tuple for d in dims)
        assert all(type(n) is int for d in dims for n in d)
    assert modules[-1].output_dims([(2, 4, 4)]) == [(4, 8)]


def test_flatten_and_reshape_accept_non_contiguous_input() -> None:
    """FrEIA's Flatten used ``.view``, which fails on non-contiguous inputs."""
    x = torch.randn(3, 4, 2).transpose(1, 2)  # (3, 2, 4), non-contiguous
    assert not x.is_contiguous()
    flatten = Flatten([(2, 4)])
    (y,), log_det = flatten([x])
    assert torch.equal(y, x.reshape(3, 8)) and log_det.shape == (3,)
    (back,), _ = flatten([y.t().contiguous().t()[:, :]], rev=True)
    assert back.shape == (3, 2, 4)
    assert flatten.input_shape == (2, 4) and flatten.output_shape == (8,)
    (r,), _ = Reshape([(2, 4)], output_dims=(4, 2))([x])
    assert torch.equal(r, x.reshape(3, 4, 2))


def test_reshape_attributes_and_round_trip() -> None:
    module = Reshape([(2, 3, 4)], output_dims=(6, 4))
    assert module.size == (2, 3, 4) and module.target_dim == (6, 4)
    x = torch.randn(2, 2, 3, 4)
    (y,), _ = module([x])
    (x_back,), log_det = module([y], rev=True)
    assert y.shape == (2, 6, 4) and torch.equal(x_back, x) and log_det.shape == (2,)


def test_reshape_target_dim_is_a_deprecated_alias() -> None:
    with pytest.warns(UserWarning, match="target_dim"):
        module = Reshape([(6,)], target_dim=(2, 3))
    assert module.output_dims([(6,)]) == [(2, 3)]


# --- errors and FrEIA's signatures ----------------------------------------------------------


@pytest.mark.parametrize("cls", [IRevNetDownsampling, HaarDownsampling])
@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 4, 5)])
def test_odd_spatial_sizes_rejected_at_construction(cls: type, shape: tuple) -> None:
    with pytest.raises(ValueError, match=r"even height and width.*" + str(shape).replace("(", r"\(")
                       .replace(")", r"\)")):
        cls([shape])


@pytest.mark.parametrize("cls", SPACE_TO_DEPTH)
def test_space_to_depth_shape_errors(cls: type) -> None:
    with pytest.raises(ValueError, match=r"images \(C, H, W\), got shape \(8, 4\)"):
        cls([(8, 4)])
    with pytest.raises(ValueError, match="1 input"):
        cls([(8, 4, 4), (8, 4, 4)])
    with pytest.raises(ValueError, match="images"):
        cls([(8, 4, 4)]).output_dims([(8, 4, 4, 4)])


@pytest.mark.parametrize("cls", [IRevNetUpsampling, HaarUpsampling])
def test_upsampling_needs_channels_divisible_by_4(cls: type) -> None:
    with pytest.raises(ValueError, match=r"divisible by 4.*\(6, 2, 2\)"):
        cls([(6, 2, 2)])


@pytest.mark.parametrize("cls", [HaarDownsampling, HaarUpsampling])
def test_haar_rebalance_zero(cls: type) -> None:
    with pytest.raises(ValueError, match="rebalance"):
        cls([(4, 2, 2)], rebalance=0)


def test_flatten_and_reshape_errors() -> None:
    with pytest.raises(ValueError, match="1 input"):
        Flatten([(2,), (3,)])
    with pytest.raises(ValueError, match="1 input"):
        Reshape([(2,), (3,)], output_dims=(2,))
    with pytest.raises(ValueError, match="Please specify the desired output shape"):
        Reshape([(6,)])
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(7,\)"):
        Reshape([(2, 3)], output_dims=(7,))
    with pytest.raises(ValueError, match="number of elements"):
        Reshape([(6,)], output_dims=(-1, 6, -1))


@pytest.mark.parametrize("cls", ALL)
def test_forward_signature_has_jac_before_rev(cls: type) -> None:
    """FrEIA's ``forward(x, c=None, jac=True, rev=False)``: ``m([x], None, True)`` is forward."""
    params = list(inspect.signature(cls.forward).parameters)
    assert params == ["self", "x", "c", "jac", "rev"]


def test_positional_true_means_jac_not_reverse() -> None:
    module = IRevNetDownsampling([(1, 2, 2)])
    (y,), _ = module([torch.randn(1, 1, 2, 2)], None, True)
    assert y.shape == (1, 4, 1, 1)
