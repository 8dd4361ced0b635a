"""The ``public-api`` directive: a summary table and the reference of every name in ``__all__``.

``.. public-api:: invertible.modules`` reads the package's ``__all__`` at build time, so a name
added to it appears in the reference without editing the pages. Each object is described once,
on the page of its *home*: the documented package with the shortest name that lists it and
contains the module defining it (``invertible.utils.FiniteGuard`` is ``invertible.debug``'s,
``invertible.framework.graph_inn.GraphINN`` is ``invertible.framework``'s). Other pages list
it in their table with a link to that description.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any, Dict, List, Optional, Tuple

from docutils import nodes  # type: ignore[import-untyped]
from docutils.statemachine import StringList  # type: ignore[import-untyped]
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.ext.autosummary import extract_summary
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

#: The packages that have a reference page, in the order of the reference's table of contents.
PACKAGES = (
    "invertible.modules",
    "invertible.modules.splines",
    "invertible.framework",
    "invertible.framework.graph_inn",
    "invertible.distributions",
    "invertible.flows",
    "invertible.export",
    "invertible.testing",
    "invertible.metrics",
    "invertible.debug",
    "invertible.utils",
    "invertible.compat",
)


def public_names(package: str) -> List[str]:
    """The package's ``__all__``."""
    return list(importlib.import_module(package).__all__)


def home(package: str, name: str) -> str:
    """The package whose page describes ``package.name`` (see the module docstring)."""
    obj = getattr(importlib.import_module(package), name)
    defined_in = getattr(obj, "__module__", None) or ""
    for candidate in sorted(PACKAGES, key=len):
        inside = defined_in == candidate or defined_in.startswith(candidate + ".")
        if inside and name in public_names(candidate):
            return candidate
    return package


def directive_for(obj: Any) -> str:
    """The autodoc directive that describes ``obj``."""
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "autoexception"
    if inspect.isclass(obj):
        return "autoclass"
    if inspect.isroutine(obj):
        return "autofunction"
    return "autodata"


OPTIONS: Dict[str, Tuple[str, ...]] = {
    "autoclass": (":members:", ":show-inheritance:"),
    "autoexception": (":members:", ":show-inheritance:"),
}


def data_comment(name: str, obj: Any) -> Optional[List[str]]:
    """The ``#:`` comment above the assignment that defined ``obj`` as ``name``, in any module.

    autodoc looks for it only in the module it documents, so a constant that a package imports
    from a private module would get the docstring of its type (``tuple``, ``float``) instead.
    """
    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith("invertible") or getattr(module, name, None) is not obj:
            continue
        try:
            comment = ModuleAnalyzer.for_module(modname).find_attr_docs().get(("", name))
        except PycodeError:
            continue
        if comment:
            return list(comment)
    return None


def source_file(obj: Any) -> Optional[str]:
    """The file that defines ``obj``, when it is a class or a function of this package."""
    defined_in = sys.modules.get(getattr(obj, "__module__", None) or "")
    if not (inspect.isclass(obj) or inspect.isroutine(obj)) or defined_in is None:
        return None
    return getattr(defined_in, "__file__", None)


def doc_lines(name: str, obj: Any) -> List[str]:
    """The docstring of ``obj``, or for a constant its ``#:`` comment."""
    if directive_for(obj) == "autodata":
        return data_comment(name, obj) or []
    return (inspect.getdoc(obj) or "").splitlines()


def describe(name: str, obj: Any) -> List[str]:
    """The autodoc directive, with its options, that describes ``obj`` under ``name``."""
    kind = directive_for(obj)
    lines = [f".. {kind}:: {name}", *(f"   {o}" for o in OPTIONS.get(kind, ()))]
    if kind == "autodata" and len(repr(obj)) > 60:
        lines.append("   :no-value:")  # e.g. a table of functions: its repr helps nobody
    fields = getattr(obj, "_fields", None)
    if inspect.isclass(obj) and issubclass(obj, tuple) and fields:
        # A NamedTuple's docstring describes its fields (Attributes:); autodoc would add them again.
        lines.append(f"   :exclude-members: {', '.join(fields)}")
    return lines


class PublicApi(SphinxDirective):
    """``.. public-api:: package``: the table of ``__all__``, then each name's description."""

    required_arguments = 1

    def run(self) -> List[nodes.Node]:
        package = self.arguments[0]
        module = importlib.import_module(package)
        names = public_names(package)
        homes = {name: home(package, name) for name in names}
        settings = self.state.document.settings
        # Re-read the page when __all__, a docstring or this directive changes.
        objects = [getattr(module, name) for name in names]
        for dependency in {__file__, module.__file__, *map(source_file, objects)}:
            if dependency:
                self.env.note_dependency(dependency)
        lines = [f".. currentmodule:: {package}", "", ".. list-table::", "   :class: autosummary",
                 "   :widths: 35 65", ""]
        for name, where in homes.items():
            target = name if where == package else f"~{where}.{name}"
            summary = extract_summary(doc_lines(name, getattr(module, name)), settings)
            lines += [f"   * - :py:obj:`{target}`", f"     - {summary}"]
        lines.append("")
        for name in (n for n, h in homes.items() if h == package):
            lines += [*describe(name, getattr(module, name)), ""]
        container = nodes.container()
        source = self.get_source_info()[0]
        parsed = StringList(lines, source=source)
        nested_parse_with_titles(self.state, parsed, container)
        return container.children


def data_docstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: List[str]
) -> None:
    """A constant's ``#:`` comment wherever it was defined (autodoc reads its own module's)."""
    comment = data_comment(name.rsplit(".", 1)[-1], obj) if what == "data" else None
    if comment:
        lines[:] = [*comment, ""]


def init_signature(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: Optional[str],
    return_annotation: Optional[str],
) -> Optional[Tuple[str, Optional[str]]]:
    """Show a class's ``__init__`` arguments where autodoc shows ``(*args, **kwargs)``.

    ``InvertibleModule.__new__`` takes ``(*args, **kwargs)`` (it checks the arguments against
    ``__init__`` to name the class in a ``TypeError``), and autodoc prefers ``__new__``.
    """
    if what not in ("class", "exception") or signature != "(*args, **kwargs)":
        return None
    parameters = list(inspect.signature(obj.__init__).parameters.values())[1:]
    plain = [p.replace(annotation=inspect.Parameter.empty) for p in parameters]
    return str(inspect.Signature(plain)), return_annotation


def setup(app: Sphinx) -> Dict[str, Any]:
    app.add_directive("public-api", PublicApi)
    app.connect("autodoc-process-signature", init_signature)
    app.connect("autodoc-process-docstring", data_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
