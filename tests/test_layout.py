"""The package's shape holds: each tier imports only the tiers below it, no import circles, W&B in one module,
modules small enough to read in one sitting (a matter for review: ../shared/STYLE.md, no line count here)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = SRC / "poolbench"

# what each part of the package may import from poolbench (besides itself); see README "Layout"
ALLOWED = {
    "poolbench.errors": set(),  # the user's errors: every tier raises them
    "poolbench.settings": set(),  # the reader components' own config checks are built on
    "poolbench.cache": set(),  # cache entries made once, checked when opened: every tier keeps caches
    "poolbench.record": set(),  # the run record: plain Python, the base of everything that reads or writes runs
    "poolbench.tracking": {"poolbench.record"},
    "poolbench.model": set(),  # the bottom tier: encoder, poolers, layers, classifier
    "poolbench.data": set(),  # the bottom tier: data modules
    "poolbench.analysis": {"poolbench.record", "poolbench.tracking"},
    "poolbench.run": {
        "poolbench.record",
        "poolbench.tracking",
        "poolbench.analysis",
        "poolbench.data",
        "poolbench.model",
    },
}
# `poolbench explain` loads a trained model: the one place where analysis reads the model tier
EXCEPTIONS = {("poolbench.analysis.explain", "poolbench.model.build")}
ENTRIES = {"poolbench", "poolbench.__main__", "poolbench.cli"}  # registering resolvers; the command line


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: dict[str, Path] | None = None) -> set[str]:
    """Every module imported anywhere in the file (lazy imports inside functions included); ``from a import b``
    imports ``a.b`` when that is one of the ``known`` modules, else ``a``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if known and sub in known else node.module)
    return found


def poolbench_imports(path: Path, known: dict[str, Path]) -> set[str]:
    return {m for m in imports(path, known) if m in known and m != "poolbench"}


EVERYWHERE = {"poolbench.errors", "poolbench.cache", "poolbench.settings"}


def tier(module: str) -> str | None:
    return next((t for t in ALLOWED if module == t or module.startswith(t + ".")), None)


def test_each_tier_imports_only_the_tiers_below_it():
    known = modules()
    assert {tier(m) for m in known if m not in ENTRIES} == set(ALLOWED)  # every module belongs to a tier
    wrong = []
    for module, path in known.items():
        if module in ENTRIES:
            continue
        own = tier(module)
        for target in poolbench_imports(path, known):
            allowed = ALLOWED[own] | EVERYWHERE
            if tier(target) != own and tier(target) not in allowed and (module, target) not in EXCEPTIONS:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_there_are_no_import_circles():
    known = modules()
    graph = {m: poolbench_imports(p, known) - {m} for m, p in known.items() if m not in ENTRIES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path, m, n]
            if n not in state and (cycle := visit(n, [*path, m])):
                return cycle
        state[m] = 2
        return None

    for m in graph:
        if m not in state:
            assert visit(m, []) is None


def test_only_tracking_talks_to_wandb():
    users = {m for m, p in modules().items() if any(i == "wandb" or i.startswith("wandb.") for i in imports(p))}
    users |= {m for m, p in modules().items() if "WandbLogger" in p.read_text()}
    assert users == {"poolbench.tracking"}
