"""Misuse swept over the whole registry: every case refuses a wrong shape or dtype clearly.

For every registered case (float64, as in the property suite) the call is repeated with one
input or condition spoilt: a wrong size in its last axis, or float32 data. The error must be a
``ValueError`` (shape) or ``TypeError`` (dtype) -- directly or as the ``__cause__`` of a
``GraphINN``'s ``RuntimeError`` (K8) -- and its message must name the container or the block it
reached. Unconditioned blocks without floating-point parameters or buffers accept any floating
dtype and must then simply run; parameter-free conditional blocks want conditions of the input's
dtype. (A condition's dtype is spoilt too, including GaussianMixtureModel's integer index.)
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Type

import pytest
import torch
from torch import Tensor, nn

from cases import Case, all_cases
from invertible import testing as T
from invertible.modules._common import module_reference
from test_properties import build, inputs

CASES = all_cases()
BARE = (AssertionError, IndexError, KeyError, AttributeError)


def _grown(t: Tensor) -> Tensor:
    """``t`` with one more entry in its last axis (a wrong shape for every block)."""
    return torch.cat([t, t[..., :1]], dim=-1)


def _call(module: nn.Module, xs: List[Tensor], cs: Optional[List[Tensor]], rev: bool) -> None:
    with torch.no_grad():
        T.run(module, xs, cs, rev=rev)


def _clear(error: BaseException, kind: Type[BaseException], module: nn.Module) -> str:
    """Why ``error`` is not a clear ``kind`` error naming a block of ``module`` ('' if it is).

    A ``GraphINN`` wraps a node's error in a ``RuntimeError`` naming the node (K8), nested
    graphs once per level: the innermost cause is judged. An error raised by the user's own
    module in a ``FeedForwardNode`` stays that module's business: naming the node is enough.
    """
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    inner = chain[-1]
    text = " | ".join(str(e) for e in chain)
    if type(inner) in BARE:
        return f"a bare {type(inner).__name__}: {inner}"
    if not isinstance(inner, kind) and "FeedForwardNode" not in str(error):
        return f"{type(inner).__name__} instead of {kind.__name__}: {text}"
    names = {c.__name__ for m in module.modules() for c in type(m).__mro__}
    if not any(name in text for name in names - {"Module", "object"}):
        return f"the message names no block of {sorted(names)}: {text}"
    return ""


def _expect(module: nn.Module, kind: Type[BaseException], xs: List[Tensor],
            cs: Optional[List[Tensor]], rev: bool) -> None:
    with pytest.raises(BaseException) as info:
        _call(module, xs, cs, rev)
    problem = _clear(info.value, kind, module)
    assert not problem, problem


def _directions(case: Case, module: nn.Module) -> List[Tuple[bool, List[Tensor]]]:
    """``(rev, valid inputs)`` for both directions."""
    xs, cs = inputs(case, False, module)
    with torch.no_grad():
        zs = [z.detach() for z in T.run(module, xs, cs)[0]]
    return [(False, xs), (True, zs)]


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def case_module(request: pytest.FixtureRequest) -> Tuple[Case, nn.Module]:
    case = request.param
    module = build(case, False)
    module.eval()
    return case, module


@pytest.mark.parametrize("rev", [False, True], ids=["fwd", "rev"])
def test_wrong_shape_is_a_clear_value_error(case_module: Tuple[Case, nn.Module],
                                            rev: bool) -> None:
    case, module = case_module
    _, cs = inputs(case, False, module)
    good = dict(_directions(case, module))[rev]
    for k in range(len(good)):
        spoilt = [(_grown(t) if i == k else t) for i, t in enumerate(good)]
        _expect(module, ValueError, spoilt, cs, rev)


@pytest.mark.parametrize("rev", [False, True], ids=["fwd", "rev"])
def test_wrong_dtype_is_a_clear_type_error(case_module: Tuple[Case, nn.Module],
                                           rev: bool) -> None:
    case, module = case_module
    _, cs = inputs(case, False, module)
    good = dict(_directions(case, module))[rev]
    reference = module_reference(module)
    spoilt = [t.float() for t in good]
    if cs is None and (reference is None or not reference.is_floating_point()):
        _call(module, spoilt, cs, rev)  # parameter-free blocks accept any floating dtype
        return
    _expect(module, TypeError, spoilt, cs, rev)  # or the conditions' dtype differs now


def test_wrong_condition_is_clear(case_module: Tuple[Case, nn.Module]) -> None:
    case, module = case_module
    xs, cs = inputs(case, False, module)
    if cs is None:
        pytest.skip("unconditioned case")
    for k in range(len(cs)):
        grown = [(_grown(t) if i == k else t) for i, t in enumerate(cs)]
        _expect(module, ValueError, xs, grown, False)
        single = [(t.float() if i == k else t) for i, t in enumerate(cs)]
        _expect(module, TypeError, xs, single, False)
