"""Install check: the Dagster packages agree on one release, and every integration a configuration names imports.

Run by `./hydra` right after it installs (and by `hydra doctor`), so a broken resolution fails in seconds
instead of in a test's 20th minute: pip once resolved the newest dagster with a 2021 dagster-mysql that
imports `dagster.core` and fails only when a MySQL-backed instance is loaded.

Dagster publishes its core packages as 1.X.N and its integrations as 0.(X+16).N from the same commit, so
dagster 1.13.27 pairs with dagster-mysql 0.29.27.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

import yaml

# Core packages versioned like dagster itself; the rest of the family are integrations (0.X.N).
DAGSTER_CORE = ("dagster", "dagster-webserver", "dagster-graphql", "dagster-pipes", "dagster-shared")
DAGSTER_INTEGRATIONS = ("dagster-mysql", "dagster-postgres", "dagster-celery", "dagster-k8s")
INTEGRATION_MINOR_OFFSET = 16
# Always needed: the webserver, and the MySQL storage that production (deploy/dagster-mysql.yaml) names.
REQUIRED_MODULES = ("dagster", "dagster_webserver", "dagster_graphql", "dagster_mysql")
# The `distributed` extra: Celery workers and the Kubernetes run launcher (deploy/).
OPTIONAL_MODULES = ("dagster_celery", "dagster_k8s")


def core_release(package: str, version: str) -> str | None:
    """The dagster core release a package version belongs to ('1.13.27'), or None for a version we cannot read."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:\S*)", version)
    if not match:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    if package in DAGSTER_CORE:
        return f"{major}.{minor}.{patch}"
    if major == 0:
        return f"1.{minor - INTEGRATION_MINOR_OFFSET}.{patch}"
    return f"{major}.{minor}.{patch}"  # an integration that moved to 1.x numbering one day


def release_mismatches(versions: Mapping[str, str]) -> list[str]:
    """One line per Dagster package whose release differs from dagster's own (empty: they agree)."""
    if "dagster" not in versions:
        return ["dagster is not installed"]
    expected = core_release("dagster", versions["dagster"])
    problems = []
    for package, version in sorted(versions.items()):
        release = core_release(package, version)
        if release != expected:
            problems.append(f"{package} {version} belongs to dagster {release or '?'}, not {expected}")
    return problems


def installed_dagster_versions() -> dict[str, str]:
    """Installed versions of the Dagster family this project uses or documents."""
    versions = {}
    for package in DAGSTER_CORE + DAGSTER_INTEGRATIONS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def classes_named_in(config_files: Iterable[Path]) -> set[tuple[str, str]]:
    """(module, class) pairs that Dagster instance configurations load (`module:` / `class:` entries)."""
    pairs: set[tuple[str, str]] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("module"), str):
                pairs.add((node["module"], str(node.get("class", ""))))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in config_files:
        if path.is_file():
            walk(yaml.safe_load(path.read_text()))
    return pairs


def import_problems(classes: Iterable[tuple[str, str]], *, optional: Iterable[str] = ()) -> list[str]:
    """One line per module (or class in it) that fails to load; modules under an `optional` top-level
    package are checked only where that package is installed."""
    optional = set(optional)
    problems = []
    for module, class_name in sorted(set(classes)):
        top = module.split(".")[0]
        if top in optional and importlib.util.find_spec(top) is None:
            continue
        try:
            loaded = importlib.import_module(module)
        except Exception as error:  # any failure to import is what this check is for
            problems.append(f"import {module} failed: {type(error).__name__}: {error}")
            continue
        if class_name and not hasattr(loaded, class_name):
            problems.append(f"{module} has no {class_name}")
    return problems


def check_installation(project_root: Path | None = None) -> list[str]:
    """Everything wrong with this installation, as lines a person can act on (empty: all good).

    Imports the integrations named by the shipped instance configurations (`dagster.yaml`, `deploy/*.yaml`)
    and, when installed, the distributed-mode ones (`dagster_celery`, `dagster_k8s`).
    """
    root = project_root or Path(__file__).resolve().parent.parent
    configs = [root / "dagster.yaml", *sorted((root / "deploy").glob("*.yaml"))]
    required = {(module, "") for module in REQUIRED_MODULES}
    # deploy/ documents the Kubernetes and Celery variants: checked where the `distributed` extra is installed
    optional = {(module, "") for module in OPTIONAL_MODULES}
    problems = release_mismatches(installed_dagster_versions())
    problems += import_problems(required | optional | classes_named_in(configs), optional=OPTIONAL_MODULES)
    return problems


def main() -> int:
    problems = check_installation()
    if problems:
        print("hydra: the installation is broken:")
        for line in problems:
            print(f"  - {line}")
        print("A package problem: reinstall from the lock (rm -rf .venv; ./hydra --help), pins in constraints.txt "
              "(README 'Development'). A configuration problem: fix the module or class it names.")
        return 1
    versions = installed_dagster_versions()
    print("install check ok: " + ", ".join(f"{p} {v}" for p, v in sorted(versions.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
