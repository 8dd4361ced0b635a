"""Focused tests of `Split`, `Concat` and their deprecated aliases: sections, `dim` handling
(FrEIA's bugs fixed), (B,) log-dets, errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from invertible._errors import InvertibleAssertionError
from invertible.modules.graph_topology import (
    Concat,
    Concat1d,
    ConcatChannel,
    Split,
    Split1D,
    SplitChannel,
)


def test_split_equal_sections_like_array_split() -> None:
    with pytest.warns(UserWarning, match="unequal size"):
        split = Split([(7,)], n_sections=3)
    assert split.split_size_or_sections == [3, 2, 2]
    assert split.output_dims([(7,)]) == [(3,), (2,), (2,)]
    x = torch.arange(14.0).reshape(2, 7)
    outs, log_det = split([x])
    assert [o.shape for o in outs] == [(2, 3), (2, 2), (2, 2)]
    assert torch.equal(outs[1], x[:, 3:5])
    assert log_det.shape == (2,) and log_det.dtype == x.dtype and not log_det.any()


def test_split_even_sections_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = Split([(6, 2)])
    assert split.split_size_or_sections == [3, 3]
    assert split.output_dims([(6, 2)]) == [(3, 2), (3, 2)]


def test_split_int_section_size() -> None:
    split = Split([(5, 4, 4)], section_sizes=2)
    assert split.split_size_or_sections == [2, 3]
    assert split.output_dims([(5, 4, 4)]) == [(2, 4, 4), (3, 4, 4)]


def test_split_list_too_small_adds_a_section() -> None:
    with pytest.warns(UserWarning, match="too small, adding additional section"):
        split = Split([(6,)], section_sizes=[1, 2])
    assert split.split_size_or_sections == [1, 2, 3]
    assert split.output_dims([(6,)]) == [(1,), (2,), (3,)]


def test_split_tuple_sections_as_in_uflow() -> None:
    split = Split([(8, 4, 4)], section_sizes=(3, 5), dim=0)
    assert split.split_size_or_sections == [3, 5]
    x = torch.randn(2, 8, 4, 4)
    outs, _ = split([x])
    assert isinstance(outs, tuple)
    back, log_det = split(outs, rev=True)
    assert isinstance(back, list) and torch.equal(back[0], x)
    assert log_det.shape == (2,)


def test_split_spatial_axis() -> None:
    split = Split([(2, 6, 3)], n_sections=3, dim=1)
    assert split.output_dims([(2, 6, 3)]) == [(2, 2, 3)] * 3
    x = torch.randn(4, 2, 6, 3)
    outs, _ = split([x])
    assert torch.equal(outs[2], x[:, :, 4:6])


def test_split_negative_dim_is_normalised_not_batch_axis() -> None:
    """FrEIA's dim=-1 split the batch axis; here it is the last non-batch axis."""
    split = Split([(2, 3, 4)], dim=-1)
    assert split.dim == 2
    assert split.output_dims([(2, 3, 4)]) == [(2, 3, 2), (2, 3, 2)]
    outs, _ = split([torch.randn(5, 2, 3, 4)])
    assert [tuple(o.shape) for o in outs] == [(5, 2, 3, 2), (5, 2, 3, 2)]


@pytest.mark.parametrize("dim", [3, -4, 10])
def test_split_out_of_range_dim_rejected(dim: int) -> None:
    """FrEIA's check is off by one (dim == rank passes); both bounds are checked here."""
    with pytest.raises(AssertionError, match="out of range"):
        Split([(2, 3, 4)], dim=dim)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        Split([(2, 3, 4)], dim=dim)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_sections": 1}, "n_sections"),
        ({"n_sections": 9}, "n_sections"),
        ({"section_sizes": 6}, "section_sizes"),
        ({"section_sizes": 0}, "section_sizes"),
        ({"section_sizes": [4, 4]}, "sum to 8"),
        ({"section_sizes": [3, -1]}, "positive"),
        ({"section_sizes": "ab"}, "section_sizes"),
        ({"section_sizes": 2.5}, "section_sizes"),
    ],
)
def test_split_bad_sections_raise_assertion_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(InvertibleAssertionError, match=match):
        Split([(6,)], **kwargs)


def test_split_rejects_several_inputs() -> None:
    with pytest.raises(AssertionError, match="1 input"):
        Split([(4,), (4,)])


def test_split_checks_tensor_count_at_call_time() -> None:
    split = Split([(4,)])
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"Split takes 2 reverse input tensor\(s\).*got 1"):
        split([x], rev=True)
    with pytest.raises(ValueError, match=r"Split takes 1 input tensor\(s\).*got 2"):
        split([x, x])


def test_concat_forward_and_reverse() -> None:
    concat = Concat([(2, 3, 3), (1, 3, 3), (4, 3, 3)])
    assert concat.split_size_or_sections == [2, 1, 4]
    assert concat.output_dims([(2, 3, 3), (1, 3, 3), (4, 3, 3)]) == [(7, 3, 3)]
    xs = [torch.randn(2, c, 3, 3) for c in (2, 1, 4)]
    (y,), log_det = concat(xs)
    assert torch.equal(y[:, 2:3], xs[1])
    assert log_det.shape == (2,) and not log_det.any()
    back, log_det_rev = concat([y], rev=True)
    assert isinstance(back, tuple) and all(torch.equal(a, b) for a, b in zip(back, xs))
    assert log_det_rev.shape == (2,)


def test_concat_negative_dim() -> None:
    concat = Concat([(2, 3, 1), (2, 3, 4)], dim=-1)
    assert concat.dim == 2
    assert concat.output_dims([(2, 3, 1), (2, 3, 4)]) == [(2, 3, 5)]


@pytest.mark.parametrize(
    ("dims_in", "dim", "match"),
    [
        ([(3,)], 0, r"more than one input.*\(3,\)"),
        ([(3,), (3, 2)], 0, r"same number of dimensions.*\(3, 2\)"),
        ([(2, 3), (2, 4)], 0, r"equal except in dim 0.*\(2, 4\)"),
        ([(2, 3), (2, 3)], 2, "out of range"),
        ([(2, 3), (2, 3)], -3, "out of range"),
    ],
)
def test_concat_build_time_checks(dims_in: list, dim: int, match: str) -> None:
    with pytest.raises(InvertibleAssertionError, match=match):
        Concat(dims_in, dim=dim)


def test_concat_checks_tensor_count_at_call_time() -> None:
    concat = Concat([(2,), (3,)])
    with pytest.raises(ValueError, match=r"Concat takes 2 input tensor\(s\).*got 1"):
        concat([torch.randn(1, 2)])
    with pytest.raises(ValueError, match=r"Concat takes 1 reverse input tensor\(s\).*got 2"):
        concat([torch.randn(1, 2), torch.randn(1, 3)], rev=True)


@pytest.mark.parametrize(
    ("alias", "base", "dims_in"),
    [
        (Split1D, Split, [(4,)]),
        (SplitChannel, Split, [(4, 2, 2)]),
        (Concat1d, Concat, [(2,), (2,)]),
        (ConcatChannel, Concat, [(2, 2, 2), (1, 2, 2)]),
    ],
)
def test_deprecated_aliases(alias: type, base: type, dims_in: list) -> None:
    message = f"{alias.__name__} is deprecated and will be removed in the public release. Use "
    with pytest.warns(DeprecationWarning, match=message + base.__name__):
        module = alias(dims_in, dim=0)
    assert isinstance(module, base)
    assert alias.__name__ in {"Split1D", "SplitChannel", "Concat1d", "ConcatChannel"}
    assert module.output_dims(dims_in) == base(dims_in).output_dims(dims_in)


def test_no_state() -> None:
    assert not Split([(4,)]).state_dict()
    assert not Concat([(2,), (2,)]).state_dict()
