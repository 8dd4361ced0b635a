"""Memory-efficient training by inversion (``memory_efficient=True``) of SequenceINN and GraphINN.

Gradients of the inputs, conditions and parameters must equal standard backprop (float64,
relative error <= 1e-6) for every container case of the property suite, both directions, and
for chains with ActNorm, buffers, conditions, user modules and nesting; the autograd graph must
hold no per-block activations (the saved bytes do not grow with depth); blocks without an exact
inverse are refused with a ``ValueError`` naming them; it works under ``torch.autocast`` and
DDP. A slow test measures the peak memory and step time of the benchmark workload W2 at depth 32.
"""

from __future__ import annotations

import copy
import gc
import io
import json
import os
import signal
import subprocess
import sys
import warnings
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn

import invertible.modules as Fm
from cases import Case, all_cases
from invertible.framework.graph_inn import ConditionNode, GraphINN, InputNode, Node, OutputNode
from invertible.framework.sequence_inn import SequenceINN
from subnets import conv_subnet, dense_subnet
from toy_blocks import CondShift, ScalarLogDetScale

D64 = torch.float64
DENSE = {"subnet_constructor": dense_subnet}
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy containers
CONTAINER_CASES = [c for c in all_cases() if c.id.split("-")[0] in ("sequence", "graph")]


def _as_list(value: Any) -> List[Tensor]:
    return [value] if isinstance(value, Tensor) else list(value)


def gradients(net: nn.Module, x: Sequence[Tensor], c: Sequence[Tensor], rev: bool = False,
              amp: bool = False) -> List[Optional[Tensor]]:
    """Gradients of a nonlinear loss of all outputs and the log-det w.r.t. x, c, parameters."""
    xs = [t.detach().clone().requires_grad_() for t in x]
    cs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in c]
    net.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out, log_det = net(xs if len(xs) > 1 else xs[0], c=cs or None, rev=rev)
        loss = sum((0.5 * z.float() ** 2 + 0.1 * z.float() ** 3).sum() for z in _as_list(out))
        loss = loss - log_det.sum()
    loss.backward()
    return [t.grad for t in xs + cs] + [p.grad for p in net.parameters() if p.requires_grad]


def assert_same_gradients(expected: List[Optional[Tensor]], got: List[Optional[Tensor]],
                          rtol: float = 1e-6) -> None:
    """Each gradient's relative error (Frobenius norm) is at most ``rtol``."""
    assert len(expected) == len(got)
    for k, (e, g) in enumerate(zip(expected, got)):
        assert (e is None) == (g is None) or float((e if g is None else g).abs().max()) == 0, k
        if e is not None and g is not None:
            err = float((e - g).norm() / e.norm().clamp_min(1e-300))
            assert err <= rtol, f"gradient {k}: relative error {err:.3g}"


def latents(net: nn.Module, x: Sequence[Tensor], c: Sequence[Tensor]) -> List[Tensor]:
    with torch.no_grad():
        z, _ = net(x if len(x) > 1 else x[0], c=list(c) or None)
    return _as_list(z)


def _built(case: Case) -> Tuple[nn.Module, List[Tensor], List[Tensor]]:
    torch.manual_seed(0)
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = case.build().double()
    gen = torch.Generator().manual_seed(1)
    return net, case.sample_x(gen, 4, net.dims_in), case.sample_c(gen, 4, case.cond_shapes)


@pytest.mark.parametrize("case", CONTAINER_CASES, ids=[c.id for c in CONTAINER_CASES])
@pytest.mark.parametrize("rev", [False, True], ids=["forward", "reverse"])
def test_gradients_equal_standard_backprop(case: Case, rev: bool) -> None:
    net, x, c = _built(case)
    if rev:
        x = latents(net, x, c)
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert_same_gradients(gradients(net, x, c, rev), gradients(efficient, x, c, rev))


def rich_chain(memory_efficient: bool = False) -> SequenceINN:
    """ActNorm (initialised), conditions, buffers (PermuteRandom, Haar), splines, Inverse, a
    user block with a 0-dim log-det, a nested memory-efficient chain, several shapes."""
    torch.manual_seed(0)
    np.random.seed(0)
    inner = SequenceINN(8, 2, 2, force_tuple_output=True, memory_efficient=True)
    inner.append(Fm.GLOWCouplingBlock, cond=0, cond_shape=(2, 2, 2), subnet_constructor=conv_subnet)
    inner.append(Fm.PermuteRandom, seed=2)
    inn = SequenceINN(2, 4, 4, memory_efficient=memory_efficient)
    inn.append(Fm.ActNorm, init_data=torch.randn(16, 2, 4, 4) * 2 + 1)
    inn.append(Fm.AllInOneBlock, cond=0, cond_shape=(3, 4, 4), subnet_constructor=conv_subnet)
    inn.append(Fm.HaarDownsampling)
    inn.append(inner, cond=1)
    inn.append(Fm.Inverse(Fm.RNVPCouplingBlock([(8, 2, 2)], subnet_constructor=conv_subnet)))
    inn.append(Fm.Flatten)
    inn.append(Fm.RationalQuadraticSpline, cond=2, cond_shape=(5,), **DENSE)
    inn.append(Fm.AllInOneBlock, permute_soft=True, learned_householder_permutation=2, **DENSE)
    inn.append(ScalarLogDetScale)
    inn.append(CondShift, cond=2, cond_shape=(5,))
    return inn


def _rich_inputs(batch: int = 4) -> Tuple[List[Tensor], List[Tensor]]:
    gen = torch.Generator().manual_seed(3)
    c = [torch.randn(batch, 3, 4, 4, generator=gen, dtype=D64),
         torch.randn(batch, 2, 2, 2, generator=gen, dtype=D64),
         torch.randn(batch, 5, generator=gen, dtype=D64)]
    return [torch.randn(batch, 2, 4, 4, generator=gen, dtype=D64)], c


@pytest.mark.parametrize("rev", [False, True], ids=["forward", "reverse"])
def test_rich_chain_gradients(rev: bool) -> None:
    torch.manual_seed(0)
    net = rich_chain().double()
    x, c = _rich_inputs()
    if rev:
        x = latents(net, x, c)
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    assert_same_gradients(gradients(net, x, c, rev), gradients(efficient, x, c, rev))


def test_uninitialised_actnorm_initialises_in_the_efficient_forward() -> None:
    torch.manual_seed(0)
    net = SequenceINN(3)
    net.append(Fm.ActNorm)
    net.append(Fm.GLOWCouplingBlock, **DENSE)
    net = net.double()
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    x = [torch.randn(6, 3, dtype=D64) * 3 + 2]
    assert_same_gradients(gradients(net, x, []), gradients(efficient, x, []))
    assert bool(efficient[0].is_initialized)
    torch.testing.assert_close(efficient[0].loc, net[0].loc)


def saved_bytes(net: nn.Module, x: Tensor, c: Sequence[Tensor]) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of one call."""
    storages = {}

    def pack(t: Tensor) -> Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x, c=list(c))
    return sum(storages.values())


def test_saved_activations_do_not_grow_with_depth() -> None:
    def chain(depth: int, efficient: bool) -> SequenceINN:
        torch.manual_seed(0)
        inn = SequenceINN(4, 8, 8, memory_efficient=efficient)
        for _ in range(depth):
            inn.append(Fm.AllInOneBlock, cond=0, cond_shape=(2, 8, 8),
                       subnet_constructor=conv_subnet)
        return inn

    x, c = torch.randn(2, 4, 8, 8), [torch.randn(2, 2, 8, 8)]
    standard = [saved_bytes(chain(d, False), x, c) for d in (2, 8)]
    efficient = [saved_bytes(chain(d, True), x, c) for d in (2, 8)]
    assert standard[1] > 3 * standard[0]
    assert efficient[0] == efficient[1] <= x.nbytes + c[0].nbytes  # output and condition only


def test_subnets_run_once_for_inversion_and_recomputation() -> None:
    """Reversible-network economy: per block and step, the subnet runs in the forward and once
    more in the backward (shared by reconstruction and recomputation), not twice more."""
    torch.manual_seed(0)
    inn = SequenceINN(4, 4, 4, memory_efficient=True)
    for _ in range(3):
        inn.append(Fm.AllInOneBlock, subnet_constructor=conv_subnet)
    calls = []
    for block in inn:
        block.subnet[0].register_forward_hook(lambda *args: calls.append(1))
    z, log_det = inn(torch.randn(2, 4, 4, 4))
    assert len(calls) == 3
    (z.square().sum() - log_det.sum()).backward()
    assert len(calls) == 6


class InPlaceSubnetOutput(Fm.InvertibleModule):
    """``y2 = x2 + 2 a(x1)`` where the block doubles its subnet's output in place."""

    def __init__(self, dims_in: Any, dims_c: Any = None) -> None:
        super().__init__(dims_in, dims_c)
        self.subnet = nn.Linear(2, 2)

    def forward(self, x: Sequence[Tensor], rev: bool = False, jac: bool = True) -> Any:
        x1, x2 = x[0][:, :2], x[0][:, 2:]
        a = self.subnet(x1)
        a.mul_(2.0)
        y2 = x2 - a if rev else x2 + a
        return (torch.cat([x1, y2], dim=1),), torch.zeros(x1.shape[0], dtype=x1.dtype)

    def output_dims(self, input_dims: Any) -> Any:
        return input_dims


def test_in_place_changes_to_subnet_outputs_are_safe() -> None:
    torch.manual_seed(0)
    net = SequenceINN(4)
    net.append(InPlaceSubnetOutput)
    net.append(Fm.PermuteRandom, seed=0)
    net.append(InPlaceSubnetOutput)
    net = net.double()
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    x = [torch.randn(5, 4, dtype=D64)]
    assert_same_gradients(gradients(net, x, []), gradients(efficient, x, []))


class Inexact(Fm.InvertibleModule):
    """A user block that declares that its reverse is not an exact inverse."""

    exact_inverse = False

    def forward(self, x: Sequence[Tensor], rev: bool = False, jac: bool = True) -> Any:
        return (x[0],), torch.zeros(x[0].shape[0])

    def output_dims(self, input_dims: Any) -> Any:
        return input_dims


def _subnet_with(layer: nn.Module) -> Any:
    def subnet(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(c_in, 8), layer, nn.Linear(8, c_out))

    return subnet


@pytest.mark.parametrize(("block", "kwargs", "words"), [
    (Fm.IResNetLayer, {"internal_size": 4}, "IResNetLayer.*exact_inverse = False"),
    (Fm.InvAutoFC, {}, "InvAutoFC.*exact_inverse = False"),
    (Fm.OrthogonalTransform, {}, "OrthogonalTransform.*exact_inverse = False"),
    (Inexact, {}, "Inexact.*exact_inverse = False"),
    (Fm.GLOWCouplingBlock, {"subnet_constructor": _subnet_with(nn.Dropout(0.1))}, "Dropout"),
    (Fm.GLOWCouplingBlock, {"subnet_constructor": _subnet_with(nn.BatchNorm1d(8))},
     "BatchNorm1d.*running statistics"),
])
def test_blocks_without_exact_inverse_are_refused(block: type, kwargs: Any, words: str) -> None:
    inn = SequenceINN(4)
    inn.append(Fm.PermuteRandom, seed=0)
    inn.append(block, **kwargs)
    with pytest.raises(ValueError, match=rf"SequenceINN.*module 1 .*{words}"):
        inn.memory_efficient = True
    assert not inn.memory_efficient
    with pytest.raises(ValueError, match=words):
        SequenceINN(4, memory_efficient=True).append(block, **kwargs)


def test_modes_are_checked_at_every_efficient_call() -> None:
    inn = SequenceINN(4)
    inn.append(Fm.GLOWCouplingBlock, subnet_constructor=_subnet_with(nn.Dropout(0.5)))
    inn.eval()
    inn.memory_efficient = True  # eval-mode dropout is deterministic
    inn(torch.randn(3, 4))
    inn.train()
    with torch.no_grad():
        inn(torch.randn(3, 4))  # not recorded: the standard path
    with pytest.raises(ValueError, match="Dropout in training mode"):
        inn(torch.randn(3, 4))


def test_graph_refusals_and_intermediate_outputs() -> None:
    inp = InputNode(3, name="x")
    conds = [ConditionNode(*s) for s in [(2,), (2, 3), (2, 6), (1,)]]
    gmm = Node(inp, Fm.GaussianMixtureModel, {}, conditions=conds, name="gmm")
    net = GraphINN([inp, *conds, gmm, OutputNode(gmm)])
    with pytest.raises(ValueError, match=r"GraphINN.*Node 'gmm'.*GaussianMixtureModel"):
        net.memory_efficient = True
    inp = InputNode(4, name="x")
    glow = Node(inp, Fm.GLOWCouplingBlock, DENSE, name="glow")
    net = GraphINN([inp, glow, OutputNode(glow)], memory_efficient=True)
    with pytest.raises(ValueError, match="intermediate_outputs"):
        net(torch.randn(2, 4), intermediate_outputs=True)
    with torch.no_grad():
        values, _ = net(torch.randn(2, 4), intermediate_outputs=True)
    assert len(values) == 3


def test_partial_losses_jac_false_and_no_grad() -> None:
    """Only one of two outputs in the loss; GraphINN's jac=False keeps zeros; no_grad is plain."""
    torch.manual_seed(0)
    case = next(c for c in CONTAINER_CASES if c.id == "graph-multi-io")
    net, x, c = _built(case)
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    grads = []
    for model in (net, efficient):
        xs = [t.clone().requires_grad_() for t in x]
        (z0, z1), log_det = model(xs, jac=False)
        assert float(log_det.detach().abs().max()) == 0.0
        z1.pow(3).sum().backward()
        grads.append([t.grad for t in xs] + [p.grad for p in model.parameters()])
    assert_same_gradients(*grads)
    with torch.no_grad():
        torch.testing.assert_close(efficient(x), net(x))


def test_double_backward_is_refused_and_pickling_keeps_the_flag() -> None:
    torch.manual_seed(0)
    inn = rich_chain(memory_efficient=True).double()
    x, c = _rich_inputs()
    x0 = x[0].clone().requires_grad_()
    z, log_det = inn(x0, c=c)
    (g,) = torch.autograd.grad(log_det.sum() + z.sum(), x0, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad"):
        g.sum().backward()
    buffer = io.BytesIO()
    torch.save(inn, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.memory_efficient and copy.deepcopy(inn).memory_efficient


def test_autocast_bf16_gradients_are_close_and_log_det_is_float32() -> None:
    """bf16 rounds the saved outputs, so reconstructed inputs carry bf16 error: compare with a
    loose tolerance (measured ~1.3e-2 here; standard bf16 vs float32 differs by ~0.9e-2)."""
    torch.manual_seed(0)
    net = SequenceINN(6)
    net.append(Fm.ActNorm, init_data=torch.randn(32, 6))
    net.append(Fm.AllInOneBlock, cond=0, cond_shape=(3,), **DENSE)
    net.append(Fm.PermuteRandom, seed=1)
    net.append(Fm.GLOWCouplingBlock, **DENSE)
    net.append(Fm.AllInOneBlock, permute_soft=True, **DENSE)
    efficient = copy.deepcopy(net)
    efficient.memory_efficient = True
    x, c = [torch.randn(64, 6)], [torch.randn(64, 3)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert efficient(x[0], c=c)[1].dtype == torch.float32
    assert_same_gradients(gradients(net, x, c, amp=True), gradients(efficient, x, c, amp=True),
                          rtol=5e-2)


def _ddp_gradients(rank: int, world: int, init: str, seed_x: int) -> List[Tensor]:
    """Gradients of a memory-efficient chain wrapped in DDP (gloo), two steps."""
    inn = rich_chain(memory_efficient=True).double()  # ActNorm's init: before the group exists
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(inn)
        fired = []
        for p in inn.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(lambda p: fired.append(1))
        for _ in range(2):  # an unreduced parameter would make DDP fail in the second step
            inn.zero_grad(set_to_none=True)
            x, c = _rich_inputs(batch=4 + seed_x)
            z, log_det = model(x[0], c=c)
            (0.5 * z.pow(2).sum() - log_det.sum()).backward()
        n_params = sum(p.requires_grad for p in inn.parameters())
        assert len(fired) == 2 * n_params
        grads = [p.grad for p in inn.parameters() if p.requires_grad]
        # Free the DDP wrapper while its process group lives. Otherwise its reducer, the last
        # owner of the destroyed gloo group, died later holding the GIL and joined gloo's work
        # thread, which waited for the GIL to free a finished all-reduce: a deadlock in torch's
        # teardown (gdb). Standalone, 6 of 30 runs hung (5 of 15 without memory_efficient);
        # 0 of 20 since.
        del model
        gc.collect()
        dist.barrier()
        return grads
    finally:
        dist.destroy_process_group()


def test_ddp_single_process_gloo(tmp_path: Any) -> None:
    got = _ddp_gradients(0, 1, f"file://{tmp_path / 'store'}", 0)
    torch.manual_seed(0)
    inn = rich_chain().double()
    x, c = _rich_inputs(batch=4)
    z, log_det = inn(x[0], c=c)
    (0.5 * z.pow(2).sum() - log_det.sum()).backward()
    assert_same_gradients([p.grad for p in inn.parameters() if p.requires_grad], got)


def _ddp_worker(rank: int, init: str, out: str) -> None:
    """One rank of the two-process check (run by DDP2_SCRIPT)."""
    torch.save(_ddp_gradients(rank, 2, init, rank), f"{out}.{rank}")


def _expected_mean_gradients() -> List[Tensor]:
    """The average over two ranks' batches of standard-backprop gradients."""
    expected = []
    for rank in range(2):
        inn = rich_chain().double()
        x, c = _rich_inputs(batch=4 + rank)
        z, log_det = inn(x[0], c=c)
        (0.5 * z.pow(2).sum() - log_det.sum()).backward()
        expected.append([p.grad for p in inn.parameters() if p.requires_grad])
    return [(a + b) / 2 for a, b in zip(*expected)]


# The two ranks run under a separate interpreter (workers import this test module), so that a
# hang can be timed out and killed with its whole process group instead of stalling pytest; each
# process prints its Python stacks to stderr if it is still running after 90 s.
DDP2_SCRIPT = """
import faulthandler
import sys
import torch
sys.path.insert(0, sys.argv[1])
import test_memory_efficient as t
def worker(rank, init, out):
    faulthandler.dump_traceback_later(90)
    t._ddp_worker(rank, init, out)
if __name__ == "__main__":
    faulthandler.dump_traceback_later(90)
    torch.multiprocessing.spawn(worker, args=(sys.argv[2], sys.argv[3]), nprocs=2)
"""


@pytest.mark.slow
def test_ddp_two_processes_average_gradients(tmp_path: Any) -> None:
    script, out = tmp_path / "ddp2.py", str(tmp_path / "grads")
    script.write_text(DDP2_SCRIPT)
    tests = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, str(script), tests, f"file://{tmp_path / 'store'}", out]
    with subprocess.Popen(command, start_new_session=True) as proc:  # ~10 s
        try:
            assert proc.wait(timeout=180) == 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("the two DDP ranks hung (180 s); their stacks are in the captured stderr")
    mean = _expected_mean_gradients()
    for rank in range(2):
        assert_same_gradients(mean, torch.load(f"{out}.{rank}"))


W2_SCRIPT = """
import json, os, sys, time
import torch
from torch import nn
from invertible.framework import SequenceINN
from invertible.modules import AllInOneBlock
torch.set_num_threads(1)
def subnet(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, 64, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(64, c_out, 3, padding=1))
torch.manual_seed(0)
inn = SequenceINN(64, 32, 32, memory_efficient=sys.argv[1] == "1")
for _ in range(int(sys.argv[2])):
    inn.append(AllInOneBlock, subnet_constructor=subnet)
opt = torch.optim.Adam(inn.parameters(), lr=1e-4)
x = torch.randn(8, 64, 32, 32)
def high_water_mark():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
# ru_maxrss survives exec (it would report the parent's peak, e.g. a long pytest run's): reset
# the kernel's per-process high-water mark instead and read VmHWM.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
with open("/proc/self/statm") as f:
    before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
cpu = []
for step in range(3):
    t = time.process_time()
    z, log_det = inn(x)
    opt.zero_grad(set_to_none=False)
    (0.5 * z.pow(2).flatten(1).sum(1) - log_det).mean().backward()
    opt.step()
    cpu.append(time.process_time() - t)
    if step == 0:
        peak = high_water_mark()
print(json.dumps({"mib": (peak - before) / 2**20, "cpu_s": sorted(cpu[1:])[0]}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ru_maxrss")
def test_w2_depth32_peak_memory_and_step_time() -> None:
    """The goal of memory-efficient mode: the benchmark workload W2 (``benchmarks/workloads.py``:
    AllInOneBlock on (64, 32, 32), 3x3 conv subnets of 64 channels,
    batch 8) at depth 32 trains in <= 0.3x the memory of standard backprop.

    Method: each mode runs in a fresh process; memory is the peak RSS (VmHWM, reset at start, as
    ru_maxrss would carry the parent's peak across exec) during the first training step
    (forward, NLL, backward, Adam) minus the RSS before it. glibc is told to return every
    block of >= 64 KiB to the system when it is freed (``MALLOC_MMAP_THRESHOLD_``), so RSS follows
    the live tensors instead of the allocator's cached heap. Time is the best CPU time of steps
    2-3 on one thread (CPU time, because wall time on a shared machine is noise); its bound is
    loose here, as the time of a step on a shared machine varies.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    results = []
    for efficient in ("0", "1"):
        run = subprocess.run([sys.executable, "-c", W2_SCRIPT, efficient, "32"], env=env,
                             capture_output=True, text=True, check=True)
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    standard, efficient_run = results
    print(f"W2 depth 32: standard {standard}, memory-efficient {efficient_run}")
    assert efficient_run["mib"] <= 0.3 * standard["mib"]
    assert efficient_run["cpu_s"] <= 2.0 * standard["cpu_s"]


def test_refusal_wording() -> None:
    """The block itself: "its reverse"; a part of it: "contains a/an <class>"."""
    inn = SequenceINN(4)
    with pytest.raises(ValueError, match=r"IResNetLayer by inversion: its reverse is not an exact"):
        SequenceINN(4, memory_efficient=True).append(Fm.IResNetLayer)
    inn.append(Fm.GLOWCouplingBlock, subnet_constructor=_subnet_with(nn.Dropout(0.1)))
    with pytest.raises(ValueError, match=r"it contains a Dropout in training mode"):
        inn.memory_efficient = True
