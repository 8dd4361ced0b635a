"""Focused tests of GaussianMixtureModel: construction, state, errors, the maps, the graph.

The property suite runs its cases (tests/cases/gaussian_mixture.py); here, the conditions that
suite exempts from "conditions matter" are checked by changes that keep them valid.
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import pytest
import torch
from torch import Tensor

from cases import Case
from cases.gaussian_mixture import CASES, gmm_condition_shapes, mixture_sampler
from invertible import testing as T
from invertible.modules.gaussian_mixture import GaussianMixtureModel

F64 = torch.float64
GMM = GaussianMixtureModel


def conditions(batch: int, d: int, k: int, seed: int = 0) -> List[Tensor]:
    """Valid float64 ``[w, mu, U_entries, i]`` with an index tensor ``i``."""
    gen = torch.Generator().manual_seed(seed)
    return mixture_sampler(gen, batch, gmm_condition_shapes(d, k))


def factor_by_hand(entries: Tensor, d: int) -> Tensor:
    """U from one entry vector: exp of the first d on the diagonal, the rest row by row."""
    U = torch.diag(torch.exp(entries[:d]))
    pos = d
    for row in range(d):
        for col in range(row + 1, d):
            U[row, col] = entries[pos]
            pos += 1
    return U


def build(case: Case, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return case.build().double()


# --- construction, state, errors --------------------------------------------------------------


def test_dims_c_is_required() -> None:
    """A missing positional dims_c is Python's TypeError, as in FrEIA."""
    with pytest.raises(TypeError, match="dims_c"):
        GMM([(3,)])  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("dims_in", "dims_c", "words"),
    [
        ([(3, 2)], list(gmm_condition_shapes(3, 2)), "vectors"),
        ([(3,), (3,)], list(gmm_condition_shapes(3, 2)), "1 input"),
        ([(3,)], list(gmm_condition_shapes(3, 2))[:3], "4 conditions"),
        ([(3,)], [(2,), (2, 4), (2, 6), ()], "mu, U"),
        ([(3,)], [(2,), (2, 3), (2, 5), ()], "mu, U"),
    ],
)
def test_construction_errors(dims_in: list, dims_c: list, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        GMM(dims_in, dims_c)


def test_no_state_and_no_rng_use() -> None:
    """No state_dict keys (as in FrEIA) and nothing drawn from any RNG at construction."""
    torch.manual_seed(0)
    state = torch.get_rng_state()
    module = GMM([(3,)], [(2,), (2, 3), (2, 6), (0,)])
    assert torch.equal(state, torch.get_rng_state())
    assert module.state_dict() == {} and not list(module.parameters())


def test_masks_are_non_persistent_buffers() -> None:
    """The masks follow .to(...) (FrEIA's plain attributes did not) but add no state_dict keys."""
    module = GMM([(3,)], list(gmm_condition_shapes(3, 2)))
    buffers = dict(module.named_buffers())
    assert set(buffers) == {"mask_upper", "mask_diagonal"}
    assert torch.equal(module.mask_upper, torch.triu(torch.ones(3, 3), diagonal=1).bool())
    assert torch.equal(module.mask_diagonal, torch.eye(3).bool())
    moved = module.to("meta")
    assert moved.mask_upper.device.type == "meta" and moved.mask_diagonal.device.type == "meta"
    assert moved.state_dict() == {}


def test_forward_errors() -> None:
    module = GMM([(2,)], list(gmm_condition_shapes(2, 3)))
    x = torch.randn(4, 2, dtype=F64)
    cs = conditions(4, 2, 3)
    with pytest.raises(AssertionError, match="1 input"):
        module([x, x], cs)
    with pytest.raises(ValueError, match="1 input"):
        module([x, x], cs)
    with pytest.raises(ValueError, match=r"\[w, mu, U_entries, i\], got 3"):
        module([x], cs[:3])
    with pytest.raises(TypeError, match="tensor of indices"):
        module([x], [*cs[:3], "first"])
    with pytest.raises(ValueError, match="one component index per sample"):
        module([x], [*cs[:3], torch.zeros(3, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"GaussianMixtureModel: input must have shape \(B, 2\)"):
        module([torch.randn(4, 3, 2, dtype=F64)], cs)  # (B, K, d) only without an index
    with pytest.raises(ValueError, match=r"input must have shape \(B, 3, 2\)"):
        module([torch.randn(4, 2, 2, dtype=F64)], [*cs[:3], None])
    with pytest.raises(ValueError, match="GaussianMixtureModel: the conditions have batch size 4"):
        module([x[:3]], cs)
    with pytest.raises(TypeError, match="GaussianMixtureModel: condition 1 has dtype"):
        module([x], [cs[0], cs[1].float(), cs[2], cs[3]])


# --- the maps ----------------------------------------------------------------------------------


def test_fixed_components_by_hand() -> None:
    """z_b = U_{i_b} (x_b - mu_{i_b}), log-det = sum of the log-diagonal, negated in reverse."""
    d, k, batch = 3, 4, 5
    module = GMM([(d,)], list(gmm_condition_shapes(d, k)))
    w, mu, entries, index = conditions(batch, d, k)
    x = torch.randn(batch, d, dtype=F64)
    out, log_det = module([x], [w, mu, entries, index])
    assert isinstance(out, list) and out[0].shape == (batch, d) and log_det.shape == (batch,)
    for b in range(batch):
        U = factor_by_hand(entries[b, index[b]], d)
        assert torch.allclose(out[0][b], U @ (x[b] - mu[b, index[b]]), atol=1e-12)
        assert math.isclose(float(log_det[b]), float(entries[b, index[b], :d].sum()))
    back, log_det_rev = module(out, [w, mu, entries, index], rev=True)
    assert torch.allclose(back[0], x, atol=1e-12) and torch.equal(log_det_rev, -log_det)


def test_all_components_with_i_none() -> None:
    """i=None: outputs (B, K, d) and log-dets (B, K); x may be (B, d) or (B, K, d)."""
    d, k, batch = 2, 3, 4
    module = GMM([(d,)], list(gmm_condition_shapes(d, k)))
    w, mu, entries, _ = conditions(batch, d, k)
    x = torch.randn(batch, d, dtype=F64)
    out, log_det = module([x], [w, mu, entries, None])
    assert out[0].shape == (batch, k, d) and log_det.shape == (batch, k)
    for j in range(k):
        fixed, fixed_ld = module([x], [w, mu, entries, torch.full((batch,), j)])
        assert torch.allclose(out[0][:, j], fixed[0], atol=1e-12)
        assert torch.allclose(log_det[:, j], fixed_ld)
    again, _ = module([x.unsqueeze(1).expand(batch, k, d)], [w, mu, entries, None])
    assert torch.allclose(again[0], out[0], atol=1e-12)
    back, log_det_rev = module(out, [w, mu, entries, None], rev=True)
    assert back[0].shape == (batch, k, d)
    assert torch.allclose(back[0], x.unsqueeze(1).expand(batch, k, d), atol=1e-12)
    assert torch.equal(log_det_rev, -log_det)
    _, no_jac = module([x], [w, mu, entries, None], jac=False)
    assert no_jac is not None and no_jac.shape == (batch, k)
    broadcast, _ = module([out[0][:, 0]], [w, mu, entries, None], rev=True)  # (B, d) too
    assert broadcast[0].shape == (batch, k, d)
    assert torch.allclose(broadcast[0][:, 0], x, atol=1e-12)


def test_all_components_match_freia_both_ways() -> None:
    """Without an index FrEIA 0.2 maps (B, d) to (B, K, d) and takes its outputs back in
    reverse; so does this block, with the same numbers (float32: FrEIA's factors are)."""
    freia = pytest.importorskip("FrEIA.modules")
    d, k, batch = 3, 4, 5
    dims_c = list(gmm_condition_shapes(d, k))
    ours, theirs = GMM([(d,)], dims_c), freia.GaussianMixtureModel([(d,)], dims_c)
    w, mu, entries = [t.float() for t in conditions(batch, d, k)[:3]]
    x = torch.randn(batch, d)
    (z,), _ = ours([x], [w, mu, entries, None])
    for rev, point in ((False, x), (True, z)):
        (got,), got_ld = ours([point], [w, mu, entries, None], rev=rev)
        (want,), want_ld = theirs([point], [w, mu, entries, None], rev=rev)
        assert got.shape == want.shape == (batch, k, d)
        assert torch.allclose(got, want, atol=1e-5) and torch.allclose(got_ld, want_ld)
    (back,), _ = ours([z], [w, mu, entries, None], rev=True)
    assert torch.allclose(back, x.unsqueeze(1).expand(batch, k, d), atol=1e-5)


def test_int_i_seeds_the_component_choice() -> None:
    d, k, batch = 2, 3, 6
    module = GMM([(d,)], list(gmm_condition_shapes(d, k)))
    w, mu, entries, _ = conditions(batch, d, k)
    x = torch.randn(batch, d, dtype=F64)
    picked = GMM.pick_mixture_component(w, seed=7)
    by_seed, ld_seed = module([x], [w, mu, entries, 7])
    by_index, ld_index = module([x], [w, mu, entries, picked])
    assert torch.equal(by_seed[0], by_index[0]) and torch.equal(ld_seed, ld_index)


def test_scalar_index_is_broadcast() -> None:
    module = GMM([(2,)], list(gmm_condition_shapes(2, 3)))
    w, mu, entries, _ = conditions(4, 2, 3)
    x = torch.randn(4, 2, dtype=F64)
    one, _ = module([x], [w, mu, entries, torch.tensor(1)])
    many, _ = module([x], [w, mu, entries, torch.ones(4, dtype=torch.int32)])
    assert torch.equal(one[0], many[0])


# --- static methods ----------------------------------------------------------------------------


def test_pick_mixture_component_private_generator() -> None:
    w = torch.softmax(torch.randn(50, 4, dtype=F64), dim=1)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    picked = GMM.pick_mixture_component(w, seed=11)
    assert torch.equal(state, torch.get_rng_state())
    assert picked.dtype == torch.int32 and picked.shape == (50,)
    u = torch.rand(50, 1, generator=torch.Generator().manual_seed(11))
    assert torch.equal(picked, (u > torch.cumsum(w, 1)).sum(1).int())
    assert torch.equal(GMM.pick_mixture_component(w, seed=11), picked)
    unseeded = GMM.pick_mixture_component(w)
    assert torch.equal(state, torch.get_rng_state())
    assert int(unseeded.min()) >= 0 and int(unseeded.max()) <= 3


def test_pick_never_returns_k_when_weights_round_short() -> None:
    """Weights summing to slightly less than 1 must not give the out-of-range index K."""
    w = torch.full((200, 3), 0.33)
    assert int(GMM.pick_mixture_component(w, seed=0).max()) == 2


def test_normalize_weights_subtracts_the_global_max() -> None:
    w = torch.tensor([[1.0, 2.0, 3.0], [1000.0, 1001.0, 999.0]])
    expected = torch.softmax(w - 1001.0, dim=-1)
    assert torch.allclose(GMM.normalize_weights(w), expected)
    assert torch.isfinite(GMM.normalize_weights(w)).all()


def test_nll_loss_and_upper_bound_formulas() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(4, 3, generator=gen, dtype=F64), dim=1)
    z = torch.randn(4, 3, 2, generator=gen, dtype=F64)
    lj = torch.randn(4, 3, generator=gen, dtype=F64)
    direct = -torch.log((w * torch.exp(-0.5 * (z**2).sum(-1) + lj)).sum(1))
    assert torch.allclose(GMM.nll_loss(w, z, lj), direct, atol=1e-12)
    bound = -(torch.log(w) - 0.5 * (z**2).sum(-1) + lj).sum(1)
    assert torch.allclose(GMM.nll_upper_bound(w, z, lj), bound, atol=1e-12)
    far = GMM.nll_loss(w, 100.0 * z, lj)  # the direct formula underflows to inf here
    assert torch.isfinite(far).all()


# --- property checks on the pending suite cases ------------------------------------------------


def case_inputs(case: Case, module: torch.nn.Module, inverse: bool):
    gen = torch.Generator().manual_seed(1)
    cs = case.sample_c(gen, case.batch, case.cond_shapes)
    inner = module.module if inverse else module
    xs = case.sample_x(gen, case.batch, inner.dims_in)
    if inverse:
        xs = [z.detach() for z in T.run(inner, xs, cs)[0]]
    return xs, cs


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_means_factors_and_indices_matter(case: Case) -> None:
    module = build(case)
    xs, cs = case_inputs(case, module, False)
    base, _ = T.run(module, xs, cs)
    w, mu, entries, index = cs
    k = case.cond_shapes[0][0]
    changed: List[Optional[List[Tensor]]] = [
        [w, mu + 0.5, entries, index],
        [w, mu, entries + 0.5, index],
        [w, mu, entries, (index + 1) % k] if k > 1 else None,
    ]
    for cond in changed:
        if cond is not None:
            assert not torch.allclose(T.run(module, xs, cond)[0][0], base[0])


# --- the GMM graph of FrEIA's own test -----------------------------------------------------------


def test_gmm_graph() -> None:
    """ConditionNodes w, mu, U, i feed a GMM node; inverse and numerical log-det (float32)."""
    from invertible.framework.graph_inn import (
        ConditionNode,
        GraphINN,
        InputNode,
        Node,
        OutputNode,
        collect_nodes,
    )

    d, k, batch = 3, 4, 8
    inp = InputNode(d, name="x")
    cond_nodes = [ConditionNode(*s, name=n) for s, n in zip(
        [(k,), (k, d), (k, d * (d + 1) // 2), (0,)], ["w", "mu", "U", "i"])]
    gmm = Node(inp, GMM, {}, conditions=cond_nodes, name="gmm")
    out = OutputNode(gmm, name="z")
    graph = GraphINN(collect_nodes(inp))
    assert out in graph.node_list
    gen = torch.Generator().manual_seed(0)
    w, mu, entries, index = [t.float() if t.is_floating_point() else t
                             for t in mixture_sampler(gen, batch, gmm_condition_shapes(d, k))]
    x = torch.randn(batch, d, generator=gen)
    for i in (index, 5):
        z, log_det = graph(x, c=[w, mu, entries, i])
        x_rev, log_det_rev = graph(z, c=[w, mu, entries, i], rev=True)
        assert torch.allclose(x_rev, x, atol=2e-3)
        assert torch.allclose(log_det_rev, -log_det, atol=2e-3)
        numerical = graph.log_jacobian_numerical(x, c=[w, mu, entries, i], h=1e-3)
        assert torch.allclose(log_det, numerical, atol=1.0, rtol=0.03)
    z_all, _ = graph(x, c=[w, mu, entries, None], jac=False)
    assert z_all.shape == (batch, k, d)
    x_all, _ = gmm.module([z_all], [w, mu, entries, None], rev=True)
    assert torch.allclose(x_all[0], x.unsqueeze(1).expand(batch, k, d), atol=2e-3)
