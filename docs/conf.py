"""Sphinx configuration of the invertible documentation (build: ``./dev docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The tutorials run inside this process at build time: one CPU thread, no display. Set before
# torch is first imported (autodoc imports it through invertible).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "src"))

import torch  # noqa: E402

import invertible  # noqa: E402

torch.set_num_threads(1)

project = "invertible"
author = "the invertible authors"
copyright = "the invertible authors"
release = invertible.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "public_api",
    "offline_mathjax",
]

# No network at build time: no intersphinx, and MathJax is served from the site itself when the
# sphinx-mathjax-offline package is installed (see _ext/offline_mathjax.py).
exclude_patterns = ["_build", "tutorials"]  # the gallery's sources; it writes auto_tutorials/
html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"invertible {release}"
html_theme_options = {"navigation_with_keys": True}
html_show_sourcelink = False

# API reference: every name of each package's __all__ (see _ext/public_api.py).
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = True
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
add_module_names = False
# Single backticks (`SequenceINN`), common in the docstrings, link to the object when it exists.
default_role = "py:obj"
python_display_short_literal_types = True

# Tutorials: executed at every build, with their printed output and figures.
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r".*\.py$",
    "plot_gallery": True,
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "sphinx_gallery.sorting.FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "show_memory": False,
    "min_reported_time": 1,
}
