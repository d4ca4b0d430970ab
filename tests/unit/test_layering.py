"""The layering check `make lint` runs (tools/import_layers.py), and the host side's own reading of the
runtime catalogue that keeps runtime/hostruntimes.py (and sandbox/ through it) off services/."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import grimp
import pytest

from lambdalet.runtime.hostruntimes import managed_runtimes
from lambdalet.services.runtimes import default_catalogue

TOOL = Path(__file__).resolve().parents[2] / "tools" / "import_layers.py"


@pytest.fixture(scope="module")
def layers():
    spec = importlib.util.spec_from_file_location("import_layers", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    g = grimp.ImportGraph()
    for n, (importer, imported) in enumerate(imports, 1):
        g.add_import(importer=importer, imported=imported, line_number=n, line_contents=f"import {imported}")
    return g


def test_an_import_up_the_page_is_reported_with_its_line(layers):
    g = _graph(("lambdalet.kms.service", "lambdalet.api.app"),        # up: a domain package into api/
               ("lambdalet.api.app", "lambdalet.kms.service"),        # down
               ("lambdalet.events.esm", "lambdalet.invoke.invoker"),  # one tier: allowed both ways
               ("lambdalet.invoke.invoker", "lambdalet.events.esm"))
    assert layers.upward_imports(g) == [("lambdalet.kms.service", "lambdalet.api.app", 1)]


def test_sandbox_into_services_is_upward_and_models_into_anything_is(layers):
    g = _graph(("lambdalet.sandbox.namespace", "lambdalet.services.runtimes"),
               ("lambdalet.models.errors", "lambdalet.store.db"))
    assert [i[:2] for i in layers.upward_imports(g)] == [
        ("lambdalet.models.errors", "lambdalet.store.db"),
        ("lambdalet.sandbox.namespace", "lambdalet.services.runtimes")]


def test_a_package_without_a_tier_is_refused_not_ignored(layers):
    with pytest.raises(SystemExit, match="no tier"):
        layers.upward_imports(_graph(("lambdalet.newpkg.mod", "lambdalet.models.errors")))


def test_every_package_of_the_tree_has_a_tier(layers):
    src = Path(__file__).resolve().parents[2] / "src" / "lambdalet"
    for p in src.iterdir():
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py"):
            assert layers.tier_of(f"lambdalet.{p.stem}.x") is not None


def test_the_host_side_reads_the_same_managed_runtimes_as_the_catalogue():
    assert managed_runtimes() == default_catalogue().managed()
    assert "provided.al2023" in managed_runtimes()
