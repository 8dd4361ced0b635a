"""Coming from FrEIA: ``FrEIA`` as an import alias of `invertible`, and FrEIA 0.2 checkpoints.

After :func:`install_freia_alias`, every ``FrEIA`` import in the running process resolves to
``invertible``: ``import FrEIA.framework as Ff``, ``from FrEIA.modules import AllInOneBlock``,
``import FrEIA.modules.base``, ``FrEIA.framework.graph_inn`` ... give the very same module
objects as ``invertible.framework`` etc., so ``FrEIA.modules.InvertibleModule is
invertible.modules.InvertibleModule`` and third-party subclasses (anomalib's flows) are
``invertible`` modules. (Move trained weights as state dicts: whole-model pickles made with
FrEIA would resolve to ``invertible``'s classes but carry FrEIA's internal attributes.)

The alias covers ``FrEIA`` itself and everything under ``FrEIA.framework``, ``FrEIA.modules``,
``FrEIA.utils`` and ``FrEIA.distributions`` (FrEIA's layout); other ``FrEIA.*`` names raise
``ModuleNotFoundError``. It is a ``sys.meta_path`` finder placed first, so it also shadows a real
FrEIA that is installed but not yet imported. If a real FrEIA is already imported,
:func:`install_freia_alias` raises ``RuntimeError`` unless ``force=True``, which sets the
imported modules aside (objects created from them keep the real classes) until
:func:`uninstall_freia_alias` puts them back.

While the alias is installed, ``PermuteRandom(seed=s)`` also reseeds numpy's global generator
(``np.random.seed(s)``) before drawing, as FrEIA does: FrEIA code may rely on that side effect,
e.g. vislearn's GIN experiments draw each block's seed and then their training data from
``np.random``. Plain ``invertible`` draws a seeded permutation from a local generator and leaves
numpy's global state alone. ``AllInOneBlock`` reseeds nothing in any FrEIA, so it has no such
switch: it draws its hard permutation with ``torch.randperm`` as FrEIA HEAD does (PyPI FrEIA 0.2
drew it with ``np.random.permutation``, so under 0.2 it also advanced numpy's global generator).

A checkpoint trained with PyPI FrEIA 0.2 loads with :func:`load_freia_02_checkpoint`, which also
switches the network to the few formulas of 0.2 that HEAD changed, so that it computes what 0.2
computed; a checkpoint of FrEIA HEAD loads with plain ``load_state_dict``.

One-liners::

    python -m invertible.compat your_script.py --its --args   # a script
    python -m invertible.compat -m some.module --its --args   # a module, like python -m

or, first thing in a program: ``import invertible.compat; invertible.compat.install_freia_alias()``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Dict, List, Optional

from ..modules import fixed_transforms
from ._migration import load_freia_02_checkpoint

__all__ = [
    "ALIAS",
    "freia_alias",
    "freia_alias_installed",
    "install_freia_alias",
    "load_freia_02_checkpoint",
    "main",
    "uninstall_freia_alias",
]

#: The name that is aliased, and the package it resolves to.
ALIAS = "FrEIA"
TARGET = "invertible"
#: Subpackages/modules of FrEIA's layout that the alias maps (with everything below them).
MIRRORED = ("framework", "modules", "utils", "distributions")

USAGE = (
    "usage: python -m invertible.compat SCRIPT.py [ARGS...]\n"
    "       python -m invertible.compat -m MODULE [ARGS...]\n"
    "Runs SCRIPT (or MODULE, as python -m does) with `import FrEIA...` resolving to invertible."
)


def _is_alias_name(name: str) -> bool:
    """Whether ``name`` is ``FrEIA`` or a dotted name below it."""
    return name == ALIAS or name.startswith(ALIAS + ".")


def _target_name(name: str) -> str:
    """``FrEIA.x.y -> invertible.x.y``; ``ModuleNotFoundError`` outside the mirrored layout."""
    parts = name.split(".")
    if len(parts) > 1 and parts[1] not in MIRRORED:
        raise ModuleNotFoundError(
            f"No module named {name!r}: the FrEIA alias of invertible.compat maps only FrEIA, "
            f"FrEIA.{{{','.join(MIRRORED)}}} and their submodules to invertible.",
            name=name,
        )
    return ".".join([TARGET, *parts[1:]])


class _AliasLoader(importlib.abc.Loader):
    """Hands out the already imported ``invertible`` module instead of loading a new one."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: Optional[importlib.machinery.ModuleSpec] = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        """The target module itself (imported now if it was not)."""
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run; undo the import system's ``__spec__`` overwrite on the target."""
        if self._spec is not None:
            module.__spec__ = self._spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``FrEIA[.x...]`` to the ``invertible`` module of the same path."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]] = None, target: object = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        """A spec whose loader returns the ``invertible`` module; ``None`` for other names."""
        if not _is_alias_name(fullname):
            return None
        real = _target_name(fullname)
        real_spec = importlib.util.find_spec(real)
        if real_spec is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: the FrEIA alias maps it to {real!r}, which does "
                f"not exist.",
                name=fullname,
            )
        is_package = real_spec.submodule_search_locations is not None
        return importlib.util.spec_from_loader(
            fullname, _AliasLoader(real), is_package=is_package
        )


_FINDER = _AliasFinder()
#: Real FrEIA modules set aside by ``install_freia_alias(force=True)``.
_SET_ASIDE: Dict[str, ModuleType] = {}


def freia_alias_installed() -> bool:
    """Whether the FrEIA alias is active in this process."""
    return _FINDER in sys.meta_path


def _is_target_module(module: object) -> bool:
    """Whether ``module`` is ``invertible`` or one of its submodules."""
    name = getattr(module, "__name__", None)
    return isinstance(name, str) and (name == TARGET or name.startswith(TARGET + "."))


def _imported_real_freia() -> Dict[str, ModuleType]:
    """``sys.modules`` entries under ``FrEIA`` that are not ``invertible`` modules."""
    return {
        name: module
        for name, module in list(sys.modules.items())
        if _is_alias_name(name) and module is not None and not _is_target_module(module)
    }


def _mirrored_modules() -> List[str]:
    """``FrEIA`` names of every module under the mirrored ``invertible`` subpackages."""
    import pkgutil

    names = [ALIAS]
    for sub in MIRRORED:
        package = importlib.import_module(f"{TARGET}.{sub}")
        names.append(f"{ALIAS}.{sub}")
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"{ALIAS}.{sub}."):
            names.append(info.name)
    return names


def install_freia_alias(force: bool = False) -> None:
    """Make ``import FrEIA...`` resolve to ``invertible`` in this process (idempotent).

    Every module of FrEIA's layout is registered in ``sys.modules`` right away (so
    ``sys.modules["FrEIA.modules.base"] is invertible.modules.base``); other imports below
    the mirrored packages resolve lazily through the finder. A seeded ``PermuteRandom`` then
    reseeds numpy's global generator, as FrEIA's does.

    Args:
        force: if a real FrEIA is already imported, set its modules aside (restored by
            :func:`uninstall_freia_alias`) instead of raising.

    Raises:
        RuntimeError: a real FrEIA is already imported and ``force`` is false; aliasing then
            would mix two different ``InvertibleModule`` classes in one process.
    """
    real = _imported_real_freia()
    if real and not force:
        where = getattr(real.get(ALIAS), "__file__", None) or "an unknown location"
        raise RuntimeError(
            f"install_freia_alias: the real FrEIA is already imported (from {where}; "
            f"{len(real)} module(s) in sys.modules). Call install_freia_alias() before anything "
            f"imports FrEIA, or pass force=True to set the real FrEIA aside (objects built from it "
            f"keep FrEIA's classes)."
        )
    for name, module in real.items():
        _SET_ASIDE.setdefault(name, module)
        del sys.modules[name]
    for name in [n for n, m in sys.modules.items() if _is_alias_name(n) and m is None]:
        del sys.modules[name]  # negative cache entries would block the alias
    if not freia_alias_installed():
        sys.meta_path.insert(0, _FINDER)
    fixed_transforms.reseed_global_numpy = True  # FrEIA's np.random.seed(seed) side effect
    importlib.invalidate_caches()
    for name in _mirrored_modules():
        importlib.import_module(name)


def uninstall_freia_alias() -> None:
    """Remove the alias: drop the aliased ``sys.modules`` entries and the finder, and restore
    any real FrEIA modules set aside by ``install_freia_alias(force=True)`` (idempotent)."""
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    fixed_transforms.reseed_global_numpy = False
    for name, module in list(sys.modules.items()):
        if _is_alias_name(name) and _is_target_module(module):
            del sys.modules[name]
    sys.modules.update(_SET_ASIDE)
    _SET_ASIDE.clear()
    importlib.invalidate_caches()


@contextlib.contextmanager
def freia_alias(force: bool = False) -> Iterator[None]:
    """Context manager: the alias inside the block, the previous state after it.

    Modules imported inside the block keep the ``invertible`` classes they bound.
    """
    was_installed = freia_alias_installed()
    install_freia_alias(force=force)
    try:
        yield
    finally:
        if not was_installed:
            uninstall_freia_alias()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m invertible.compat SCRIPT|-m MODULE [ARGS...]``: run it with the alias.

    Like ``python SCRIPT`` (the script's folder first on ``sys.path``) or ``python -m MODULE``.
    Returns 2 with a one-line error for a missing script or module.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not args or (args[0] == "-m" and len(args) < 2):
        print(USAGE, file=sys.stderr)
        return 2
    if args[0] == "-m":
        if importlib.util.find_spec(args[1]) is None:
            print(f"invertible.compat: no module named {args[1]!r}", file=sys.stderr)
            return 2
        install_freia_alias()
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    script = os.path.abspath(args[0])
    if not os.path.isfile(script):
        print(f"invertible.compat: no such script: {args[0]!r}", file=sys.stderr)
        return 2
    install_freia_alias()
    sys.argv = list(args)
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
    return 0

