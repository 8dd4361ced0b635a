"""Focused tests of ActNorm: FrEIA's state, data-dependent initialisation in either direction,
errors, the log-det, old checkpoints (also nested), distributed initialisation."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn

from invertible.framework.sequence_inn import SequenceINN
from invertible.modules.invertible_resnet import ActNorm

D = torch.float64


def skewed(shape: tuple, batch: int = 64, seed: int = 0) -> torch.Tensor:
    """A batch with per-channel means and stds far from 0 and 1."""
    gen = torch.Generator().manual_seed(seed)
    view = (1, shape[0]) + (1,) * (len(shape) - 1)
    mean = torch.linspace(-2.0, 3.0, shape[0], dtype=D).reshape(view)
    std = torch.linspace(0.5, 4.0, shape[0], dtype=D).reshape(view)
    return mean + std * torch.randn(batch, *shape, generator=gen, dtype=D)


def per_channel(t: torch.Tensor) -> tuple:
    dims = [0, *range(2, t.dim())]
    return t.mean(dim=dims), t.std(dim=dims)


# --- initialisation --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(20,), (3, 10, 10)])
def test_first_batch_normalises_per_channel(shape: tuple) -> None:
    """As FrEIA's test: after the first batch of 256 the output has mean 0 (1e-7) and std 1."""
    torch.manual_seed(0)
    module = ActNorm([shape])
    (z,), _ = module([torch.randn(256, *shape)])
    mean, std = per_channel(z)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-7)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-6)
    assert bool(module.is_initialized)
    skewed_module = ActNorm([shape]).double()  # far from 0/1 statistics, in float64
    (z,), _ = skewed_module([skewed(shape, batch=256)])
    mean, std = per_channel(z)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-12)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-12)


def test_state_dict_layout() -> None:
    """FrEIA's state: log_scale and loc (1, C, 1, ...), is_initialized a bool 0-d buffer."""
    for shape, param in [((5,), (1, 5)), ((3, 4, 2), (1, 3, 1, 1))]:
        state = ActNorm([shape]).state_dict()
        assert list(state) == ["log_scale", "loc", "is_initialized"]
        assert state["log_scale"].shape == param and state["loc"].shape == param
        assert state["log_scale"].dtype == torch.float32
        assert state["is_initialized"].dtype == torch.bool
        assert state["is_initialized"].shape == () and not bool(state["is_initialized"])


def test_init_data_in_constructor_and_scale_property() -> None:
    x = skewed((3, 2, 2)).float()
    module = ActNorm([(3, 2, 2)], init_data=x)
    mean, std = per_channel(x)
    assert bool(module.is_initialized)
    assert torch.allclose(module.loc.flatten(), mean.float(), atol=1e-6)
    assert torch.allclose(module.scale.flatten(), std.float(), atol=1e-5)
    assert torch.equal(module.scale, torch.exp(module.log_scale))


def test_first_call_in_reverse_initialises_from_z() -> None:
    """As in FrEIA, the first call initialises from its input whatever the direction (in reverse, it
    warns: latents are no data)."""
    module = ActNorm([(4,)]).double()
    z = skewed((4,))
    with pytest.warns(UserWarning, match=r"ActNorm: initialising .* reverse pass"):
        (x,), log_det = module([z], rev=True)
    mean, std = per_channel(z)
    assert torch.allclose(module.loc.flatten(), mean)
    assert torch.allclose(module.scale.flatten(), std)
    assert torch.allclose(x, std * z + mean)
    assert torch.allclose(log_det, torch.log(std).sum().expand(z.shape[0]))


def test_initialises_once_only() -> None:
    module = ActNorm([(3,)]).double()
    module([skewed((3,), seed=1)])
    before = copy.deepcopy(module.state_dict())
    module([skewed((3,), seed=2) * 5.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no init, so no reverse-init warning
        module([skewed((3,), seed=3)], rev=True)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key])


def test_loaded_initialised_state_is_never_overridden() -> None:
    trained = ActNorm([(3, 2, 2)]).double()
    trained([skewed((3, 2, 2), seed=4)])
    fresh = ActNorm([(3, 2, 2)]).double()
    fresh.load_state_dict(trained.state_dict())
    x = skewed((3, 2, 2), seed=5) * 3.0
    assert torch.equal(fresh([x])[0][0], trained([x])[0][0])
    assert torch.equal(fresh.loc, trained.loc)


def test_loaded_uninitialised_state_initialises_on_next_call() -> None:
    module = ActNorm([(3,)]).double()
    module([skewed((3,), seed=1)])
    module.load_state_dict(ActNorm([(3,)]).double().state_dict())  # is_initialized False
    x = skewed((3,), seed=6)
    (z,), _ = module([x])
    mean, std = per_channel(z)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-12)
    assert torch.allclose(std, torch.ones_like(std))


def test_statistics_hook_is_used() -> None:
    """The statistics come from one overridable method (where a distributed all-reduce goes)."""

    class FixedStats(ActNorm):
        def _init_statistics(self, batch: torch.Tensor) -> tuple:
            shape = self.log_scale.shape
            return torch.full(shape, 2.0, dtype=batch.dtype), torch.full(shape, 4.0)

    module = FixedStats([(2,)]).double()
    (z,), _ = module([torch.ones(3, 2, dtype=D)])
    assert torch.allclose(z, torch.full_like(z, -0.25))


def test_gradients_and_no_graph_through_init() -> None:
    module = ActNorm([(3,)]).double()
    x = skewed((3,)).requires_grad_(True)
    (z,), log_det = module([x])
    ((z**2).sum() - log_det.sum()).backward()
    assert module.log_scale.grad is not None and module.loc.grad is not None
    assert x.grad is not None
    assert module.log_scale.grad_fn is None and module.is_initialized.grad_fn is None


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "needle"),
    [
        (torch.randn(1, 4, dtype=D), "one value per channel"),
        (torch.randn(1, 2, 1, 1, dtype=D), "one value per channel"),
        (torch.randn(5, 4, 3, dtype=D), "shape"),
        (torch.randn(5, 3, dtype=D), "shape"),
        (torch.ones(6, 4, dtype=D), "zero standard deviation"),
        (torch.full((6, 4), float("nan"), dtype=D), "standard deviation"),
    ],
)
def test_unusable_init_batch_raises_value_error(batch: torch.Tensor, needle: str) -> None:
    dims = [tuple(batch.shape[1:])] if batch.dim() == 4 else [(4,)]
    module = ActNorm(dims).double()
    with pytest.raises(ValueError, match="ActNorm") as info:
        module([batch])
    assert needle in str(info.value)
    assert not bool(module.is_initialized)


def test_conditions() -> None:
    """An empty c is accepted (FrEIA raised); a real condition raises ValueError (FrEIA ignored
    it silently); dims_c is refused."""
    module = ActNorm([(3,)], init_data=skewed((3,)).float())
    x = torch.randn(4, 3)
    assert torch.equal(module([x], c=[])[0][0], module([x])[0][0])
    assert torch.equal(module([x], c=())[0][0], module([x], c=None)[0][0])
    with pytest.raises(ValueError, match="ActNorm takes no conditions"):
        module([x], c=[torch.randn(4, 2)])
    with pytest.raises(ValueError, match="ActNorm takes no conditions"):
        ActNorm([(3,)], dims_c=[(2,)])


def test_output_dims_with_two_inputs_is_an_assertion_error() -> None:
    with pytest.raises(AssertionError, match="1 input"):
        ActNorm([(3,), (3,)])
    with pytest.raises(ValueError, match="1 input"):
        ActNorm([(3,)]).output_dims([(3,), (2,)])


# --- log-det: (B,), where FrEIA returned (1,) ----------------------------------------------


def test_log_det_is_per_sample_and_signed() -> None:
    module = ActNorm([(2, 3, 3)], init_data=skewed((2, 3, 3)).float()).double()
    x = torch.randn(5, 2, 3, 3, dtype=D)
    (z,), log_det = module([x])
    (x_rev,), log_det_rev = module([z], rev=True)
    expected = -9 * module.log_scale.sum()
    assert log_det.shape == (5,) and log_det.dtype == D
    assert torch.allclose(log_det, expected.expand(5))
    assert torch.allclose(log_det_rev, -log_det) and torch.allclose(x_rev, x)
    assert isinstance(module([x], jac=False)[0], tuple)
    assert module([x], jac=False)[1].shape == (5,)


# --- old checkpoints --------------------------------------------------------------------------


def old_state(channels: int, spatial: tuple = ()) -> dict:
    shape = (1, channels) + (1,) * len(spatial)
    return {
        "scale": torch.linspace(-0.5, 0.7, channels).reshape(shape),
        "bias": torch.linspace(1.0, -2.0, channels).reshape(shape),
    }


def old_map(state: dict, x: torch.Tensor, prefix: str = "") -> torch.Tensor:
    """PyPI-0.2's ActNorm: z = x * exp(scale) + bias."""
    return x * torch.exp(state[prefix + "scale"]) + state[prefix + "bias"]


def test_old_keys_convert_at_top_level_with_deprecation_warning() -> None:
    state = old_state(3, (2, 2))
    module = ActNorm([(3, 2, 2)])
    with pytest.warns(DeprecationWarning, match="scale"):
        module.load_state_dict(state)
    x = torch.randn(4, 3, 2, 2)
    assert bool(module.is_initialized)
    assert torch.allclose(module([x])[0][0], old_map(state, x), atol=1e-6)
    assert set(state) == {"scale", "bias"}  # the caller's dict is untouched


def test_old_keys_without_strict_convert_silently() -> None:
    module = ActNorm([(3,)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.load_state_dict(old_state(3), strict=False)
    x = torch.randn(4, 3)
    assert torch.allclose(module([x])[0][0], old_map(old_state(3), x), atol=1e-6)


def test_old_keys_convert_inside_containers() -> None:
    """FrEIA converted only at top level; nested ActNorms (prefixed keys) convert too."""
    inn = SequenceINN(3)
    inn.append(ActNorm)
    inn.append(ActNorm)
    state = {f"module_list.{k}.{n}": v for k in (0, 1) for n, v in old_state(3).items()}
    with pytest.warns(DeprecationWarning, match="renamed") as record:
        inn.load_state_dict(state)
    assert sorted(str(w.message).split(")")[0] for w in record) == [
        "ActNorm (module_list.0.",
        "ActNorm (module_list.1.",
    ]
    x = torch.randn(4, 3)
    z, _ = inn(x)
    expected = old_map(state, old_map(state, x, "module_list.0."), "module_list.1.")
    assert torch.allclose(z, expected, atol=1e-5)
    holder = nn.Sequential(nn.Identity(), ActNorm([(3,)]))
    with pytest.warns(DeprecationWarning, match="renamed"):
        holder.load_state_dict({f"1.{n}": v for n, v in old_state(3).items()})
    assert bool(holder[1].is_initialized)


# --- export friendliness ---------------------------------------------------------------------


class FirstOutput(nn.Module):
    """``module([x])[0][0]`` as a plain module (what tracing needs)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module([x])[0][0]


def test_no_tensor_branch_after_initialisation() -> None:
    """After the first call forward only reads a Python flag: tracing gives no TracerWarning."""
    module = ActNorm([(3, 2, 2)], init_data=torch.randn(8, 3, 2, 2))
    x = torch.randn(4, 3, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(FirstOutput(module), x)
    assert torch.allclose(traced(x * 2), module([x * 2])[0][0])


def test_pickle_and_deepcopy_keep_the_state() -> None:
    for module in (ActNorm([(2,)]), ActNorm([(2,)], init_data=torch.randn(5, 2))):
        buffer = io.BytesIO()
        torch.save(module, buffer)
        buffer.seek(0)
        copies = [torch.load(buffer, weights_only=False), copy.deepcopy(module)]
        assert all(bool(o.is_initialized) == bool(module.is_initialized) for o in copies)
        x = torch.randn(3, 2)
        expected = module([x])[0][0]
        assert all(torch.equal(o([x])[0][0], expected) for o in copies)


# --- distributed initialisation and loading ------------------------------------------------------


def test_distributed_statistics_equal_the_local_ones_on_one_rank(monkeypatch) -> None:
    """With an all-reduce that is the identity (one rank), the two-pass statistics equal
    torch's mean and unbiased std; the real 2-rank run is in tests/test_ddp.py."""
    from invertible.modules import _elementwise as E

    monkeypatch.setattr(E, "_all_reduce_sum", lambda t, group: t)
    for shape in ((5,), (3, 4, 2)):
        batch = skewed(shape, batch=7)
        mean, std = E.distributed_channel_mean_std(batch.float())
        ref_mean, ref_std = E.channel_mean_std(batch)
        assert mean.dtype == torch.float32 and mean.shape == ref_mean.shape
        assert torch.allclose(mean.double(), ref_mean, atol=1e-6)
        assert torch.allclose(std.double(), ref_std, atol=1e-6)


def test_distributed_path_is_taken_only_with_several_ranks(monkeypatch) -> None:
    import invertible.modules.invertible_resnet as ir

    used = []
    monkeypatch.setattr(ir, "distributed_world_size", lambda group=None: 2)
    monkeypatch.setattr(ir, "distributed_channel_mean_std",
                        lambda batch, group=None: used.append(group) or (
                            batch.mean(dim=0, keepdim=True), batch.std(dim=0, keepdim=True)))
    module = ActNorm([(3,)]).double()
    module([skewed((3,))])
    assert used == [None]
    local = ActNorm([(3,)]).double()
    local.sync_distributed_init = False
    local([skewed((3,))])
    assert used == [None]


def test_loaded_parameters_without_flag_are_never_overwritten() -> None:
    """A non-strict load of log_scale/loc without is_initialized counts as initialised."""
    trained = ActNorm([(3,)]).double()
    trained([skewed((3,), seed=1)])
    state = {k: v for k, v in trained.state_dict().items() if k != "is_initialized"}
    fresh = ActNorm([(3,)]).double()
    fresh.load_state_dict(state, strict=False)
    assert bool(fresh.is_initialized)
    x = skewed((3,), seed=2) * 4.0
    assert torch.equal(fresh([x])[0][0], trained([x])[0][0])
    nested = SequenceINN(3)
    nested.append(ActNorm)
    nested.double().load_state_dict({f"module_list.0.{k}": v for k, v in state.items()},
                                    strict=False)
    assert torch.equal(nested[0].loc, trained.loc)
    nested(x, rev=True)
    assert torch.equal(nested[0].loc, trained.loc)
