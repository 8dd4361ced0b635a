"""Seeds, checkpoints and references: what a block keeps and what it leaves alone.

* every block that takes a ``seed`` builds the same network from the same seed and never
  touches torch's or numpy's global RNG state, building or running (FrEIA's ``PermuteRandom``
  reseeds numpy's global generator, which silently changes the user's own random draws);
* every registered case's ``state_dict`` survives ``torch.save``/``torch.load(weights_only=True)``
  and reproduces the outputs exactly;
* no block keeps a reference to a caller's tensor after a call (forward, reverse, backward).
"""

from __future__ import annotations

import gc
import inspect
import io
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import invertible.modules as Fm
from cases import EXPECTED_WARNINGS, Case, all_cases, approximate_cases
from invertible import testing as T
from invertible.modules.gaussian_mixture import GaussianMixtureModel
from invertible.utils import output_dims_compatible

CASES = all_cases() + approximate_cases()
pytestmark = [pytest.mark.filterwarnings(w) for w in EXPECTED_WARNINGS]
IDS = [case.id for case in CASES]


class GlobalRngUnchanged:
    """Context manager asserting that torch's and numpy's global RNG states are unchanged."""

    def __enter__(self) -> GlobalRngUnchanged:
        torch.manual_seed(1234)
        np.random.seed(1234)
        self.torch_state = torch.get_rng_state()
        self.numpy_state = np.random.get_state()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:
            return
        assert torch.equal(torch.get_rng_state(), self.torch_state), "torch's global RNG moved"
        after = np.random.get_state()
        assert after[0] == self.numpy_state[0] and np.array_equal(after[1], self.numpy_state[1])
        assert after[2:] == self.numpy_state[2:], "numpy's global RNG moved"


# --- seeds -------------------------------------------------------------------------------------

#: Builders of every block taking a ``seed`` argument: ``seed -> (module, inputs)``.
SEEDED: Dict[str, Callable[[int], Tuple[nn.Module, List[Tensor]]]] = {
    "AutoregressiveAffine": lambda s: (Fm.AutoregressiveAffine([(4,)], order="random", seed=s),
                                       [torch.ones(2, 4)]),
    "AutoregressiveRQSpline": lambda s: (Fm.AutoregressiveRQSpline([(4,)], seed=s),
                                         [torch.ones(2, 4)]),
    "Learned1x1Conv": lambda s: (Fm.Learned1x1Conv([(4, 2, 2)], seed=s),
                                 [torch.ones(2, 4, 2, 2)]),
    "PermuteRandom": lambda s: (Fm.PermuteRandom([(7, 2, 2)], seed=s), [torch.ones(2, 7, 2, 2)]),
    "AllInOneBlock": lambda s: (Fm.AllInOneBlock([(7,)], subnet_constructor=_forked_dense,
                                                 permute_soft=True, seed=s),
                                [torch.ones(2, 7)]),
}


def _forked_dense(c_in: int, c_out: int) -> nn.Module:
    """A subnet built without moving torch's global generator (AllInOneBlock's subnets are the
    user's and draw from it; only the block's own draws are under test)."""
    with torch.random.fork_rng():
        return nn.Linear(c_in, c_out)


def seeded_classes() -> List[str]:
    """Public block classes whose constructor has a ``seed`` parameter."""
    names = []
    for name in dir(Fm):
        cls = getattr(Fm, name)
        is_block = inspect.isclass(cls) and issubclass(cls, nn.Module)
        if is_block and "seed" in inspect.signature(cls.__init__).parameters:
            names.append(name)
    return sorted(names)


def test_every_seeded_block_is_covered() -> None:
    assert seeded_classes() == sorted(SEEDED), "add the new seeded block to SEEDED"


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_blocks_leave_global_rngs_alone(name: str) -> None:
    with GlobalRngUnchanged():
        module, xs = SEEDED[name](3)
        (z,), _ = module(xs)
        module([z], rev=True)
        again, _ = SEEDED[name](3)
    for (key, a), b in zip(module.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), f"{name}: the same seed built a different {key}"
    other, _ = SEEDED[name](4)
    assert any(not torch.equal(a, b) for a, b in zip(module.state_dict().values(),
                                                      other.state_dict().values()))


def test_gaussian_mixture_seeds_use_a_private_generator() -> None:
    """An int component condition ``i`` (a seed) draws from a private generator."""
    torch.manual_seed(0)
    gmm = GaussianMixtureModel([(2,)], [(3,), (3, 2), (3, 3), (0,)])
    w = torch.softmax(torch.randn(16, 3), dim=1)
    c = [w, torch.randn(16, 3, 2), 0.1 * torch.randn(16, 3, 3), 7]
    x = torch.randn(16, 2)
    with GlobalRngUnchanged():
        first = GaussianMixtureModel.pick_mixture_component(w, seed=7)
        (z1,), _ = gmm([x], c)
        (z2,), _ = gmm([x], c)
    assert torch.equal(first, GaussianMixtureModel.pick_mixture_component(w, seed=7))
    assert torch.equal(z1, z2)


# --- checkpoints -------------------------------------------------------------------------------


def build(case: Case, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return case.build().double()


def sample(case: Case, module: nn.Module) -> Tuple[List[Tensor], Optional[List[Tensor]]]:
    gen = torch.Generator().manual_seed(5)
    cs = case.sample_c(gen, case.batch, case.cond_shapes) if case.cond_shapes else None
    return case.sample_x(gen, case.batch, module.dims_in), cs


def seeded_run(module: nn.Module, xs: List[Tensor], cs: Optional[List[Tensor]], rev: bool):
    """``T.run`` with torch's RNG fixed, so stochastic log-det estimates repeat."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        return T.run(module, xs, cs, rev=rev)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_weights_only_checkpoint_reproduces_outputs(case: Case) -> None:
    module = build(case, seed=0)
    xs, cs = sample(case, module)
    zs, log_det = seeded_run(module, xs, cs, rev=False)  # also runs data-dependent inits
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = build(case, seed=1)
    fresh.load_state_dict(state)
    rev_inputs = [z.detach() for z in zs]
    expected = {False: (zs, log_det), True: seeded_run(module, rev_inputs, cs, rev=True)}
    for rev, inputs in ((False, xs), (True, rev_inputs)):
        outs, ld = expected[rev]
        outs2, ld2 = seeded_run(fresh, inputs, cs, rev=rev)
        assert all(torch.equal(a, b) for a, b in zip(outs, outs2)), f"{case.id} rev={rev}"
        assert torch.equal(ld, ld2), f"{case.id}: log-det differs after loading (rev={rev})"


# --- references to callers' tensors ------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_no_reference_to_callers_tensors_is_kept(case: Case) -> None:
    module = build(case, seed=0)
    xs, cs = sample(case, module)
    zs = [z.detach() for z in T.run(module, xs, cs)[0]]
    shapes = output_dims_compatible(module)
    assert [tuple(z.shape[1:]) for z in zs] == [tuple(s) for s in shapes]
    for rev, inputs in ((False, xs), (True, zs)):
        given = [t.clone().requires_grad_(True) for t in inputs]
        conds = None if cs is None else [c.clone() if isinstance(c, Tensor) else c for c in cs]
        refs = [weakref.ref(t) for t in given + (conds or []) if isinstance(t, Tensor)]
        outs, log_det = T.run(module, given, conds, rev=rev)
        (sum(o.sum() for o in outs) + log_det.sum()).backward()
        del given, conds, outs, log_det
        if any(ref() is not None for ref in refs):  # only then pay for a full collection
            gc.collect()
        alive = [k for k, ref in enumerate(refs) if ref() is not None]
        assert not alive, f"{case.id}: tensors {alive} still referenced after a call (rev={rev})"
