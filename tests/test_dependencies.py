"""pyproject.toml declares what tap_conversations/ imports, and nothing it does not.

Every `import` and `from ... import` in the package (read with `ast`, so imports inside
functions count too) is mapped to the distributions that provide it
(`importlib.metadata.packages_distributions`, from the installed environment). A third-party
module no declared runtime dependency provides fails the first test; a declared runtime
dependency that no module imports fails the second.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tap_conversations"

#: Declared runtime dependencies that are needed without being imported, each with its reason.
NEEDED_WITHOUT_IMPORT: dict[str, str] = {}


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them (`PyJWT` = `pyjwt`, `a_b` = `a-b`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    """The distribution names of `[project] dependencies` (extras and versions dropped)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = (re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", dep) for dep in project["dependencies"])
    return {normalized(name.group(0)) for name in names if name}


def imported_modules() -> dict[str, list[str]]:
    """Top-level module imported -> the files that import it (relative imports left out)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def third_party() -> dict[str, list[str]]:
    return {
        module: files
        for module, files in imported_modules().items()
        if module not in sys.stdlib_module_names and module not in {"tap_conversations"}
    }


def test_the_imports_are_found() -> None:
    # The test below can only be as good as this: the package's known imports are all seen.
    modules = imported_modules()
    assert {"singer_sdk", "requests", "tap_conversations", "json"} <= set(modules)


def test_every_imported_third_party_module_is_a_declared_dependency() -> None:
    providers = importlib.metadata.packages_distributions()
    runtime = declared()
    undeclared = []
    for module, files in sorted(third_party().items()):
        distributions = {normalized(d) for d in providers.get(module, [])}
        if not distributions & runtime:
            found = ", ".join(sorted(distributions)) or "no installed distribution"
            undeclared.append(f"{module} ({found}; imported in {files[0]})")
    assert not undeclared, (
        "imported but not a [project] dependency in pyproject.toml: " + "; ".join(undeclared)
    )


def test_every_declared_dependency_is_imported() -> None:
    providers = importlib.metadata.packages_distributions()
    used = {normalized(d) for module in third_party() for d in providers.get(module, [])}
    unused = sorted(declared() - used - set(NEEDED_WITHOUT_IMPORT))
    assert not unused, f"declared in pyproject.toml but never imported: {', '.join(unused)}"


def test_backoff_is_declared_as_the_distribution_the_sdk_installs() -> None:
    # singer-sdk 0.54 depends on `python-backoff`; the older `backoff` distribution installs the
    # same module, and with both installed each overwrites the other's files.
    assert "python-backoff" in declared()
    assert "backoff" not in declared()
