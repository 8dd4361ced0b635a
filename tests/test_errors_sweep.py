"""Misuse and other sizes swept over the whole registry.

For every registered case (float64, as in the property suite) the call is repeated with one
input or condition spoilt: one channel too many (the channel axis of an image, the last axis of
a vector), other extents for blocks whose parameters fix them (``fixed_size``), or float32
data. The error must be a ``ValueError`` (shape) or ``TypeError`` (dtype) -- directly or as the
``__cause__`` of the ``RuntimeError`` by which a ``GraphINN`` names the failing node -- and its
message must name the container or the block it reached. Unconditioned blocks without
floating-point parameters or buffers accept any floating dtype and must then simply run;
parameter-free conditional blocks want conditions of the input's dtype. (A condition's dtype is
spoilt too, including GaussianMixtureModel's integer index.)

The other side of the same rule: a case on images whose blocks do not fix the extents runs at
another image size, exactly invertible there too.
"""

from __future__ import annotations

import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Type

import pytest
import torch
from torch import Tensor, nn

from cases import EXPECTED_WARNINGS, Case, all_cases
from invertible import testing as T
from invertible.modules import InvertibleModule
from invertible.modules.base import module_reference
from invertible.utils import output_dims_compatible
from test_properties import build, inputs

Shape = Tuple[int, ...]
CASES = all_cases()
pytestmark = [pytest.mark.filterwarnings(w) for w in EXPECTED_WARNINGS]
BARE = (AssertionError, IndexError, KeyError, AttributeError)


def _grown(t: Tensor, axis: int = 1) -> Tensor:
    """``t`` with one more entry along ``axis`` (the channel axis; the last one of a vector)."""
    axis = axis if t.dim() > 2 else -1
    return torch.cat([t, t.narrow(axis, 0, 1)], dim=axis)


def _call(module: nn.Module, xs: List[Tensor], cs: Optional[List[Tensor]], rev: bool) -> None:
    with torch.no_grad():
        T.run(module, xs, cs, rev=rev)


def _clear(error: BaseException, kind: Type[BaseException], module: nn.Module) -> str:
    """Why ``error`` is not a clear ``kind`` error naming a block of ``module`` ('' if it is).

    A ``GraphINN`` wraps a node's error in a ``RuntimeError`` naming the node (FrEIA users
    catch that type), nested graphs once per level: the innermost cause is judged. An error
    raised by the user's own module in a ``FeedForwardNode`` stays that module's business:
    naming the node is enough.
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


def _blocks(module: nn.Module) -> List[InvertibleModule]:
    return [m for m in module.modules() if isinstance(m, InvertibleModule)]


def _layout(case: Case) -> Tuple[bool, bool]:
    """``(on images, some block fixes the extents)`` of the case's module."""
    with warnings.catch_warnings():  # building at collection: the expected warnings of builds
        warnings.simplefilter("ignore")
        module = build(case, False)
    images = any(len(shape) > 1 for shape in module.dims_in)
    return images, any(block.fixed_size for block in _blocks(module))


LAYOUTS = {case.id: _layout(case) for case in CASES}


def _cases(keep: Optional[Callable[[Case], bool]] = None) -> pytest.MarkDecorator:
    """Parametrise ``case_module`` over the cases ``keep`` accepts (all by default): cases a
    check does not apply to are not generated."""
    chosen = [case for case in CASES if keep is None or keep(case)]
    return pytest.mark.parametrize("case_module", chosen, ids=[c.id for c in chosen],
                                   indirect=True)


def conditioned(case: Case) -> bool:
    return bool(case.cond_shapes)


def resizable_images(case: Case) -> bool:
    images, fixed = LAYOUTS[case.id]
    return images and not fixed


@pytest.fixture
def case_module(request: pytest.FixtureRequest) -> Tuple[Case, nn.Module]:
    case = request.param
    module = build(case, False)
    module.eval()
    return case, module


@_cases()
@pytest.mark.parametrize("rev", [False, True], ids=["fwd", "rev"])
def test_wrong_shape_is_a_clear_value_error(case_module: Tuple[Case, nn.Module],
                                            rev: bool) -> None:
    case, module = case_module
    _, cs = inputs(case, False, module)
    good = dict(_directions(case, module))[rev]
    images, fixed = LAYOUTS[case.id]
    axes = [1, -1] if images and fixed else [1]  # extents are free unless a block fixes them
    for k in range(len(good)):
        for axis in axes:
            spoilt = [(_grown(t, axis) if i == k else t) for i, t in enumerate(good)]
            _expect(module, ValueError, spoilt, cs, rev)


@_cases()
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


@_cases(conditioned)
def test_wrong_condition_is_clear(case_module: Tuple[Case, nn.Module]) -> None:
    """A condition with a channel too many, other extents than its input's, or float32."""
    case, module = case_module
    xs, cs = inputs(case, False, module)
    assert cs is not None
    for k, c in enumerate(cs):
        spoilt = [_grown(c)]
        if isinstance(c, Tensor) and c.dim() == xs[0].dim() > 2:
            spoilt.append(_grown(c, -1))  # conditions share their input's extents at call time
        for bad in spoilt:
            _expect(module, ValueError, xs, [bad if i == k else t for i, t in enumerate(cs)],
                    False)
        single = [(t.float() if i == k else t) for i, t in enumerate(cs)]
        _expect(module, TypeError, xs, single, False)


# --- other image sizes -------------------------------------------------------------------------

#: Largest input (elements per sample) whose log-det is also compared with autograd's slogdet
#: at the other size: the Jacobian costs one backward pass per output element.
AUTOGRAD_LIMIT = 60


def _shrinks(block: InvertibleModule) -> bool:
    """Whether ``block`` maps images to smaller extents (a downsampling), so it needs them
    divisible. Parts that declare no output shapes of their own (a block's helper module) do
    not change shapes."""
    if type(block).output_dims is InvertibleModule.output_dims:
        return False
    first = block.dims_in[0]
    outs = output_dims_compatible(block)
    return any(len(out) == len(first) > 1 and any(o < i for o, i in zip(out[1:], first[1:]))
               for out in outs)


def other_extents(module: nn.Module, shape: Shape) -> Shape:
    """``shape`` at another image size: extents + 1 (odd, non-square sizes for a square case),
    doubled when a block shrinks the extents and so needs them even."""
    shrinking = any(_shrinks(block) for block in _blocks(module))
    return (shape[0], *(2 * s if shrinking else s + 1 for s in shape[1:]))


def resized(shapes: Sequence[Shape], rank: int, extents: Shape) -> List[Shape]:
    """Shapes of rank ``rank`` take ``extents`` after their channel axis; others stay."""
    return [(s[0], *extents) if len(s) == rank else tuple(s) for s in shapes]


@_cases(resizable_images)
def test_runs_at_another_image_size(case_module: Tuple[Case, nn.Module]) -> None:
    """Round trip and forward log-det = -reverse log-det at another image size (and, for small
    inputs, log-det = slogdet of the autograd Jacobian)."""
    case, module = case_module
    first = module.dims_in[0]
    extents = other_extents(module, first)[1:]
    shapes = resized(module.dims_in, len(first), extents)
    gen = torch.Generator().manual_seed(11)
    cond_shapes = resized(case.cond_shapes, len(first), extents)
    cs = case.sample_c(gen, case.batch, cond_shapes) if cond_shapes else None
    xs = case.sample_x(gen, case.batch, shapes)
    T.check_round_trip(module, xs, cs, atol=case.atol)
    if sum(x[0].numel() for x in xs) <= AUTOGRAD_LIMIT:
        T.check_log_det_autograd(module, xs, cs, atol=case.log_det_atol)
