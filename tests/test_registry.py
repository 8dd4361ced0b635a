"""Every exported invertible class has at least one property-suite case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import invertible.framework as Ff
import invertible.modules as Fm
from cases import EXPECTED_WARNINGS, all_cases, approximate_cases
from invertible.modules import InvertibleModule

pytestmark = [pytest.mark.filterwarnings(w) for w in EXPECTED_WARNINGS]


def exported_classes() -> set:
    names = [(Fm, n) for n in Fm.__all__] + [(Ff, n) for n in Ff.__all__]
    objects = {getattr(mod, n) for mod, n in names}
    return {
        o for o in objects
        if isinstance(o, type) and issubclass(o, InvertibleModule) and o is not InvertibleModule
    }


def covered_classes() -> set:
    covered = set()
    for case in all_cases() + approximate_cases():
        torch.manual_seed(0)
        np.random.seed(0)
        covered.add(type(case.build()))
        covered.update(case.covers)
    return covered


def test_every_exported_block_has_a_case() -> None:
    missing = sorted(c.__name__ for c in exported_classes() - covered_classes())
    assert not missing, f"exported blocks without a property-suite case: {missing}"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in all_cases()]
    assert len(ids) == len(set(ids))
