"""FrEIA user scripts (anomalib's FastFlow, CFlow, CS-Flow, U-Flow styles): only the imports change.

Each test body is written the way the FrEIA-based code is written; only the import lines differ:
``import FrEIA.framework as Ff`` became ``import invertible.framework as Ff`` and likewise for
``modules``.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import torch
from torch import nn

import invertible.framework as Ff
import invertible.modules as Fm


def conv_subnet(hidden: int):
    """FastFlow-style subnet factory: conv-ReLU-conv with a fixed hidden width."""

    def constructor(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, c_out, 3, padding=1)
        )

    return constructor


def dense_subnet(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(c_in, 32), nn.ReLU(), nn.Linear(32, c_out))


def round_trip_error(flow, x, c=None):
    z, log_det = flow(x, c) if c is not None else flow(x)
    x_rev, log_det_rev = flow(z, c, rev=True) if c is not None else flow(z, rev=True)
    xs = x if isinstance(x, (list, tuple)) else [x]
    xr = x_rev if isinstance(x_rev, (list, tuple)) else [x_rev]
    err = max(float((a - b).abs().max()) for a, b in zip(xs, xr))
    return err, float((log_det + log_det_rev).abs().max())


def test_fastflow_sequence_of_8_all_in_one_blocks_with_conv_subnets() -> None:
    torch.manual_seed(0)
    flows = nn.ModuleList()
    for _ in range(2):
        flow = Ff.SequenceINN(64, 32, 32)
        for _ in range(8):
            flow.append(
                Fm.AllInOneBlock,
                subnet_constructor=conv_subnet(64),
                affine_clamping=2.0,
                permute_soft=False,
            )
        flows.append(flow)
    x = torch.randn(2, 64, 32, 32)
    z, log_jac_dets = flows[0](x)
    assert isinstance(z, torch.Tensor) and z.shape == x.shape
    assert log_jac_dets.shape == (2,)
    with torch.no_grad():
        err, ld_err = round_trip_error(flows[0], x)
    assert err < 1e-4 and ld_err < 1e-3
    keys = flows.state_dict().keys()
    assert "0.module_list.7.global_scale" in keys and "1.module_list.0.w_perm" in keys
    assert flows.state_dict()["0.module_list.0.w_perm"].dtype == torch.int64


def test_cflow_conditional_dense_sequence() -> None:
    torch.manual_seed(0)
    n_feat, cond_dim = 32, 16
    decoder = Ff.SequenceINN(n_feat)
    for _ in range(4):
        decoder.append(
            Fm.AllInOneBlock,
            cond=0,
            cond_shape=(cond_dim,),
            subnet_constructor=dense_subnet,
            affine_clamping=1.9,
            global_affine_type="SOFTPLUS",
            permute_soft=True,
        )
    e, c = torch.randn(64, n_feat), torch.randn(64, cond_dim)
    z, log_jac_det = decoder(e, [c])
    assert z.shape == (64, n_feat) and log_jac_det.shape == (64,)
    z_other, _ = decoder(e, [c + 1.0])
    assert not torch.allclose(z, z_other)  # the condition is used
    with torch.no_grad():
        err, ld_err = round_trip_error(decoder, e, [c])
    assert err < 1e-4 and ld_err < 1e-4


class ParallelScale(Fm.InvertibleModule):
    """A CS-Flow-style block: three inputs, no ``c`` parameter, list outputs, a 0-dim log-det."""

    def __init__(self, dims_in, scale_init=0.1):
        super().__init__(dims_in)
        self.log_scales = nn.Parameter(torch.full((len(dims_in),), scale_init))
        self.mix = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, rev=False, jac=True):
        sign = -1.0 if rev else 1.0
        out = [t * torch.exp(sign * s) for t, s in zip(x, self.log_scales)]
        # the coarsest scale gets a shift computed from the mean of the finest: still invertible
        shift = self.mix * x[0].mean(dim=(1, 2, 3), keepdim=True) if not rev else None
        if not rev:
            out[2] = out[2] + shift
        else:
            out[2] = (x[2] - self.mix * out[0].mean(dim=(1, 2, 3), keepdim=True)) * torch.exp(
                -self.log_scales[2]
            )
        per_sample = sum(s * t[0].numel() for s, t in zip(self.log_scales, x))
        return out, sign * per_sample * 1.0  # a 0-dim tensor, the same for every sample

    @staticmethod
    def output_dims(input_dims):
        return input_dims


def test_csflow_graph_with_a_three_input_user_block() -> None:
    torch.manual_seed(0)
    shapes = [(8, 16, 16), (8, 8, 8), (8, 4, 4)]
    nodes = [Ff.InputNode(*s, name=f"input{k}") for k, s in enumerate(shapes)]
    for k in range(3):
        prev = nodes[-1]
        inputs = [prev.out0, prev.out1, prev.out2] if k else [n.out0 for n in nodes[:3]]
        nodes.append(
            Ff.Node(
                inputs=inputs,
                module_type=ParallelScale,
                module_args={"scale_init": 0.1 * (k + 1)},
                name=f"fc{k}",
            )
        )
    last = nodes[-1]
    for i in range(3):
        nodes.append(Ff.OutputNode([getattr(last, f"out{i}")], name=f"output{i}"))
    flow = Ff.GraphINN(nodes)
    xs = [torch.randn(4, *s) for s in shapes]
    zs, log_jac = flow(xs)
    assert isinstance(zs, tuple) and len(zs) == 3
    assert [tuple(z.shape[1:]) for z in zs] == shapes
    assert log_jac.shape == (4,) and torch.allclose(log_jac, log_jac[0].expand(4))
    expected = sum(0.1 * (k + 1) * sum(int(np.prod(s)) for s in shapes) for k in range(3))
    assert abs(float(log_jac[0].detach()) - expected) < 1e-3
    x_rev, log_jac_rev = flow(list(zs), rev=True)
    assert max(float((a - b).abs().max()) for a, b in zip(xs, x_rev)) < 1e-5
    assert torch.allclose(log_jac_rev, -log_jac)
    restored = torch.load(_saved(flow), weights_only=False)
    assert torch.allclose(restored(xs)[1], log_jac)


def _saved(model: nn.Module) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return buffer


def _uflow_graph(channels: int = 8, size: int = 16) -> Ff.GraphINN:
    """U-Flow's multi-scale graph: flows per scale, Split, upsampling and Concat between scales."""
    scales = [(channels * 4 ** k, size // 2**k, size // 2**k) for k in range(3)]
    input_nodes = [Ff.InputNode(*s, name=f"cond{k}") for k, s in enumerate(scales)]
    nodes, output_nodes = [], []
    last = None
    for k in reversed(range(3)):
        inp = input_nodes[k]
        if last is None:
            start = inp
        else:
            up = Ff.Node(last.out0, Fm.IRevNetUpsampling, {}, name=f"up_{k + 1}")
            start = Ff.Node([inp.out0, up.out0], Fm.Concat, {"dim": 0}, name=f"cat_{k}")
            nodes += [up, start]
        node = start
        for step in range(2):
            node = Ff.Node(
                node,
                Fm.AllInOneBlock,
                module_args={"subnet_constructor": conv_subnet(16), "affine_clamping": 2.0,
                             "permute_soft": False},
                conditions=None,
                name=f"flow{size // 2**k}_step{step}",
            )
            nodes.append(node)
        if k > 0:
            c = node.output_dims[0][0]
            split = Ff.Node(
                node, Fm.Split, {"section_sizes": (c // 2, c - c // 2), "dim": 0},
                name=f"split_{k}",
            )
            nodes.append(split)
            output_nodes.append(Ff.OutputNode(split.out1, name=f"output_scale_{k}"))
            last = split
        else:
            output_nodes.append(Ff.OutputNode(node.out0, name="output_scale_0"))
    return Ff.GraphINN(input_nodes + nodes + output_nodes[::-1])


def test_uflow_multiscale_graph_with_split_concat_and_several_outputs() -> None:
    torch.manual_seed(0)
    flow = _uflow_graph()
    xs = [torch.randn(2, *n.output_dims[0]) for n in flow.in_nodes]
    zs, log_jac = flow(xs, rev=False)
    assert isinstance(zs, tuple) and len(zs) == 3 and log_jac.shape == (2,)
    assert sum(z[0].numel() for z in zs) == sum(x[0].numel() for x in xs)
    with torch.no_grad():
        x_rev, log_jac_rev = flow(list(zs), rev=True)
    assert max(float((a - b).abs().max()) for a, b in zip(xs, x_rev)) < 1e-4
    assert float((log_jac + log_jac_rev).abs().max()) < 1e-3
    names = [n.name for n in flow.node_list if n.module is not None]
    assert names[:5] == ["flow4_step0", "flow4_step1", "split_2", "up_2", "cat_1"]
    # deterministic order: an identical build gives identical state_dict keys and shapes
    torch.manual_seed(0)
    again = _uflow_graph()
    assert [(k, v.shape) for k, v in again.state_dict().items()] == [
        (k, v.shape) for k, v in flow.state_dict().items()
    ]
    clone = copy.deepcopy(flow)
    assert torch.equal(clone(xs)[1], log_jac)
