"""The FrEIA alias: FrEIA-style third-party code runs on `invertible` without being edited.

Works whether or not the real FrEIA is installed: every test runs in a sandbox that sets aside
all ``FrEIA*`` entries of ``sys.modules`` (and the FrEIA-style test module) and restores them.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Dict, Iterator, Sequence

import numpy as np
import pytest
import torch

import invertible
import invertible.distributions
import invertible.framework
import invertible.modules
import invertible.utils
from invertible import compat
from invertible.compat import (
    freia_alias,
    freia_alias_installed,
    install_freia_alias,
    main,
    uninstall_freia_alias,
)

TESTS = Path(__file__).resolve().parent
STYLE_MODULE = "freia_style_code"


def _alias_entries() -> Dict[str, types.ModuleType]:
    return {
        name: module for name, module in sys.modules.items()
        if name == "FrEIA" or name.startswith("FrEIA.") or name == STYLE_MODULE
    }


@pytest.fixture(autouse=True)
def sandbox() -> Iterator[None]:
    """Set aside every FrEIA module (real or alias) and restore them, whatever the test did."""
    saved = _alias_entries()
    for name in saved:
        del sys.modules[name]
    try:
        yield
    finally:
        uninstall_freia_alias()
        for name in _alias_entries():
            del sys.modules[name]
        sys.modules.update(saved)


def _invertible_modules() -> Dict[str, types.ModuleType]:
    """Every module under invertible.framework and .modules, plus utils and distributions."""
    names = ["invertible.utils", "invertible.distributions", "invertible.framework",
             "invertible.modules"]
    for package in (invertible.framework, invertible.modules, invertible.distributions):
        names += [info.name for info in
                  pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return {name: importlib.import_module(name) for name in names}


def test_every_import_form_resolves_to_invertible() -> None:
    install_freia_alias()
    import FrEIA
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm
    import FrEIA.modules.base
    from FrEIA.framework import GraphINN
    from FrEIA.modules import AllInOneBlock, InvertibleModule

    assert FrEIA is invertible
    assert Ff is invertible.framework and Fm is invertible.modules
    assert InvertibleModule is invertible.modules.InvertibleModule
    assert FrEIA.modules.InvertibleModule is invertible.modules.InvertibleModule
    assert AllInOneBlock is invertible.modules.AllInOneBlock
    assert GraphINN is invertible.framework.GraphINN
    assert FrEIA.modules.base is invertible.modules.base
    assert FrEIA.framework.graph_inn is invertible.framework.graph_inn
    assert importlib.import_module("FrEIA.utils") is invertible.utils
    assert importlib.import_module("FrEIA.distributions") is invertible.distributions
    for name, module in _invertible_modules().items():
        alias = "FrEIA" + name[len("invertible"):]
        assert sys.modules[alias] is module, alias
        assert importlib.import_module(alias) is module
        assert module.__spec__ is not None and module.__spec__.name == name  # not overwritten


def test_names_outside_freias_layout_are_not_found() -> None:
    install_freia_alias()
    with pytest.raises(ModuleNotFoundError, match="maps only FrEIA"):
        importlib.import_module("FrEIA.demo")
    with pytest.raises(ModuleNotFoundError, match=r"maps it to 'invertible\.modules\.nope'"):
        importlib.import_module("FrEIA.modules.nope")


def test_an_imported_real_freia_is_not_clobbered_silently() -> None:
    fake = types.ModuleType("FrEIA")
    fake.__file__ = "/site-packages/FrEIA/__init__.py"
    sys.modules["FrEIA"] = fake
    with pytest.raises(RuntimeError, match=r"real FrEIA is already imported .*force=True"):
        install_freia_alias()
    assert not freia_alias_installed() and sys.modules["FrEIA"] is fake
    install_freia_alias(force=True)
    assert importlib.import_module("FrEIA") is invertible
    uninstall_freia_alias()
    assert sys.modules["FrEIA"] is fake
    assert not any(n.startswith("FrEIA.") for n in sys.modules)


def test_uninstall_restores_the_real_import_and_is_idempotent() -> None:
    real_spec = importlib.util.find_spec("FrEIA")  # the real FrEIA, if installed
    with freia_alias():
        assert importlib.import_module("FrEIA") is invertible
        with freia_alias():  # nested: the outer block stays in charge
            pass
        assert freia_alias_installed()
    assert not freia_alias_installed() and "FrEIA" not in sys.modules
    uninstall_freia_alias()
    install_freia_alias()
    install_freia_alias()
    assert sys.meta_path.count(compat._FINDER) == 1
    uninstall_freia_alias()
    if real_spec is None:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("FrEIA")
    else:
        assert importlib.import_module("FrEIA") is not invertible


def _import_style_code() -> types.ModuleType:
    install_freia_alias()
    return importlib.import_module(STYLE_MODULE)


def _round_trip(model: torch.nn.Module, xs: list, c: Sequence = ()) -> tuple:
    cond = list(c) or None
    with torch.no_grad():
        z, log_det = model(xs if len(xs) > 1 else xs[0], c=cond)
        x_rev, log_det_rev = model(z, c=cond, rev=True)
    x_rev = list(x_rev) if isinstance(x_rev, (list, tuple)) else [x_rev]
    for x, back in zip(xs, x_rev):
        torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_det_rev, -log_det, atol=1e-5, rtol=1e-5)
    return z, log_det


def test_fastflow_and_cflow_style_sequences() -> None:
    style = _import_style_code()
    torch.manual_seed(0)
    fast, cflow = style.fastflow_style(), style.cflow_style()
    assert isinstance(fast, invertible.framework.SequenceINN)
    assert all(isinstance(m, invertible.modules.AllInOneBlock) for m in cflow.module_list)
    z, log_det = _round_trip(fast, [torch.randn(3, 4, 8, 8)])
    assert isinstance(z, torch.Tensor) and z.shape == (3, 4, 8, 8) and log_det.shape == (3,)
    _round_trip(cflow, [torch.randn(3, 6)], [torch.randn(3, 3)])


def test_uflow_style_multiscale_graph() -> None:
    style = _import_style_code()
    torch.manual_seed(0)
    graph = style.uflow_style()
    kinds = {type(n.module) for n in graph.node_list if n.module is not None}
    assert {invertible.modules.IRevNetUpsampling, invertible.modules.Split,
            invertible.modules.Concat, invertible.modules.AllInOneBlock} <= kinds
    xs = [torch.randn(2, *shape) for shape in style.UFLOW_SCALES]
    z, log_det = _round_trip(graph, xs)
    assert isinstance(z, tuple) and [tuple(t.shape[1:]) for t in z] == [
        (4, 2, 2), (4, 4, 4), (4, 8, 8)
    ]
    assert log_det.shape == (2,)


def test_csflow_style_custom_three_input_block() -> None:
    style = _import_style_code()
    assert issubclass(style.CrossScaleCoupling, invertible.modules.InvertibleModule)
    torch.manual_seed(0)
    graph = style.csflow_style()
    xs = [torch.randn(2, *shape) for shape in style.CSFLOW_SCALES]
    z, log_det = _round_trip(graph, xs)
    assert isinstance(z, tuple) and [t.shape for t in z] == [x.shape for x in xs]
    assert log_det.shape == (2,) and bool((log_det != 0).all())
    flip = graph.get_module_by_name("flip_1")
    assert flip.output_dims(flip.dims_in) == list(style.CSFLOW_SCALES)


def test_command_line_runs_a_script_and_a_module(monkeypatch, capsys) -> None:
    """``python -m invertible.compat SCRIPT`` and ``... -m MODULE``, in-process."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main([str(TESTS / f"{STYLE_MODULE}.py")]) == 0
    assert "FrEIA is invertible" in capsys.readouterr().out
    assert main(["-m", STYLE_MODULE]) == 0
    assert "csflow: invertible.framework" in capsys.readouterr().out


def test_command_line_errors_are_one_line(capsys) -> None:
    assert main([]) == 2 and "usage:" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "usage:" in capsys.readouterr().out
    assert main(["no_such_script.py"]) == 2
    assert capsys.readouterr().err == "invertible.compat: no such script: 'no_such_script.py'\n"
    assert main(["-m", "no_such_module_xyz"]) == 2
    assert "no module named 'no_such_module_xyz'" in capsys.readouterr().err
    assert not freia_alias_installed()


def test_one_liner_in_a_fresh_interpreter() -> None:
    """The documented one-liner, end to end, in a new process (the real FrEIA may be there)."""
    done = subprocess.run(
        [sys.executable, "-m", "invertible.compat", str(TESTS / f"{STYLE_MODULE}.py")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "FrEIA is invertible" in done.stdout
    assert done.stdout.count("round trip") == 4


def _run(*args: str) -> subprocess.CompletedProcess:
    """``python -W default ARGS`` in a fresh interpreter (every warning shown on stderr)."""
    return subprocess.run([sys.executable, "-W", "default", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_command_line_runs_one_copy_of_compat_without_warnings(tmp_path: Path) -> None:
    """``python -m invertible.compat`` runs the imported package's own ``main`` (its
    ``__main__`` submodule), not a second copy of ``invertible.compat`` as ``__main__``: runpy
    warned about that copy, and its alias finder was not the one ``invertible.compat`` knew."""
    script = tmp_path / "which_alias.py"
    script.write_text("import FrEIA, invertible, invertible.compat as c\n"
                      "print(FrEIA is invertible, c.freia_alias_installed())\n")
    done = _run("-m", "invertible.compat", str(script))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
    assert done.stderr == ""


#: vislearn's GIN experiments: each PermuteRandom's seed from np.random, then the data from it.
GIN_STYLE = """
import json
import numpy as np
import FrEIA.modules as Fm
np.random.seed(0)
perms = [Fm.PermuteRandom([(8,)], seed=np.random.randint(2**31)).perm.tolist()
         for _ in range(16)]
print(json.dumps({"perms": perms, "data": np.random.randn(4, 3).tolist()}))
"""


def _freia_numpy_draws(reseed: bool) -> dict:
    """What GIN_STYLE prints, from numpy alone: FrEIA reseeds the global generator with each
    block's seed (``reseed``); plain ``invertible`` draws from ``RandomState(seed)``."""
    np.random.seed(0)
    perms = []
    for _ in range(16):
        seed = np.random.randint(2**31)
        if reseed:
            np.random.seed(seed)
        perms.append((np.random if reseed else np.random.RandomState(seed)).permutation(8))
    return {"perms": [p.tolist() for p in perms], "data": np.random.randn(4, 3).tolist()}


def test_alias_reseeds_numpy_like_freia_for_gin_style_code(tmp_path: Path) -> None:
    """Under the alias a seeded PermuteRandom reseeds numpy's global generator as FrEIA does, so
    GIN-style code gets FrEIA's permutations and data; plain ``invertible`` does not reseed."""
    script = tmp_path / "gin_style.py"
    script.write_text(GIN_STYLE)
    aliased = _run("-m", "invertible.compat", str(script))
    assert aliased.returncode == 0, aliased.stderr
    freia = _freia_numpy_draws(reseed=True)
    assert json.loads(aliased.stdout) == freia
    real = importlib.util.find_spec("FrEIA")
    if real is not None and "invertible" not in (real.origin or ""):  # the real PyPI FrEIA
        done = _run(str(script))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == freia
    plain = tmp_path / "plain.py"
    plain.write_text(GIN_STYLE.replace("import FrEIA.modules as Fm", "import invertible.modules "
                                       "as Fm"))
    done = _run(str(plain))
    assert done.returncode == 0, done.stderr
    ours = json.loads(done.stdout)
    assert ours == _freia_numpy_draws(reseed=False)
    assert sum(a != b for a, b in zip(ours["perms"], freia["perms"])) > 10
    assert ours["data"] != freia["data"]


def test_reseeding_is_switched_by_the_alias_only() -> None:
    """In one process: the alias switches the reseeding on, uninstalling it off again."""
    from invertible.modules import PermuteRandom

    def after_seeded_block() -> float:
        np.random.seed(0)
        PermuteRandom([(6,)], seed=3)
        return float(np.random.rand())

    untouched, reseeded = np.random.RandomState(0).rand(), np.random.RandomState(3)
    reseeded.permutation(6)
    assert after_seeded_block() == untouched
    with freia_alias():
        assert after_seeded_block() == reseeded.rand()
    assert after_seeded_block() == untouched
