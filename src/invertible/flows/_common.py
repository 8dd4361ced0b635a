"""Shared pieces of the presets: subnet constructors, argument checks and seeded building."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Tuple, TypeVar

import torch
from torch import nn

__all__ = ["ConvSubnet", "DenseSubnet", "check_count", "check_hidden", "seeded", "zeroed"]


class DenseSubnet:
    """Subnet constructor for vectors: ``Linear, ReLU`` per hidden width, then a ``Linear``.

    The last layer starts at zero, so every coupling starts as the identity (as in Glow and
    RealNVP practice): training begins from the base density. A module-level class, so the
    networks it builds pickle.

    Args:
        hidden: the widths of the hidden layers.
    """

    def __init__(self, hidden: Sequence[int]) -> None:
        self.hidden = tuple(int(h) for h in hidden)

    def __call__(self, c_in: int, c_out: int) -> nn.Module:
        widths = (c_in, *self.hidden)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, zeroed(nn.Linear(widths[-1], c_out)))


class ConvSubnet:
    """Glow's coupling network for images: 3x3 conv, ReLU, 1x1 conv, ReLU, zero 3x3 conv.

    Args:
        hidden: the channels of the two hidden layers.
    """

    def __init__(self, hidden: int) -> None:
        self.hidden = int(hidden)

    def __call__(self, c_in: int, c_out: int) -> nn.Module:
        h = self.hidden
        last = zeroed(nn.Conv2d(h, c_out, 3, padding=1))
        return nn.Sequential(nn.Conv2d(c_in, h, 3, padding=1), nn.ReLU(), nn.Conv2d(h, h, 1),
                             nn.ReLU(), last)


M = TypeVar("M", bound=nn.Module)


def zeroed(module: M) -> M:
    """``module`` with every parameter set to zero (a layer whose output starts at zero)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block inside a fork of torch's CPU generator seeded with ``seed``.

    The weights that ``nn.Linear``/``nn.Conv2d`` draw from the global generator are then a
    function of ``seed``, and the caller's generator state is restored afterwards (only the
    CPU generator is seeded: building on the CPU draws from nothing else).
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield


def check_count(preset: str, name: str, value: int, low: int) -> int:
    """``value`` as an int ``>= low``, else a ``ValueError`` naming the preset."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{preset}: {name} must be an integer >= {low}, got {value!r}.")
    return value


def check_hidden(preset: str, hidden: Sequence[int]) -> Tuple[int, ...]:
    """Hidden widths as a tuple of positive ints, else a ``ValueError`` naming the preset."""
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(
            f"{preset}: hidden_features must be positive integers, got {hidden!r}.")
    return widths
