"""SequenceINN container behaviour: append, call conventions, slicing, replacement, nesting."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from invertible.framework import ReversibleSequential, SequenceINN
from invertible.modules import Inverse, InvertibleModule
from toy_blocks import CondShift, ScalarLogDetScale, Scale2


class TwoOutputs(InvertibleModule):
    """Splits its input in two (a multi-output module a SequenceINN must refuse)."""

    def forward(self, x, rev=False, jac=True):
        raise NotImplementedError

    def output_dims(self, input_dims):
        d = input_dims[0][0]
        return [(d // 2,), (d - d // 2,)]


def make_linear(dims_in):
    """A factory that returns a module which is not invertible."""
    return nn.Linear(dims_in[0][0], dims_in[0][0])


class Halve(InvertibleModule):
    """Changes the shape (4,) -> (2, 2) so slicing must track shapes."""

    def forward(self, x, rev=False, jac=True):
        y = x[0].reshape(x[0].shape[0], *(self.dims_in[0] if rev else (2, 2)))
        return (y,), 0.0

    def output_dims(self, input_dims):
        return [(2, 2)] if input_dims[0] == (4,) else [(4,)]


def test_shapes_conditions_module_list() -> None:
    inn = SequenceINN(4)
    inn.append(Scale2)
    inn.append(CondShift, cond=1, cond_shape=(3,))
    inn.append(Halve)
    assert inn.dims_in == [(4,)] and inn.dims_c == []
    assert inn.shapes == [(4,), (4,), (4,), (2, 2)]
    assert inn.conditions == [None, 1, None]
    assert len(inn) == 3 and list(inn) == list(inn.module_list)
    assert inn.output_dims() == [(2, 2)]
    assert all(k.startswith("module_list.1.linear") for k in inn.state_dict())


def test_forward_reverse_and_log_det_dtype() -> None:
    inn = SequenceINN(3)
    inn.append(Scale2)
    inn.append(Scale2)
    x = torch.randn(5, 3, dtype=torch.float64)
    z, log_det = inn(x)
    assert torch.allclose(z, 4 * x)
    assert log_det.dtype == torch.float64 and log_det.shape == (5,)  # the input's dtype
    assert torch.allclose(log_det, torch.full((5,), 6 * math.log(2.0), dtype=torch.float64))
    x_rev, log_det_rev = inn(z, rev=True)
    assert torch.allclose(x_rev, x) and torch.allclose(log_det_rev, -log_det)


def test_conditions_list_single_tensor_and_missing() -> None:
    inn = SequenceINN(4)
    inn.append(CondShift, cond=0, cond_shape=(2,))
    x, c = torch.randn(3, 4), torch.randn(3, 2)
    z_list, _ = inn(x, [c])
    z_tensor, _ = inn(x, c)  # a bare tensor is read as [c], never indexed on the batch axis
    assert torch.equal(z_list, z_tensor)
    with pytest.raises(ValueError, match=r"conditioned on c\[0\].*0 condition"):
        inn(x)


def test_extra_conditions_are_ignored_and_index_picks() -> None:
    inn = SequenceINN(4)
    inn.append(CondShift, cond=1, cond_shape=(2,))
    x, c0, c1 = torch.randn(3, 4), torch.randn(3, 7), torch.randn(3, 2)
    z, _ = inn(x, [c0, c1])
    assert torch.allclose(z, x + inn[0].linear(c1))


def test_conditions_given_to_an_unconditioned_chain_are_an_error() -> None:
    """FrEIA ignored them silently, hiding a wiring mistake."""
    inn = SequenceINN(4)
    inn.append(Scale2)
    x = torch.randn(3, 4)
    for c in (torch.randn(3, 2), [torch.randn(3, 2)]):
        with pytest.raises(ValueError, match=r"SequenceINN has no conditioned blocks.*1 condition"):
            inn(x, c)
    assert torch.equal(inn(x, [])[0], inn(x)[0])


def test_wrong_input_is_a_clear_error() -> None:
    inn = SequenceINN(4)
    inn.append(Scale2)
    with pytest.raises(ValueError, match=r"SequenceINN: input must have shape \(B, 4\), got shape "
                       r"\(2, 5\)"):
        inn(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"SequenceINN: reverse input must have shape \(B, 4\)"):
        inn(torch.randn(2, 4, 1), rev=True)
    with pytest.raises(ValueError, match=r"SequenceINN takes 1 input tensor.*got 2"):
        inn([torch.randn(2, 4), torch.randn(2, 4)])
    with pytest.raises(TypeError, match=r"SequenceINN takes a tensor of shape \(B, 4\).*ndarray"):
        inn(np.zeros((5, 4), dtype=np.float32))  # FrEIA: "got 5 inputs" (it iterated the rows)
    with pytest.raises(TypeError, match=r"SequenceINN: input must be a torch.Tensor, got ndarray"):
        inn([np.zeros((5, 4))])


def test_module_list_changed_directly_is_a_clear_error() -> None:
    inn = SequenceINN(4)
    inn.append(Scale2)
    inn.module_list.append(Scale2([(4,)]))  # bypasses append(): no condition entry
    with pytest.raises(ValueError, match=r"2 modules but 1 condition entries.*append\(\)"):
        inn(torch.randn(2, 4))


def test_reverse_runs_the_blocks_in_reverse_order() -> None:
    inn = SequenceINN(4)
    inn.append(Scale2)
    inn.append(Halve)
    x = torch.randn(3, 4)
    z, log_det = inn(x)
    assert z.shape == (3, 2, 2)
    back, back_log_det = inn(z, rev=True)
    assert torch.allclose(back, x) and torch.allclose(back_log_det, -log_det)


def test_tuple_input_and_force_tuple_output() -> None:
    inn = SequenceINN(4, force_tuple_output=True)
    inn.append(Scale2)
    out, _ = inn((torch.ones(2, 4),))  # a 1-element sequence is accepted (nesting needs it)
    assert isinstance(out, tuple) and len(out) == 1


def test_scalar_and_none_log_dets_are_broadcast() -> None:
    class NoneLogDet(Scale2):
        def forward(self, x, rev=False, jac=True):
            return super().forward(x, rev=rev, jac=jac)[0], None

    inn = SequenceINN(4)
    inn.append(ScalarLogDetScale)
    inn.append(NoneLogDet)  # None counts as 0 (FrEIA crashed adding it)
    z, log_det = inn(torch.randn(3, 4))
    expected = torch.full((3,), 0.3 * 4)
    assert torch.allclose(log_det, expected)


def test_append_instance_and_errors() -> None:
    inn = SequenceINN(4)
    inn.append(Scale2)
    block = Scale2(inn.output_dims())
    inn.append(block)
    assert inn[1] is block and inn.shapes[-1] == (4,)
    with pytest.raises(ValueError, match=r"dims_in \[\(3,\)\].*\[\(4,\)\]"):
        inn.append(Scale2([(3,)]))
    with pytest.raises(ValueError, match="constructor arguments"):
        inn.append(Scale2([(4,)]), dims_c=[(2,)])
    with pytest.raises(ValueError, match="more than one output"):
        inn.append(TwoOutputs)
    with pytest.raises(ValueError, match="cond_shape"):
        inn.append(CondShift, cond=0)
    with pytest.raises(TypeError, match="cond must be a non-negative int"):
        inn.append(CondShift, cond=-1, cond_shape=(2,))
    with pytest.raises(TypeError, match=r"SequenceINN.append\(CondShift, cond=0\): cond_shape must "
                       r"be .*tuple of ints.*cond_shape=\(4,\)"):
        inn.append(CondShift, cond=0, cond_shape=4)  # FrEIA: "'int' object is not iterable"
    with pytest.raises(TypeError, match=r"SequenceINN.append takes an InvertibleModule.*Linear"):
        inn.append(nn.Linear, in_features=4, out_features=4)  # FrEIA: torch's constructor error
    with pytest.raises(TypeError, match=r"SequenceINN.append takes an InvertibleModule.*Linear"):
        inn.append(nn.Linear(4, 4))
    with pytest.raises(TypeError, match=r"SequenceINN.append: the factory make_linear returned a "
                       r"Linear"):
        inn.append(make_linear)
    # failed appends leave the container consistent (FrEIA recorded cond before building)
    assert len(inn) == 2 and inn.conditions == [None, None] and len(inn.shapes) == 3


def test_constructor_hint_for_a_shape_tuple() -> None:
    with pytest.raises(TypeError, match=r"SequenceINN\(\*shape\)"):
        SequenceINN((3, 32, 32))


def test_output_dims_nesting_rules() -> None:
    inn = SequenceINN(4)
    inn.append(Halve)
    with pytest.raises(ValueError, match="force_tuple_output"):
        inn.output_dims([(4,)])
    inn.force_tuple_output = True
    assert inn.output_dims([(4,)]) == [(2, 2)]  # the list form is accepted (FrEIA refused it)
    assert inn.output_dims((4,)) == [(2, 2)]  # and the bare tuple too
    with pytest.raises(ValueError, match="do not match"):
        inn.output_dims([(5,)])


def test_getitem_slice_shares_modules_and_renumbers_conditions() -> None:
    inn = SequenceINN(4)
    inn.append(CondShift, cond=1, cond_shape=(2,))
    inn.append(Scale2)
    inn.append(CondShift, cond=0, cond_shape=(3,))
    assert inn[-1] is inn.module_list[2]
    sub = inn[0:3]
    assert sub.conditions == [0, None, 1]
    assert all(a is b for a, b in zip(sub, inn))
    x, c0, c1 = torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, 2)
    assert torch.allclose(sub(x, [c1, c0])[0], inn(x, [c0, c1])[0])
    empty = inn[3:]
    assert len(empty) == 0 and torch.equal(empty(x)[0], x)


def test_negative_stride_slice_is_the_inverse_chain() -> None:
    inn = SequenceINN(4)
    inn.append(Scale2)
    inn.append(Halve)  # (4,) -> (2, 2): FrEIA built the reversed chain with the wrong shape
    inv = inn[::-1]
    assert inv.dims_in == [(2, 2)] and inv.shapes[-1] == (4,)
    assert all(isinstance(m, Inverse) for m in inv)
    x = torch.randn(3, 4)
    z, log_det = inn(x)
    x_rev, log_det_rev = inv(z)
    assert torch.allclose(x_rev, x) and torch.allclose(log_det_rev, -log_det)


def test_setitem_replaces_and_validates() -> None:
    """The error messages print the shapes they are about (FrEIA printed wrong ones)."""
    inn = SequenceINN(4)
    inn.append(Scale2)
    inn.append(CondShift, cond=0, cond_shape=(2,))
    new = Scale2([(4,)])
    inn[0] = new
    assert inn[0] is new
    with pytest.raises(NotImplementedError):
        inn[0:1] = new
    with pytest.raises(ValueError, match=r"input shapes \[\(5,\)\].*\[\(4,\)\]"):
        inn[0] = Scale2([(5,)])
    with pytest.raises(ValueError, match=r"output shapes \[\(2, 2\)\].*\[\(4,\)\]"):
        inn[0] = Halve([(4,)])
    with pytest.raises(ValueError, match=r"condition shapes \[\(2,\)\].*\[\]"):
        inn[0] = CondShift([(4,)], [(2,)])
    with pytest.raises(ValueError, match=r"condition shapes \[\].*\[\(2,\)\]"):
        inn[1] = Scale2([(4,)])


def test_nesting_sequence_inside_sequence() -> None:
    inner = SequenceINN(4, force_tuple_output=True)
    inner.append(Scale2)
    inner.append(CondShift, cond=0, cond_shape=(2,))
    outer = SequenceINN(4)
    outer.append(Scale2)
    outer.append(inner, cond=0)
    x, c = torch.randn(3, 4), torch.randn(3, 2)
    z, log_det = outer(x, [c])
    assert torch.allclose(z, 4 * x + inner[1].linear(c))
    x_rev, log_det_rev = outer(z, [c], rev=True)
    assert torch.allclose(x_rev, x, atol=1e-6) and torch.allclose(log_det_rev, -log_det)
    assert any(k.startswith("module_list.1.module_list.1.linear") for k in outer.state_dict())


def test_nesting_a_bare_tensor_sequence() -> None:
    inner = SequenceINN(4)  # force_tuple_output=False still nests (we wrap its bare tensor)
    inner.append(Scale2)
    outer = SequenceINN(4)
    outer.append(inner)
    assert torch.allclose(outer(torch.ones(2, 4))[0], torch.full((2, 4), 2.0))


def test_reversible_sequential_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="SequenceINN"):
        net = ReversibleSequential(4)
    assert isinstance(net, SequenceINN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TypeError):
            ReversibleSequential(4, force_tuple_output=True)


def test_memory_efficient_flag_slicing_and_replacement() -> None:
    from invertible.modules.invertible_resnet import IResNetLayer

    inn = SequenceINN(4, memory_efficient=True)
    assert inn.memory_efficient
    inn.append(Scale2)
    inn.append(CondShift, cond=0, cond_shape=(2,))
    assert inn[0:1].memory_efficient and inn[::-1].memory_efficient
    with pytest.raises(ValueError, match=r"SequenceINN.*IResNetLayer.*exact_inverse = False"):
        inn.append(IResNetLayer)
    assert len(inn) == 2 and inn.conditions == [None, 0] and len(inn.shapes) == 3
    with pytest.raises(ValueError, match=r"new module IResNetLayer"):
        inn[0] = IResNetLayer([(4,)])
    inn.memory_efficient = False
    inn[0] = IResNetLayer([(4,)])
    with pytest.raises(ValueError, match=r"module 0 \(IResNetLayer\)"):
        inn.memory_efficient = True
    assert not inn.memory_efficient


def test_memory_efficient_chain_matches_standard_outputs() -> None:
    inn = SequenceINN(4)
    inn.append(Scale2)
    inn.append(ScalarLogDetScale)
    inn.append(CondShift, cond=1, cond_shape=(3,))
    x, c = torch.randn(5, 4, requires_grad=True), [torch.randn(5, 7), torch.randn(5, 3)]
    z, log_det = inn(x, c)
    inn.memory_efficient = True
    z2, log_det2 = inn(x, c)
    assert z2.grad_fn is not None and type(z2.grad_fn).__name__ != type(z.grad_fn).__name__
    assert torch.allclose(z2, z) and torch.allclose(log_det2, log_det)
    x_rev, log_det_rev = inn(z2, c, rev=True)
    assert torch.allclose(x_rev, x, atol=1e-6) and torch.allclose(log_det_rev, -log_det)
