"""The documentation site builds warning-free, documents every public name and ran its tutorials.

One Sphinx build (``-W``: warnings are errors) of a copy of ``docs/`` into a temporary folder, so
that sphinx-gallery executes every tutorial afresh instead of reusing a previous run's output.
Skipped when the ``docs`` extra (Sphinx, furo, sphinx-gallery) is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterator, List, Set, Tuple

import pytest

import invertible

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Public packages beside those in ``invertible.__all__``.
EXTRA_PACKAGES = ("invertible.testing", "invertible.debug")

pytestmark = pytest.mark.slow


def public_packages() -> List[ModuleType]:
    """``invertible``'s public packages and modules, and their public subpackages."""
    names = [f"invertible.{n}" for n in invertible.__all__] + list(EXTRA_PACKAGES)
    found: List[ModuleType] = []
    while names:
        module = importlib.import_module(names.pop(0))
        found.append(module)
        children = pkgutil.iter_modules(getattr(module, "__path__", []))
        names += [f"{module.__name__}.{c.name}" for c in children
                  if c.ispkg and not c.name.startswith("_")]
    return found


def public_names() -> Iterator[Tuple[str, str, object]]:
    """``(package, name, object)`` for every name in every public package's ``__all__``."""
    for module in public_packages():
        for name in module.__all__:
            yield module.__name__, name, getattr(module, name)


def resolve(dotted: str) -> object:
    """The object an autodoc anchor such as ``invertible.modules.AllInOneBlock`` names."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise LookupError(dotted)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Build a fresh copy of the docs once; the paths of the sources and the HTML output."""
    for package in ("sphinx", "furo", "sphinx_gallery", "matplotlib"):
        pytest.importorskip(package)
    tmp = tmp_path_factory.mktemp("docs")
    source, out = tmp / "docs", tmp / "html"
    ignore = shutil.ignore_patterns("_build", "auto_tutorials", "sg_execution_times.rst")
    shutil.copytree(DOCS, source, ignore=ignore)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
               str(source), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"sphinx failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    return {"source": source, "html": out}


def anchors(html: Path) -> Set[str]:
    """Every ``id`` of the API pages."""
    ids: Set[str] = set()
    for page in (html / "api").glob("*.html"):
        ids.update(re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8")))
    return ids


def test_every_public_name_is_described(site: Dict[str, Path]) -> None:
    ids = anchors(site["html"])
    described: Dict[int, Set[str]] = {}
    for anchor in (i for i in ids if i.startswith("invertible.")):
        try:
            described.setdefault(id(resolve(anchor)), set()).add(anchor)
        except (LookupError, AttributeError):
            continue
    missing_pages = [m.__name__ for m in public_packages() if f"module-{m.__name__}" not in ids]
    assert not missing_pages, f"packages without an API page: {missing_pages}"
    missing = []
    for package, name, obj in public_names():
        here = f"{package}.{name}" in ids
        if not here and not any(a.endswith("." + name) for a in described.get(id(obj), ())):
            missing.append(f"{package}.{name}")
    assert not missing, f"public names the API reference does not describe: {missing}"


def test_tutorials_ran_with_output_and_figures(site: Dict[str, Path]) -> None:
    scripts = sorted((DOCS / "tutorials").glob("plot_*.py"))
    assert scripts, "no tutorials in docs/tutorials"
    figures = 0
    for script in scripts:
        rst = site["source"] / "auto_tutorials" / f"{script.stem}.rst"
        assert rst.is_file(), f"{script.name} was not turned into a page"
        text = rst.read_text(encoding="utf-8")
        images = text.count(".. image-sg::")
        assert images or "sphx-glr-script-out" in text, f"{script.name}: no output, no figure"
        figures += images
        assert (site["html"] / "auto_tutorials" / f"{script.stem}.html").is_file()
    assert figures > 0, "no tutorial produced a figure"


def test_maths_is_served_by_the_site(site: Dict[str, Path]) -> None:
    page = (site["html"] / "api" / "metrics.html").read_text(encoding="utf-8")
    assert "\\(" in page, "the metrics page has no inline maths to render"
    if importlib.util.find_spec("sphinx-mathjax-offline") is None:
        pytest.skip("sphinx-mathjax-offline not installed: MathJax comes from its CDN")
    assert "_static/mathjax/tex-chtml.js" in page
    mathjax = site["html"] / "_static" / "mathjax"
    fonts = mathjax / "output" / "chtml" / "fonts" / "woff-v2"
    assert (mathjax / "tex-chtml.js").is_file() and any(fonts.iterdir())
