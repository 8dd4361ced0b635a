"""Paired benchmark of the subnet memo of memory-efficient training (framework/_subnet_memo.py).

The memo lets one subnet evaluation serve both the inversion and the recomputation of a coupling
block in the backward pass. It is a second path beside plain recomputation, so it has to earn its
place: it stays only while it makes a memory-efficient training step at least 10 % faster on a
named workload. This script measures that, one process, one thread, steps with and without the
memo alternating in ABBA order so the machine's drift hits both alike.

    python benchmarks/memo.py --workload w2 --depth 8 --pairs 50

Prints the median step time of each variant and the median and interquartile range of the
per-pair ratio without/with (> 1: the memo is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import invertible.framework as Ff
import invertible.modules as Fm
from invertible.framework import _memory


class NoMemo:
    """Stand-in for ``SubnetMemo`` that records and replays nothing: plain recomputation."""

    def __init__(self, block: nn.Module) -> None:
        self.replaying = False

    def __enter__(self) -> NoMemo:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def w2_subnet(c_in: int, c_out: int) -> nn.Module:
    """W2's subnet: 3x3 conv to 64 channels, ReLU, 3x3 conv."""
    return nn.Sequential(nn.Conv2d(c_in, 64, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(64, c_out, 3, padding=1))


def dense_subnet(c_in: int, c_out: int) -> nn.Module:
    """The dense workloads' subnet: 256 hidden units."""
    return nn.Sequential(nn.Linear(c_in, 256), nn.ReLU(), nn.Linear(256, c_out))


def build_w2(depth: int) -> Tuple[nn.Module, Tensor]:
    """W2: ``depth`` AllInOneBlocks with conv subnets on (64, 32, 32), batch 8."""
    inn = Ff.SequenceINN(64, 32, 32, memory_efficient=True)
    for _ in range(depth):
        inn.append(Fm.AllInOneBlock, subnet_constructor=w2_subnet)
    return inn, torch.randn(8, 64, 32, 32)


def build_glow(depth: int) -> Tuple[nn.Module, Tensor]:
    """W3-like: ``depth`` GLOW couplings, each followed by a permutation, d=64, batch 1024."""
    inn = Ff.SequenceINN(64, memory_efficient=True)
    for k in range(depth):
        inn.append(Fm.GLOWCouplingBlock, subnet_constructor=dense_subnet, clamp=2.0)
        inn.append(Fm.PermuteRandom, seed=k)
    return inn, torch.randn(1024, 64)


WORKLOADS: Dict[str, Callable[[int], Tuple[nn.Module, Tensor]]] = {
    "w2": build_w2, "glow": build_glow,
}


def measure(workload: str, depth: int, pairs: int) -> Dict[str, Any]:
    """Alternate ``pairs`` steps with and without the memo; return times and ratios."""
    torch.manual_seed(0)
    inn, x = WORKLOADS[workload](depth)
    opt = torch.optim.Adam(inn.parameters(), lr=1e-5)
    real = _memory.SubnetMemo

    def step(memo: bool) -> float:
        _memory.SubnetMemo = real if memo else NoMemo  # type: ignore[assignment,misc]
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        z, log_det = inn(x)
        loss = 0.5 * z.pow(2).mean() - log_det.mean() / z[0].numel()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    try:
        for memo in (True, False, True, False):  # warm-up
            step(memo)
        with_memo: List[float] = []
        without: List[float] = []
        for i in range(pairs):
            order = (True, False) if i % 2 == 0 else (False, True)
            times = {memo: step(memo) for memo in order}
            with_memo.append(times[True])
            without.append(times[False])
    finally:
        _memory.SubnetMemo = real  # type: ignore[misc]
    ratios = [b / a for a, b in zip(with_memo, without)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {"with_ms": 1e3 * statistics.median(with_memo),
            "without_ms": 1e3 * statistics.median(without),
            "ratio": statistics.median(ratios), "iqr": (q1, q3)}


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="w2")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=50)
    args = parser.parse_args(argv)
    from malloc_env import ensure_malloc_env

    ensure_malloc_env(__file__, argv)
    torch.set_num_threads(1)
    r = measure(args.workload, args.depth, args.pairs)
    print(f"{args.workload} depth {args.depth}, {args.pairs} pairs: step with memo "
          f"{r['with_ms']:.1f} ms, without {r['without_ms']:.1f} ms; ratio without/with median "
          f"{r['ratio']:.3f}, IQR [{r['iqr'][0]:.3f}, {r['iqr'][1]:.3f}]")


if __name__ == "__main__":
    main(sys.argv[1:])
