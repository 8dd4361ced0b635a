"""The property checks behind `invertible.testing` (inverse, log-det vs autograd, shapes, state).

Every check takes the module, its inputs ``xs`` (one tensor per input) and its conditions ``cs``
(``None`` for an unconditioned module) and raises ``AssertionError`` with a readable message
when the property fails. `check_module` runs them all and reports; `invertible.testing` is the
public face of both.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from typing import Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .utils import run_module as run

__all__ = [
    "autograd_log_det",
    "check_batch_independence",
    "check_conditions_used",
    "check_gradients",
    "check_inputs_unchanged",
    "check_jac_false",
    "check_log_det_autograd",
    "check_output_shapes",
    "check_pickle_round_trip",
    "check_reverse_round_trip",
    "check_round_trip",
    "check_state_dict_round_trip",
    "run",
]

Tensors = Tuple[Tensor, ...]
Conditions = Optional[Sequence[Tensor]]


def _max_diff(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    return max(float((u - v).detach().abs().max()) if u.numel() else 0.0 for u, v in zip(a, b))


def _flat(ts: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(t.shape[0], -1) for t in ts], dim=1)


def _values(t: Tensor, most: int = 6) -> str:
    """A tensor's first ``most`` values with 6 significant digits, for failure messages."""
    values = t.detach().flatten().tolist()
    text = ", ".join(f"{v:.6g}" for v in values[:most])
    return f"[{text}{', ...' if len(values) > most else ''}]"


def _run_with_log_det(module: nn.Module, xs: Sequence[Tensor], cs: Conditions,
                      rev: bool = False) -> Tuple[Tensors, Tensor]:
    """``run`` with ``jac=True``; a module that returns no log-det fails the check by name."""
    outs, log_det = run(module, xs, cs, rev=rev)
    if log_det is None:
        raise AssertionError(f"{_name(module)}: returned no log-det (None) with jac=True, "
                             f"rev={rev}")
    return outs, log_det


def _name(module: nn.Module) -> str:
    return type(module).__name__


def check_output_shapes(
    module: nn.Module, xs: Sequence[Tensor], cs: Conditions, expected: Sequence[Tuple[int, ...]]
) -> None:
    """Outputs have the shapes ``expected`` (from ``output_dims``) and the log-det is ``(B,)``."""
    outs, log_det = run(module, xs, cs)
    got = [tuple(o.shape[1:]) for o in outs]
    want = [tuple(s) for s in expected]
    if got != want:
        raise AssertionError(f"{_name(module)}: output shapes {got} differ from output_dims {want}")
    batch = xs[0].shape[0]
    if log_det is None or tuple(log_det.shape) != (batch,):
        shape = None if log_det is None else tuple(log_det.shape)
        raise AssertionError(f"{_name(module)}: log-det shape {shape}, expected ({batch},)")
    if log_det.dtype != outs[0].dtype or log_det.device != outs[0].device:
        raise AssertionError(
            f"{_name(module)}: log-det is {log_det.dtype} on {log_det.device}, outputs are "
            f"{outs[0].dtype} on {outs[0].device}"
        )


def check_round_trip(
    module: nn.Module, xs: Sequence[Tensor], cs: Conditions, atol: float = 1e-9
) -> None:
    """``f^{-1}(f(x)) == x`` and the reverse log-det is minus the forward one."""
    zs, log_det = _run_with_log_det(module, xs, cs)
    xs_rev, log_det_rev = _run_with_log_det(module, zs, cs, rev=True)
    err = _max_diff(xs, xs_rev)
    if err > atol:
        raise AssertionError(f"{_name(module)}: x -> z -> x error {err:.3g} > {atol:g}")
    err = float((log_det + log_det_rev).detach().abs().max())
    if err > atol * max(1.0, float(log_det.detach().abs().max())):
        raise AssertionError(f"{_name(module)}: forward + reverse log-det = {err:.3g}, not 0")


def check_reverse_round_trip(
    module: nn.Module, zs: Sequence[Tensor], cs: Conditions, atol: float = 1e-9
) -> None:
    """``f(f^{-1}(z)) == z``."""
    xs, _ = run(module, zs, cs, rev=True)
    zs_again, _ = run(module, xs, cs)
    err = _max_diff(zs, zs_again)
    if err > atol:
        raise AssertionError(f"{_name(module)}: z -> x -> z error {err:.3g} > {atol:g}")


def autograd_log_det(
    module: nn.Module, xs: Sequence[Tensor], cs: Conditions, rev: bool = False
) -> Tensor:
    """``log |det J|`` per sample from the full autograd Jacobian (inputs and outputs flattened)."""
    shapes = [x.shape for x in xs]
    sizes = [x[0].numel() for x in xs]

    def f(flat: Tensor) -> Tensor:
        parts = flat.split(sizes, dim=1)
        inputs = [p.reshape(s) for p, s in zip(parts, shapes)]
        return _flat(run(module, inputs, cs, rev=rev, jac=False)[0])

    flat_x = _flat(xs).detach()
    jac = torch.autograd.functional.jacobian(f, flat_x)  # (B, D, B, D)
    batch = flat_x.shape[0]
    blocks = torch.stack([jac[b, :, b, :] for b in range(batch)])
    if blocks.shape[-1] != blocks.shape[-2]:
        raise AssertionError(f"{_name(module)}: Jacobian is not square: {tuple(blocks.shape)}")
    return torch.linalg.slogdet(blocks)[1]


def check_log_det_autograd(
    module: nn.Module, xs: Sequence[Tensor], cs: Conditions, atol: float = 1e-6, rev: bool = False
) -> None:
    """The returned log-det equals ``slogdet`` of the autograd Jacobian (use float64)."""
    _, log_det = _run_with_log_det(module, xs, cs, rev=rev)
    expected = autograd_log_det(module, xs, cs, rev=rev)
    err = float((log_det.detach() - expected).abs().max())
    if err > atol:
        raise AssertionError(
            f"{_name(module)} ({'reverse' if rev else 'forward'}): log-det {_values(log_det)} "
            f"differs from autograd slogdet {_values(expected)} by {err:.3g} > {atol:g}"
        )


def check_jac_false(module: nn.Module, xs: Sequence[Tensor], cs: Conditions) -> None:
    """``jac=False`` gives the same outputs as ``jac=True``, in both directions."""
    for rev in (False, True):
        inputs = xs if not rev else run(module, xs, cs)[0]
        a, _ = run(module, inputs, cs, rev=rev, jac=True)
        b, _ = run(module, inputs, cs, rev=rev, jac=False)
        if _max_diff(a, b) != 0.0:
            raise AssertionError(f"{_name(module)}: jac=False changes the outputs (rev={rev})")


def check_gradients(
    module: nn.Module, xs: Sequence[Tensor], cs: Conditions, exempt: Iterable[str] = ()
) -> None:
    """Every trainable parameter gets a non-zero gradient from an NLL-like loss, both ways."""
    exempt = set(exempt)
    for rev in (False, True):
        module.zero_grad(set_to_none=True)
        inputs = xs if not rev else [z.detach() for z in run(module, xs, cs)[0]]
        outs, log_det = _run_with_log_det(module, inputs, cs, rev=rev)
        loss = sum((o**2).sum() for o in outs) - log_det.sum()
        if loss.requires_grad:  # parameter-free blocks have nothing to differentiate
            loss.backward()
        missing = [
            n
            for n, p in module.named_parameters()
            if p.requires_grad and n not in exempt and (p.grad is None or not p.grad.abs().sum())
        ]
        if missing:
            raise AssertionError(f"{_name(module)}: no gradient reaches {missing} (rev={rev})")
    module.zero_grad(set_to_none=True)


def check_conditions_used(
    module: nn.Module, xs: Sequence[Tensor], cs: Sequence[Tensor], skip: Iterable[int] = ()
) -> None:
    """Changing any one condition (except those in ``skip``) changes the outputs."""
    base, _ = run(module, xs, cs)
    for k in sorted(set(range(len(cs))) - set(skip)):
        changed = [c + 0.5 if i == k else c for i, c in enumerate(cs)]
        outs, _ = run(module, xs, changed)
        if _max_diff(base, outs) == 0.0:
            raise AssertionError(f"{_name(module)}: condition {k} has no effect on the output")


def check_batch_independence(module: nn.Module, xs: Sequence[Tensor], cs: Conditions) -> None:
    """In eval mode, sample 0's outputs and log-det do not depend on the other samples."""
    was_training = module.training
    module.eval()
    try:
        for rev in (False, True):
            inputs = xs if not rev else run(module, xs, cs)[0]
            outs, log_det = _run_with_log_det(module, inputs, cs, rev=rev)
            others = [torch.cat([x[:1], x[1:].flip(0) * 0.5 + 0.1]) for x in inputs]
            outs2, log_det2 = _run_with_log_det(module, others, cs, rev=rev)
            err = max(
                _max_diff([o[:1] for o in outs], [o[:1] for o in outs2]),
                float((log_det[0] - log_det2[0]).detach().abs()),
            )
            if err > 1e-12:
                raise AssertionError(
                    f"{_name(module)}: sample 0 changes by {err:.3g} when the rest of the batch "
                    f"changes (rev={rev})"
                )
    finally:
        module.train(was_training)


def check_state_dict_round_trip(
    module: nn.Module, fresh: nn.Module, xs: Sequence[Tensor], cs: Conditions
) -> None:
    """Loading ``module``'s ``state_dict`` into ``fresh`` (same config) reproduces its outputs."""
    if set(module.state_dict()) != set(fresh.state_dict()):
        raise AssertionError(f"{_name(module)}: state_dict keys differ between two builds")
    fresh.load_state_dict(module.state_dict())
    a, ja = _run_with_log_det(module, xs, cs)
    b, jb = _run_with_log_det(fresh, xs, cs)
    if _max_diff(a, b) != 0.0 or float((ja - jb).detach().abs().max()) != 0.0:
        raise AssertionError(f"{_name(module)}: outputs differ after load_state_dict")


def check_pickle_round_trip(module: nn.Module, xs: Sequence[Tensor], cs: Conditions) -> None:
    """``torch.save(module)``/``torch.load`` and ``copy.deepcopy`` give an identical module."""
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    copies = [torch.load(buffer, weights_only=False), copy.deepcopy(module)]
    a, ja = _run_with_log_det(module, xs, cs)
    for other in copies:
        b, jb = _run_with_log_det(other, xs, cs)
        if _max_diff(a, b) != 0.0 or float((ja - jb).detach().abs().max()) != 0.0:
            raise AssertionError(f"{_name(module)}: a pickled or deep-copied module differs")


def check_inputs_unchanged(module: nn.Module, xs: Sequence[Tensor], cs: Conditions) -> None:
    """Neither direction modifies the caller's input or condition tensors."""
    for rev in (False, True):
        inputs: List[Tensor] = list(xs) if not rev else [z.detach() for z in run(module, xs, cs)[0]]
        conds = None if cs is None else list(cs)
        before = [t.clone() for t in inputs + (conds or [])]
        run(module, inputs, conds, rev=rev)
        after = inputs + (conds or [])
        if any(not torch.equal(b, a) for b, a in zip(before, after)):
            raise AssertionError(f"{_name(module)}: an input tensor was modified (rev={rev})")
