"""Property-suite cases for the graph topology blocks `Split` and `Concat`."""

from __future__ import annotations

from functools import partial

from cases import Case
from invertible.modules.graph_topology import Concat, Split

__all__ = ["CASES"]

CASES = [
    Case("topology-split-vector-2", partial(Split, [(6,)])),
    Case("topology-split-vector-int", partial(Split, [(5,)], section_sizes=2)),
    Case("topology-split-vector-3-sizes", partial(Split, [(7,)], section_sizes=[1, 2, 4])),
    Case("topology-split-image-3", partial(Split, [(6, 3, 3)], n_sections=3)),
    Case("topology-split-image-tuple", partial(Split, [(5, 2, 3)], section_sizes=(2, 3))),
    Case("topology-split-image-spatial", partial(Split, [(2, 6, 3)], n_sections=3, dim=1)),
    Case("topology-split-image-negative-dim", partial(Split, [(2, 3, 4)], dim=-1)),
    Case("topology-concat-vector-2", partial(Concat, [(2,), (3,)])),
    Case("topology-concat-vector-3", partial(Concat, [(2,), (1,), (3,)])),
    Case("topology-concat-image-2", partial(Concat, [(2, 3, 3), (1, 3, 3)])),
    Case("topology-concat-image-3-spatial", partial(Concat, [(2, 1, 3), (2, 2, 3), (2, 3, 3)],
                                                    dim=1)),
]
