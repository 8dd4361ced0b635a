"""Load a PyPI FrEIA 0.2 checkpoint so that the network computes what FrEIA 0.2 computed."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from typing import Dict, FrozenSet, List, Tuple, Union

import torch
from torch import Tensor, nn

from ..framework import GraphINN
from ..modules.all_in_one_block import AllInOneBlock

__all__ = ["load_freia_02_checkpoint"]

State = Dict[str, Tensor]
#: An order of a graph's modules: for each ``module_list.<k>`` of the checkpoint, our module.
Assignment = Tuple[int, ...]


def load_freia_02_checkpoint(
    model: nn.Module, checkpoint: Union[Mapping[str, Tensor], str, os.PathLike[str]]
) -> nn.Module:
    """Load a checkpoint saved with PyPI FrEIA 0.2 and make ``model`` compute what 0.2 computed.

    ``model`` is the network built the FrEIA way with ``invertible`` (the same blocks and
    arguments as the 0.2 network, e.g. by the unchanged FrEIA code under
    :func:`~invertible.compat.install_freia_alias`); ``checkpoint`` is the 0.2 ``state_dict`` or
    the path of a file written by ``torch.save(model.state_dict(), path)``. In place, through
    every nested container, this call:

    * switches every :class:`~invertible.modules.AllInOneBlock` to 0.2's clamp of the log-scale,
      ``s = κ tanh(a)`` (``legacy_clamp=True``); FrEIA HEAD and ``invertible`` clamp as
      ``κ tanh(a/κ)``, which differs unless ``κ = 1``;
    * numbers the modules of every :class:`~invertible.framework.GraphINN` as the checkpoint
      does: 0.2 ordered the modules of parallel branches by the memory addresses of their nodes,
      so its ``module_list.<k>`` keys may follow another order in every process. The order is
      found among the orders the graph can run in, as the one whose entries load into its
      modules; ``ValueError`` if two such orders give modules different weights;
    * loads the state strictly; 0.2's formats are converted on the way as plain
      ``load_state_dict`` does: one-hot ``w_perm``/``w_perm_inv`` matrices of hard permutations
      become index vectors, ActNorm's ``scale``/``bias`` become ``log_scale``/``loc`` (without
      the ``DeprecationWarning`` a plain load gives for them).

    Every other block computes the same function in both packages once loaded. Three 0.2
    results are not reproduced, because they were wrong: ``LearnedElementwiseScaling``'s reverse
    log-det had the forward sign, ``InvertibleSigmoid`` on images returned one log-det per
    position (summed over channels only) instead of one per sample, and ``IResNetLayer``'s
    reverse log-det was a fresh stochastic estimate taken at the latent point instead of at the
    reconstructed input.

    Returns:
        ``model``, for chaining.

    Raises:
        TypeError: ``checkpoint`` is neither a path nor a mapping of names to tensors.
        ValueError: a graph's entries fit its modules in two orders with different weights.
        RuntimeError: the checkpoint does not fit ``model`` (from ``load_state_dict``).
    """
    state = read_state(checkpoint)
    if any(isinstance(m, GraphINN) for m in model.modules()):
        state = renumbered(model, state)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"ActNorm .*old parameter names",
                                category=DeprecationWarning)
        model.load_state_dict(state, strict=True)
    for module in model.modules():
        if isinstance(module, AllInOneBlock):
            module.legacy_clamp = True
    return model


def read_state(checkpoint: object) -> State:
    """A copy of the ``state_dict`` in ``checkpoint`` (a mapping, or a file ``torch.load``
    reads with ``weights_only=True`` onto the CPU)."""
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"load_freia_02_checkpoint: expected a state_dict (a mapping of names to "
                        f"tensors) or the path of one, got {type(checkpoint).__name__}.")
    bad = next((k for k, v in checkpoint.items() if not isinstance(v, Tensor)), None)
    if bad is not None:
        kind = type(checkpoint[bad]).__name__
        raise TypeError(f"load_freia_02_checkpoint: expected a state_dict (a mapping of names to "
                        f"tensors), but entry {bad!r} is of type {kind}; pass the model's "
                        f"state_dict itself (e.g. checkpoint[{bad!r}] if it is one).")
    return dict(checkpoint)


def renumbered(module: nn.Module, state: State) -> State:
    """``state`` (keys relative to ``module``) with every graph's ``module_list`` indices
    renumbered to ``module``'s own order, the outer graphs first."""
    if isinstance(module, GraphINN):
        state = renumbered_graph(module, state)
    for name, child in module.named_children():
        prefix = name + "."
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if inner:
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
            state.update({prefix + k: v for k, v in renumbered(child, inner).items()})
    return state


def fits(module: nn.Module, entry: State) -> bool:
    """Whether ``entry`` loads strictly into ``module`` (tried on a copy when the keys or
    shapes differ, so that the block's own conversions of old formats apply)."""
    own = module.state_dict()
    if own.keys() == entry.keys() and all(own[k].shape == entry[k].shape for k in own):
        return True
    trial = copy.deepcopy(module)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial.load_state_dict(renumbered(trial, dict(entry)), strict=True)
    except (RuntimeError, ValueError, TypeError, KeyError):
        return False
    return True


def content_classes(entries: List[State]) -> List[int]:
    """For each entry, the index of the first entry holding the same names and values."""
    classes: List[int] = []
    for k, entry in enumerate(entries):
        same = (j for j in range(k) if entries[j].keys() == entry.keys() and all(
            entries[j][n].shape == v.shape and torch.equal(entries[j][n], v)
            for n, v in entry.items()))
        classes.append(next(same, k))
    return classes


def graph_entries(state: State, n: int) -> Tuple[List[State], State]:
    """Split ``state`` into the entries of ``module_list.0`` ... ``module_list.<n-1>`` (keys
    relative to the module) and everything else."""
    entries: List[State] = [{} for _ in range(n)]
    rest: State = {}
    for key, value in state.items():
        head, _, tail = key.partition(".")
        index, _, name = tail.partition(".")
        if head == "module_list" and index.isdigit() and int(index) < n and name:
            entries[int(index)][name] = value
        else:
            rest[key] = value
    return entries, rest


def module_orders(modules: List[nn.Module], preds: List[FrozenSet[int]],
                  entries: List[State]) -> List[Assignment]:
    """Up to two orders (module index per position) that run the graph and load every entry
    into its module, differing in the weights some module gets.

    Position by position, a module is placed when its predecessors are placed and the entry at
    that position loads into it (``invertible``'s own order tried first); partial results are
    memoised by the set of modules placed, so a graph of parallel branches costs no more than
    the number of such sets.
    """
    n, classes = len(modules), content_classes(entries)
    fit_cache: Dict[Tuple[int, int], bool] = {}
    memo: Dict[FrozenSet[int], List[Assignment]] = {}

    def fit(k: int, j: int) -> bool:
        if (k, j) not in fit_cache:
            fit_cache[(k, j)] = fits(modules[j], entries[k])
        return fit_cache[(k, j)]

    def completions(placed: FrozenSet[int]) -> List[Assignment]:
        k = len(placed)
        if k == n:
            return [()]
        if placed not in memo:
            found: Dict[FrozenSet[Tuple[int, int]], Assignment] = {}
            for j in (j for j in range(n) if j not in placed and preds[j] <= placed):
                if fit(k, j):
                    for tail in completions(placed | {j}):
                        order = (j, *tail)
                        weights = frozenset((m, classes[k + i]) for i, m in enumerate(order))
                        found.setdefault(weights, order)
                if len(found) > 1:
                    break
            memo[placed] = list(found.values())[:2]
        return memo[placed]

    return completions(frozenset())


def renumbered_graph(graph: GraphINN, state: State) -> State:
    """``state`` with the graph's ``module_list.<k>`` entries moved to the modules they load into.

    FrEIA 0.2 listed a graph's modules in *some* order in which every node comes after the
    nodes feeding its inputs (:func:`module_orders` finds it). No fitting order leaves ``state``
    as it is, so that the strict load names what does not fit.

    Raises:
        ValueError: two fitting orders give some module different weights.
    """
    nodes = [node for node in graph.node_list_fwd if node.module is not None]
    entries, rest = graph_entries(state, len(nodes))
    position = {id(node): j for j, node in enumerate(nodes)}
    preds = [frozenset(position[id(p)] for p, _ in node.inputs if id(p) in position)
             for node in nodes]
    orders = module_orders(list(graph.module_list), preds, entries)
    if not orders:
        return state
    if len(orders) > 1:
        names = sorted({nodes[a].name for a, b in zip(*orders) if a != b})
        raise ValueError(
            f"load_freia_02_checkpoint: FrEIA 0.2 numbered the modules of a GraphINN's parallel "
            f"branches by memory address, and this checkpoint's module_list entries load into "
            f"the nodes {names} in more than one order with different weights, so which node "
            f"had which weights cannot be told. Rename their module_list.<k> keys by hand and "
            f"use load_state_dict."
        )
    for k, j in enumerate(orders[0]):
        rest.update({f"module_list.{j}.{name}": v for name, v in entries[k].items()})
    return rest
