"""invertible: exact, exportable invertible neural networks; a drop-in successor of FrEIA."""

from __future__ import annotations

from . import compat, distributions, export, flows, framework, metrics, modules, utils

__all__ = ["compat", "distributions", "export", "flows", "framework", "metrics", "modules", "utils"]
__version__ = "0.1.0"
