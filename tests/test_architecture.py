"""The layers of the code, as the README's architecture section draws them, checked on every import.

Bottom to top: the MoeGo messages and helpers; the archive (its one owner); configuration and the
client; the collector's work (sync, the pass, actions, scheduler, alerts); and on top, side by side,
the CLI and the dashboard. An import may only go down (or stay within its own layer). The sandbox is
a separate program that the product reaches only from the CLI's ``sandbox``/``demo`` commands, lazily.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Module-name prefixes and their layer, most specific first.
LAYERS: list[tuple[str, int]] = [
    ("collectors.cli", 5),
    ("collectors.__main__", 5),
    ("dashboard", 5),
    ("collectors.archive", 1),
    ("collectors.models", 0),
    ("collectors.redaction", 0),
    ("collectors.signature", 0),
    ("collectors.bodies", 0),
    ("collectors.validate", 0),  # pure checks of MoeGo's answers against the contract
    ("collectors.overlap", 0),  # pure: a webhook's re-read span from its retry policy
    ("collectors.skew", 0),  # pure: the clock-skew rules
    ("collectors.pacing", 0),  # pure: a pass's 429 gate and AIMD limit, shared by its workers (threads, no I/O)
    ("collectors.config", 2),
    ("collectors.access", 2),  # the console's login settings, read with the rest of the configuration
    ("collectors.client", 2),
    ("collectors", 3),  # sync, collect, redelivery, bulk, ratelimit, trigger, scheduler, alerts, ...
]
PROJECT = ("collectors", "dashboard", "sandbox")


def layer(module: str) -> int:
    if module == "collectors":
        return 0  # the package itself holds only __version__
    for prefix, rank in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module} has no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """Every project module ``path`` imports, and whether the import is lazy (inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    lazy_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            targets = [f"{root}.{alias.name}" if _is_module(f"{root}.{alias.name}") else root for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PROJECT:
                found.append((target, id(node) in lazy_nodes))
    return found


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("collectors", "dashboard"), ids=lambda p: module_name(p))
def test_imports_only_go_down(path: Path) -> None:
    here = module_name(path)
    for target, lazy in imports(path):
        if target.startswith("sandbox"):
            assert here == "collectors.cli" and lazy, f"{here} imports {target}: only the CLI's demo hand-off may, lazily"
            continue
        assert not (here.startswith("collectors") and target.startswith("dashboard")), f"{here} imports {target}"
        assert not (here.startswith("dashboard") and (target == "collectors.cli" or target.startswith("collectors.cli."))), \
            f"{here} imports {target}"
        assert layer(target) <= layer(here), f"{here} (layer {layer(here)}) imports {target} (layer {layer(target)})"


def test_only_the_read_layer_opens_the_archive_in_the_dashboard() -> None:
    opening = re.compile(r"(\.connect|\bopen_archive)\(")
    openers = [module_name(p) for p in sources("dashboard") if opening.search(p.read_text(encoding="utf-8"))]
    assert openers == ["dashboard.reads"]


def test_no_page_builds_a_client_writes_or_runs_sql() -> None:
    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET)\b")
    for path in sources("dashboard"):
        name = module_name(path)
        text = path.read_text(encoding="utf-8")
        assert "make_client" not in text and "MoeGoClient" not in text, f"{name} builds a client"
        assert "transaction(" not in text, f"{name} writes"
        if name not in ("dashboard.queries", "dashboard.stats"):  # the pure queries, run only by dashboard.reads
            assert not sql.search(text), f"{name} runs SQL"


def test_the_library_never_imports_its_command_line() -> None:
    for path in sources("collectors"):
        here = module_name(path)
        if here.startswith("collectors.cli") or here == "collectors.__main__":
            continue
        cli = [t for t, _ in imports(path) if t == "collectors.cli" or t.startswith("collectors.cli.")]
        assert not cli, f"{here} imports the CLI"
