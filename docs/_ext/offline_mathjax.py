"""Serve MathJax 3 from the built site, so that maths renders without a network.

The files come from the PyPI package ``sphinx-mathjax-offline`` (MathJax 3.2.2). Only what the
``tex-chtml`` component loads is copied: the component itself, the CommonHTML fonts, the TeX
extensions it autoloads for less common macros, and the menu and accessibility code it loads on
demand (about 3 MB of the package's 24 MB; the speech engine, opt-in from the menu, stays out).
Without the package, Sphinx's default (a CDN) stays in place.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from sphinx.application import Sphinx

PARTS = ("tex-chtml.js", "output/chtml", "input/tex/extensions", "ui", "a11y")
TARGET = "_static/mathjax"


def mathjax_source() -> Optional[Path]:
    """The package's copy of MathJax, or None when the package is not installed."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "static" / "mathjax"


def use_local(app: Sphinx, config: Any) -> None:
    """Point ``mathjax_path`` at the site's own copy when there is one to copy."""
    if mathjax_source() is not None:
        config.mathjax_path = "mathjax/tex-chtml.js"


def copy_mathjax(app: Sphinx, exception: Optional[Exception]) -> None:
    """After a successful HTML build, copy the MathJax files the pages load."""
    source = mathjax_source()
    if exception is not None or source is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / TARGET
    for part in PARTS:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def setup(app: Sphinx) -> Dict[str, Any]:
    app.connect("config-inited", use_local)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
