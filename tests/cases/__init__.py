"""Registry of property-suite cases: every public block, each rank, with/without conditions.

Each topic file in this package defines ``CASES: list[Case]``; they are collected here. A case
builds its module under seeded global RNGs; the suite converts it to float64 and runs every
property on it, plain and wrapped in ``Inverse``.

A topic file may also define ``APPROXIMATE_CASES``: configurations of blocks that are only
approximately invertible by design (FrEIA's ``InvAutoFC``/``InvAutoConv2D`` at random init,
``IResNetLayer``'s fixed-point inverse and stochastic log-det). The generic suite does not run
them; the topic's own test file runs every property that holds, with the tolerance each one
honestly has, documented there. The registry test counts them as coverage.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["EXPECTED_WARNINGS", "Case", "all_cases", "approximate_cases", "normal_sampler"]

Shape = Tuple[int, ...]
Sampler = Callable[[torch.Generator, int, Sequence[Shape]], List[Tensor]]


#: Warnings some cases give by design, each tested where it is the topic: the deprecated
#: ``ReversibleGraphNet`` and ``InvAutoActFixed``, an ``ActNorm`` first initialised by a reverse
#: pass. Suites that run every case filter them (``pytest.mark.filterwarnings`` entries).
EXPECTED_WARNINGS = [
    "ignore:ReversibleGraphNet's forward:DeprecationWarning",
    "ignore:Deprecated. please use InvAutoAct:UserWarning",
    "ignore:ActNorm. initialising from the first batch it sees, which comes through a "
    "reverse pass:UserWarning",
]


def normal_sampler(gen: torch.Generator, batch: int, shapes: Sequence[Shape]) -> List[Tensor]:
    """Standard normal float64 tensors of ``(batch, *shape)`` for each shape."""
    return [torch.randn(batch, *s, generator=gen, dtype=torch.float64) for s in shapes]


@dataclass(frozen=True)
class Case:
    """One configuration of one module for the property suite.

    Attributes:
        id: readable unique test id.
        build: makes the module (called after ``torch.manual_seed``/``np.random.seed``).
        cond_shapes: shapes of the condition tensors the caller passes (also for containers whose
            ``dims_c`` is empty, such as a conditional ``SequenceINN``).
        covers: public classes this case exercises besides ``type(build())``.
        sample_x: draws valid inputs (default standard normal).
        sample_z: draws valid latents for the reverse round trip (default standard normal).
        sample_c: draws valid conditions for ``cond_shapes`` (default standard normal).
        batch: batch size used by the suite.
        atol: tolerance of the round trips.
        log_det_atol: tolerance of log-det against the autograd Jacobian.
        no_grad_params: parameter names allowed to get no gradient (documented per case).
        batch_independent: whether eval-mode outputs of a sample ignore the rest of the batch.
        static_conditions: indices of conditions that legitimately may not change the output
            when shifted (e.g. GMM weights when a component index is given).
    """

    id: str
    build: Callable[[], nn.Module]
    cond_shapes: Tuple[Shape, ...] = ()
    covers: Tuple[type, ...] = ()
    sample_x: Sampler = normal_sampler
    sample_z: Optional[Sampler] = None
    sample_c: Sampler = normal_sampler
    batch: int = 3
    atol: float = 1e-9
    log_det_atol: float = 1e-6
    no_grad_params: Tuple[str, ...] = field(default=())
    batch_independent: bool = True
    static_conditions: Tuple[int, ...] = ()


def _collect(name: str) -> List[Case]:
    cases: List[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        cases.extend(getattr(module, name, []))
    return cases


def all_cases() -> List[Case]:
    """Every case of every topic file in this package, ids unique."""
    cases = _collect("CASES")
    ids = [c.id for c in cases + approximate_cases()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate case ids: {duplicates}")
    return cases


def approximate_cases() -> List[Case]:
    """Cases of approximately invertible blocks, run by their topic's own test file."""
    return _collect("APPROXIMATE_CASES")
