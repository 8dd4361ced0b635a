"""The one property suite: every registered case, plain and wrapped in `Inverse`, in float64."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from cases import EXPECTED_WARNINGS, Case, all_cases, normal_sampler
from invertible import testing as T
from invertible.modules import Inverse
from invertible.utils import output_dims_compatible

CASES = all_cases()
pytestmark = [pytest.mark.filterwarnings(w) for w in EXPECTED_WARNINGS]


def variants(applies: Optional[Callable[[Case], bool]] = None) -> pytest.MarkDecorator:
    """Parametrise a test over the cases it applies to, each plain and wrapped in `Inverse`.

    Cases a property does not apply to (e.g. unconditioned ones for "conditions matter") are
    not generated at all, so a skip in the report always has a real reason.
    """
    chosen = [variant_param((case, inverse)) for case in CASES
              if applies is None or applies(case) for inverse in (False, True)]
    return pytest.mark.parametrize("variant", chosen, indirect=True)


def variant_param(variant: Tuple[Case, bool], rev: Optional[bool] = None) -> Any:
    """``pytest.param`` of a variant (and a direction); the inverted variants repeat the plain
    ones through a thin wrapper, so they are ``slow`` (left out of the quick subset)."""
    case, inverse = variant
    name = f"{case.id}{'-inverse' if inverse else ''}"
    marks = [pytest.mark.slow] if inverse else []
    if rev is None:
        return pytest.param(variant, id=name, marks=marks)
    return pytest.param(variant, rev, id=f"{'rev' if rev else 'fwd'}-{name}", marks=marks)


def build(case: Case, inverse: bool, seed: int = 0) -> nn.Module:
    """Build the case's module under fixed global seeds, in float64, optionally inverted."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    module = case.build().double()
    return Inverse(module) if inverse else module


def inputs(
    case: Case, inverse: bool, module: nn.Module, seed: int = 1
) -> Tuple[List[Tensor], Optional[List[Tensor]]]:
    """Valid inputs for ``module`` and its conditions (``None`` when unconditioned)."""
    gen = torch.Generator().manual_seed(seed)
    cs = case.sample_c(gen, case.batch, case.cond_shapes) if case.cond_shapes else None
    inner = module.module if inverse else module
    xs = case.sample_x(gen, case.batch, inner.dims_in)
    if inverse:  # the inverse's inputs live in the block's output space
        xs = [z.detach() for z in T.run(inner, xs, cs)[0]]
    return xs, cs


def latents(
    case: Case, inverse: bool, module: nn.Module, xs: List[Tensor], cs: Optional[List[Tensor]]
) -> List[Tensor]:
    """Valid inputs for the reverse direction of ``module``."""
    gen = torch.Generator().manual_seed(2)
    if inverse:  # the inverse's latent space is the block's input space
        return case.sample_x(gen, case.batch, module.module.dims_in)
    if case.sample_z is not None:
        return case.sample_z(gen, case.batch, output_dims_compatible(module))
    return normal_sampler(gen, case.batch, output_dims_compatible(module))


@pytest.fixture
def variant(request: pytest.FixtureRequest):
    """``(case, inverse, module, inputs, conditions)`` for the parametrised case."""
    case, inverse = request.param
    module = build(case, inverse)
    xs, cs = inputs(case, inverse, module)
    return case, inverse, module, xs, cs


@variants()
def test_output_shapes(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_output_shapes(module, xs, cs, output_dims_compatible(module))


@variants()
def test_round_trip(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_round_trip(module, xs, cs, atol=case.atol)


@variants()
def test_reverse_round_trip(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_reverse_round_trip(module, latents(case, inverse, module, xs, cs), cs, atol=case.atol)


#: Both directions of each plain case, the forward of each inverted one: ``Inverse``'s reverse
#: is the block's forward at the same points (``fwd`` of the plain case), and its log-det is
#: minus the forward one (the inverted case's round trip).
LOG_DET = [variant_param((case, inverse), rev) for case in CASES
           for inverse, rev in ((False, False), (False, True), (True, False))]


@pytest.mark.parametrize(("variant", "rev"), LOG_DET, indirect=["variant"])
def test_log_det_matches_autograd(variant, rev: bool) -> None:
    case, inverse, module, xs, cs = variant
    points = xs if not rev else [z.detach() for z in T.run(module, xs, cs)[0]]
    T.check_log_det_autograd(module, points, cs, atol=case.log_det_atol, rev=rev)


@variants()
def test_jac_false_same_outputs(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_jac_false(module, xs, cs)


@variants()
def test_gradients_reach_every_parameter(variant) -> None:
    case, inverse, module, xs, cs = variant
    exempt = [("module." if inverse else "") + n for n in case.no_grad_params]
    T.check_gradients(module, xs, cs, exempt)


def conditioned(case: Case) -> bool:
    return bool(case.cond_shapes)


def batch_independent(case: Case) -> bool:
    return case.batch_independent


@variants(conditioned)
def test_conditions_matter(variant) -> None:
    case, inverse, module, xs, cs = variant
    assert cs is not None
    T.check_conditions_used(module, xs, cs, skip=case.static_conditions)


@variants(batch_independent)
def test_batch_independence_in_eval(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_batch_independence(module, xs, cs)


@variants()
def test_state_dict_round_trip(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_state_dict_round_trip(module, build(case, inverse, seed=7), xs, cs)


@variants()
def test_pickle_and_deepcopy(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_pickle_round_trip(module, xs, cs)


@variants()
def test_inputs_never_mutated(variant) -> None:
    case, inverse, module, xs, cs = variant
    T.check_inputs_unchanged(module, xs, cs)
