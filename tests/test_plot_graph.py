"""plot_graph draws every node and edge, condition edges included (FrEIA crashed on them)."""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import pytest

import invertible.framework as Ff
import invertible.modules as Fm
from invertible.utils import output_dims_compatible, plot_graph
from subnets import dense_subnet


class FakeDigraph:
    """Records what plot_graph draws, standing in for graphviz.Digraph."""

    rendered: ClassVar[list] = []

    def __init__(self) -> None:
        self.nodes: list = []
        self.edges: list = []

    def node(self, name: str, label: str) -> None:
        self.nodes.append((name, label))

    def edge(self, a: str, b: str, label: str = "", **kwargs: str) -> None:
        self.edges.append((a, b, label))

    def render(self, path: str) -> None:
        FakeDigraph.rendered.append((path, self))


def conditional_graph() -> list:
    inp = Ff.InputNode(4, name="in")
    cond = Ff.ConditionNode(3, name="cond")
    block = Ff.Node(inp, Fm.GLOWCouplingBlock, {"subnet_constructor": dense_subnet},
                    conditions=cond, name="glow")
    out = Ff.OutputNode(block, name="out")
    return [inp, cond, block, out]


@pytest.fixture
def fake_graphviz(monkeypatch: pytest.MonkeyPatch) -> type:
    module = types.SimpleNamespace(Digraph=FakeDigraph, ExecutableNotFound=RuntimeError)
    monkeypatch.setitem(sys.modules, "graphviz", module)
    FakeDigraph.rendered = []
    return FakeDigraph


def test_condition_edges_are_drawn(fake_graphviz: type, tmp_path) -> None:
    nodes = conditional_graph()
    plot_graph(nodes, str(tmp_path), "graph")
    path, graph = fake_graphviz.rendered[0]
    assert path == str(tmp_path / "graph")
    assert sorted(label for _, label in graph.nodes) == sorted(
        ["InputNode", "ConditionNode", "GLOWCouplingBlock", "OutputNode"]
    )
    ids = {n.name: str(id(n)) for n in nodes}
    assert (ids["cond"], ids["glow"], "(3)") in graph.edges
    assert (ids["in"], ids["glow"], "(4)") in graph.edges
    assert (ids["glow"], ids["out"], "(4)") in graph.edges


def test_missing_path_is_a_plain_exception(tmp_path) -> None:
    with pytest.raises(Exception, match="does not exist"):
        plot_graph(conditional_graph(), str(tmp_path / "missing"), "graph")


def test_graph_plot_method_uses_plot_graph(fake_graphviz: type, tmp_path) -> None:
    graph = Ff.GraphINN(conditional_graph())  # GraphINN.plot exists (FrEIA lacked it)
    graph.plot(str(tmp_path), "net")
    assert len(fake_graphviz.rendered) == 1


def test_output_dims_compatible_single_output_graph() -> None:
    graph = Ff.GraphINN(conditional_graph())  # FrEIA raised ValueError here
    assert output_dims_compatible(graph) == [(4,)]
    with pytest.raises(ValueError, match="more than one output"):
        graph.output_dims()  # the GraphINN method itself keeps FrEIA's rule
