"""The InvertibleModule contract (calling convention and attributes) and the Inverse wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import invertible.framework as Ff
from invertible.modules import Inverse, InvertibleModule
from toy_blocks import Scale2


def test_constructor_normalises_any_shape_iterables() -> None:
    x, c = torch.randn(2, 3, 4), torch.randn(2, 5)
    module = InvertibleModule([x.shape[1:]], [c.shape[1:]])
    assert module.dims_in == [(3, 4)] and module.dims_c == [(5,)]
    assert InvertibleModule(((np.int64(2),),)).dims_in == [(2,)]
    assert InvertibleModule([[3, 4]], None).dims_c == []
    assert all(type(d) is int for d in InvertibleModule([(np.int32(7),)]).dims_in[0])


def test_constructor_errors() -> None:
    with pytest.raises(TypeError, match="not iterable"):
        InvertibleModule(5)
    with pytest.raises(TypeError, match=r"Hint: even a single input has to be wrapped"):
        InvertibleModule([6])
    with pytest.raises(TypeError, match="cannot be cast to int"):
        InvertibleModule([(None,)])
    with pytest.raises(ValueError):  # int('a') passes through unchanged, as in FrEIA
        InvertibleModule([("a",)])
    with pytest.raises(TypeError, match="dims_c"):
        InvertibleModule([(3,)], [4])


def test_abstract_methods_and_deprecated_log_jacobian() -> None:
    module = InvertibleModule([(3,)])
    with pytest.raises(NotImplementedError, match=r"InvertibleModule does not provide forward"):
        module([torch.zeros(1, 3)])
    with pytest.raises(NotImplementedError, match=r"does not provide output_dims"):
        module.output_dims([(3,)])
    with pytest.raises(DeprecationWarning, match="deprecated"):
        module.log_jacobian(torch.zeros(1, 3))


def test_base_defines_no_extra_public_attributes() -> None:
    """Subclasses (anomalib's) assign attributes freely; the base claims only FrEIA's methods and
    the capability attributes containers read (plain class attributes a subclass may override)."""
    public = {name for name in vars(InvertibleModule) if not name.startswith("_")}
    assert public == {"forward", "output_dims", "log_jacobian", "exact_inverse", "fixed_size",
                      "shape_error"}
    assert (InvertibleModule.exact_inverse, InvertibleModule.fixed_size) == (True, False)
    instance = set(vars(InvertibleModule([(3,)]))) - set(vars(torch.nn.Module()))
    assert instance == {"dims_in", "dims_c"}


def test_subclass_can_register_right_after_super_init() -> None:
    class Block(InvertibleModule):
        def __init__(self, dims_in, dims_c=None):
            super().__init__(dims_in, dims_c)
            self.w_perm = None
            self.scale = torch.nn.Parameter(torch.ones(1))

    assert [n for n, _ in Block([(3,)]).named_parameters()] == ["scale"]


def test_inverse_flips_direction_and_shapes() -> None:
    block = Scale2([(4,)])
    inverse = Inverse(block)
    assert inverse.dims_in == [(4,)] and inverse.output_dims(None) == [(4,)]
    assert inverse.force_tuple_output is True
    x = torch.randn(2, 4)
    (y,), log_det = inverse([x])
    assert torch.allclose(y, x / 2) and log_det < 0
    (x_rev,), _ = inverse([y], rev=True)
    assert torch.allclose(x_rev, x)
    assert Ff.Inverse is Inverse and Ff.InvertibleModule is InvertibleModule


def test_inverse_of_a_sequence_inn() -> None:
    inn = Ff.SequenceINN(4)
    inn.append(Scale2)
    inverse = Inverse(inn)
    assert inverse.dims_in == [(4,)] and inverse.force_tuple_output is False
    z, log_det = inverse(torch.ones(2, 4))
    assert torch.allclose(z, torch.full((2, 4), 0.5)) and log_det.shape == (2,)
