"""The layer rules of docs/architecture.md, checked on every import statement (lazy ones included).

A forbidden import fails here with the module, the line and the rule it breaks, so the rooms stay rooms.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hydra_assets", "panel_app")
LONG_MODULE_LINES = 450
LONG_MODULE_REASON = "Long module:"  # the phrase a long module's docstring uses to say why it is one module

FOUNDATION = ("hydra_assets.settings", "hydra_assets.db")
DAGSTER_FACE = (
    "hydra_assets.definitions", "hydra_assets.partitions", "hydra_assets.warm_launcher",
    "hydra_assets.ingest.launcher",  # alias of warm_launcher for Dagster homes whose dagster.yaml names it
    "hydra_assets.assets", "hydra_assets.sensors", "hydra_assets.resources", "hydra_assets.jobs",
)
CLI = ("hydra_assets.cli",)
PAGES = ("panel_app",)
UI_LIBRARIES = ("panel", "bokeh", "param")
# Everything else under hydra_assets is domain. The pure rules (no framework at all, not even TensorFlow):
PURE = ("hydra_assets.rules", "hydra_assets.naming", "hydra_assets.ml.thresholds", "hydra_assets.ml.evaluation",
        "hydra_assets.ingest.scan", "hydra_assets.ingest.resubmit", "hydra_assets.masks",
        "hydra_assets.flags.rules", "hydra_assets.flags.standing",
        "hydra_assets.scores")  # the room for scores beside the classifier (docs/architecture.md)


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    lazy: bool  # inside a function: runs only when called


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[Import] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(Import(module, alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append(Import(module, base, child.lineno, lazy))
                # `from hydra_assets import catalog` imports the module hydra_assets.catalog
                found.extend(Import(module, f"{base}.{alias.name}", child.lineno, lazy) for alias in child.names
                             if f"{base}.{alias.name}" in MODULES)
            visit(child, inner)

    visit(tree, False)
    return found


MODULES = our_modules()
IMPORTS = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]


def layer(module: str) -> str:
    if within(module, CLI):
        return "cli"
    if within(module, PAGES):
        return "pages"
    if within(module, DAGSTER_FACE):
        return "dagster"
    if within(module, FOUNDATION):
        return "foundation"
    return "domain"


def violation(imp: Import) -> str | None:
    """The rule an import breaks, or None."""
    source, target = layer(imp.importer), imp.imported
    ours = within(target, PACKAGES)
    if within(target, CLI) and source != "cli":
        return "nothing imports the command line"
    if source == "foundation" and ours and not within(target, FOUNDATION):
        return "the foundation (settings, db) imports only itself"
    if source == "domain":
        if within(target, ("dagster", "dagster_webserver", "dagster_graphql", "dagster_mysql", "click",
                           *UI_LIBRARIES)):
            return "domain code imports neither Dagster, Panel nor click"
        if ours and layer(target) in ("dagster", "pages"):
            return "domain code imports neither the Dagster face nor the pages"
    if source == "dagster" and ours and layer(target) == "pages":
        return "the Dagster face never imports the pages"
    if source == "pages":
        if within(target, ("dagster",)) or (ours and layer(target) == "dagster"):
            return "pages read the Hydra database, never Dagster"
        store_side = within(imp.importer, ("panel_app.store", "panel_app.queries"))
        if within(target, ("panel_app.queries",)) and not store_side:
            return "pages go through the store, never panel_app.queries"
    outside_pure = ours and target != "hydra_assets" and not within(target, (*PURE, "hydra_assets.settings"))
    if within(imp.importer, PURE) and (outside_pure or within(target, ("tensorflow", "keras", "sqlalchemy",
                                                                       "mlflow"))):
        return "pure rules import no framework and no database"
    return None


def test_every_module_was_read():
    assert "hydra_assets.rules" in MODULES and "panel_app.store" in MODULES
    assert len(IMPORTS) > 300


def test_no_forbidden_import():
    broken = [f"{imp.importer}:{imp.line} imports {imp.imported}: {rule}"
              for imp in IMPORTS if (rule := violation(imp))]
    assert broken == [], "\n".join(broken)


@pytest.mark.parametrize(("importer", "imported", "rule"), [
    ("hydra_assets.ml.active", "hydra_assets.cli.common", "nothing imports the command line"),
    ("hydra_assets.ingest.feeder", "dagster", "domain code imports neither Dagster, Panel nor click"),
    ("hydra_assets.ml.training_set", "panel", "domain code imports neither Dagster, Panel nor click"),
    ("panel_app.pages.run", "panel_app.queries", "pages go through the store, never panel_app.queries"),
    ("panel_app.pages.run", "panel_app.queries.grid", "pages go through the store, never panel_app.queries"),
    ("panel_app.store", "hydra_assets.definitions", "pages read the Hydra database, never Dagster"),
    ("hydra_assets.settings", "hydra_assets.catalog", "the foundation (settings, db) imports only itself"),
    ("hydra_assets.rules", "tensorflow", "pure rules import no framework and no database"),
])
def test_the_rules_catch_what_they_forbid(importer, imported, rule):
    assert violation(Import(importer, imported, 1, lazy=False)) == rule


def test_allowed_imports_pass():
    for importer, imported in [("hydra_assets.cli.models", "hydra_assets.definitions"),
                               ("panel_app.store", "panel_app.queries"),
                               ("hydra_assets.assets.ingest", "hydra_assets.ingest.feeder"),
                               ("panel_app.pages.run", "hydra_assets.rules"),
                               ("hydra_assets.rules", "numpy")]:
        assert violation(Import(importer, imported, 1, lazy=False)) is None, (importer, imported)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles():
    edges: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if imp.imported in MODULES and imp.imported != imp.importer:
            # a package's __init__ importing its own modules is how packages expose names, not a cycle
            if imp.importer + "." in imp.imported + "." and MODULES[imp.importer].name == "__init__.py":
                continue
            edges.setdefault(imp.importer, set()).add(imp.imported)
    assert cycles(edges) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_long_modules_say_why():
    unexplained = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > LONG_MODULE_LINES and LONG_MODULE_REASON not in (ast.get_docstring(
                ast.parse(text)) or ""):
            unexplained.append(f"{module}: {len(text.splitlines())} lines")
    assert unexplained == [], unexplained
