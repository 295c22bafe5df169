"""The architecture, kept by a test: packages by concern in layers, lower never importing higher.

Read with ``docs/architecture.md``. Tiers, lowest first: a module may import from its own package
or from a lower tier, never from a higher one, never from a sibling package of the same tier
(journeys and risk are both tier 6 and know nothing of each other). ``cxdash`` imports sit at the
top of a module (an import inside a function hides a cycle), modules do not import each other in
a circle, and no module is longer than 800 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cxdash"
MAX_LINES = 800

TIERS: dict[str, int] = {
    "config": 0,
    "exporting": 0,
    "store": 1,
    "identity": 2,
    "ingest": 3,
    "metrics": 4,
    "governance": 5,
    "journeys": 6,
    "risk": 6,
    "jobs": 7,
    "demo": 8,
    "cli": 9,
    "ui": 9,
    "__main__": 10,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def package_of(module: str) -> str:
    """``cxdash.metrics.churn`` -> ``metrics``; ``cxdash.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cxdash_imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """Every cxdash module ``path`` imports: (module, line, at module top)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    # Imports under `if TYPE_CHECKING:` at module top count as top-level (they never run).
    for node in tree.body:
        if isinstance(node, ast.If):
            top_level.update(id(child) for child in node.body)
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from cxdash.metrics import churn` imports the module cxdash.metrics.churn.
            targets = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            ]
        for target in targets:
            if target == "cxdash" or target.startswith("cxdash."):
                found.append((target, node.lineno, id(node) in top_level))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int, bool]]]:
    known = set(modules())
    return {name: cxdash_imports(path, known) for name, path in modules().items()}


def test_every_package_has_a_tier():
    packages = {package_of(name) for name in modules()} - {""}
    assert packages <= set(TIERS), f"packages without a tier in this test: {sorted(packages - set(TIERS))}"


def test_nothing_imports_a_higher_tier_or_a_sibling_package(graph):
    wrong = []
    for importer, imports in graph.items():
        mine = package_of(importer)
        for target, line, _ in imports:
            theirs = package_of(target)
            if not theirs or theirs == mine:
                continue
            if TIERS[theirs] > TIERS[mine] or (TIERS[theirs] == TIERS[mine]):
                wrong.append(f"{importer}:{line} imports {target} (tier {TIERS[theirs]} from tier {TIERS[mine]})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_cxdash_imports_are_at_the_top_of_each_module(graph):
    local = [
        f"{importer}:{line} imports {target}"
        for importer, imports in graph.items()
        for target, line, top in imports
        if not top
    ]
    assert not local, "imports inside functions (they hide cycles):\n" + "\n".join(local)


def test_no_import_cycles_between_modules(graph):
    edges = {
        name: {target for target, _, _ in imports if target in graph and target != name}
        for name, imports in graph.items()
    }
    # A package's __init__ re-exports its modules; a module importing its own package's public
    # names is the same edge reversed, so only module-to-module edges count.
    edges = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_is_longer_than_800_lines():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_streamlit_is_imported_only_in_the_ui_package():
    offenders = []
    for name, path in modules().items():
        if package_of(name) == "ui":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"streamlit imported outside cxdash/ui: {offenders}"


def test_pages_are_views_that_import_only_the_ui_package():
    wrong = []
    for path in [*sorted((REPO / "pages").glob("*.py")), REPO / "app.py"]:
        for target, line, _ in cxdash_imports(path, set(modules())):
            if package_of(target) != "ui":
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not wrong, "pages reach past cxdash.ui:\n" + "\n".join(wrong)


def test_the_layer_check_sees_a_violation(tmp_path):
    """The checks above read real imports: a planted upward import is found."""
    planted = tmp_path / "planted.py"
    planted.write_text("from cxdash.jobs import summaries\n\ndef f():\n    from cxdash.metrics import churn\n")
    found = cxdash_imports(planted, set(modules()))
    assert ("cxdash.jobs.summaries", 1, True) in found
    assert ("cxdash.metrics.churn", 4, False) in found
