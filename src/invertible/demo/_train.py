"""The demos' training loop: maximum likelihood with Adam, a cosine schedule and a progress bar."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, TextIO, Union

import torch
from torch import Tensor, nn

from ._progress import ProgressBar

__all__ = ["TrainLog", "fit"]

LossFn = Callable[[Tensor], Tensor]
EvalFn = Callable[[], Union[float, Tensor]]


@dataclass
class TrainLog:
    """Loss per optimiser step and the evaluation value after selected epochs."""

    steps_per_epoch: int = 1
    losses: List[float] = field(default_factory=list)
    eval_epochs: List[int] = field(default_factory=list)
    eval_values: List[float] = field(default_factory=list)


def fit(
    flow: nn.Module,
    data: Tensor,
    loss_fn: LossFn,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    lr: float = 2e-3,
    evaluate: Optional[EvalFn] = None,
    label: str = "training",
    unit: str = "",
    stream: Optional[TextIO] = None,
) -> TrainLog:
    """Minimise ``loss_fn(batch)`` (a scalar) over shuffled mini-batches of ``data``.

    Args:
        flow: the network; left in eval mode at the end.
        data: the training set, batch first, on the flow's device.
        loss_fn: mean loss of a batch (it may add fresh noise, e.g. dequantisation).
        epochs: passes over ``data``.
        batch_size: samples per step (the last step of an epoch may have fewer).
        generator: CPU generator for the shuffling.
        lr: Adam's initial learning rate, annealed to 0 by a cosine schedule.
        evaluate: called in eval mode and without gradients about 20 times over the run.
        label: the progress bar's label.
        unit: the loss unit shown by the progress bar.
        stream: where the progress bar goes (``None``: no bar).

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    steps_per_epoch = math.ceil(len(data) / batch_size)
    optimiser = torch.optim.Adam(flow.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * steps_per_epoch)
    bar = ProgressBar(epochs * steps_per_epoch, label, unit, stream, epochs=epochs)
    log = TrainLog(steps_per_epoch)
    eval_every = max(1, epochs // 20)
    for epoch in range(1, epochs + 1):
        flow.train()
        order = torch.randperm(len(data), generator=generator).to(data.device)
        for batch in data[order].split(batch_size):
            loss = loss_fn(batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            optimiser.step()
            schedule.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"the loss became {value} at epoch {epoch}")
            log.losses.append(value)
            bar.update(value)
        if evaluate is not None and (epoch % eval_every == 0 or epoch == epochs):
            log.eval_epochs.append(epoch)
            log.eval_values.append(evaluated(flow, evaluate))
    bar.close()
    flow.eval()
    return log


def evaluated(flow: nn.Module, evaluate: EvalFn) -> float:
    """``evaluate()`` with ``flow`` in eval mode and gradients off; restores training mode."""
    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad():
            return float(evaluate())
    finally:
        flow.train(was_training)
