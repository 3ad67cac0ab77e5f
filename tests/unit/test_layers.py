"""The layers keep to their side (docs/architecture.md): the SQL is in store/, nothing else opens a
connection, and the dialects never touch storage at all.

Read from the source with ``ast``, so a new module that breaks a rule fails here by name. The benchmark
(``bench/``), which fills and counts its own database, is a tool beside the layers and not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "tillpay"
#: The layers above store/: use cases, the web apps, the dialects, the worker and the command line.
ABOVE_STORE = ("services", "web", "protocols", "worker", "cli", "client", "ecr")


def modules(*packages: str) -> list[Path]:
    return sorted(f for pkg in packages for f in (SRC / pkg).rglob("*.py"))


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def connection_handling(tree: ast.Module) -> list[str]:
    """``x.engine.connect()``, ``x.engine.begin()`` and ``x.rollback()`` calls, by line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, owner = node.func.attr, node.func.value
            on_engine = isinstance(owner, ast.Attribute) and owner.attr == "engine"
            if (attr in ("connect", "begin") and on_engine) or attr == "rollback":
                found.append((node.lineno, f"line {node.lineno}: .{attr}()"))
    return [text for _, text in sorted(found)]


def rel(path: Path) -> str:
    return str(path.relative_to(SRC))


@pytest.mark.parametrize("path", modules(*ABOVE_STORE), ids=rel)
def test_only_store_knows_the_tables(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert "tillpay.store.tables" not in imported(tree)


@pytest.mark.parametrize("path", modules(*ABOVE_STORE), ids=rel)
def test_nothing_above_store_opens_a_connection_or_rolls_back_by_hand(path: Path) -> None:
    # A use case works in p.unit_of_work() / p.reader(); only store/ (and its migrations) connects.
    assert connection_handling(ast.parse(path.read_text())) == []


@pytest.mark.parametrize("path", modules("protocols"), ids=rel)
def test_a_dialect_never_touches_storage(path: Path) -> None:
    store = {m for m in imported(ast.parse(path.read_text())) if m.startswith("tillpay.store")}
    assert store == set()


def test_the_checks_see_what_they_look_for() -> None:
    # The detectors themselves: a module that does each forbidden thing is caught.
    bad = ast.parse(
        "from tillpay.store import tables as t\n"
        "async def f(p):\n"
        "    async with p.engine.connect() as conn:\n"
        "        await conn.rollback()\n"
        "    async with p.engine.begin():\n"
        "        pass\n"
    )
    assert "tillpay.store.tables" in imported(bad)
    assert connection_handling(bad) == ["line 3: .connect()", "line 4: .rollback()", "line 5: .begin()"]
    assert len(modules(*ABOVE_STORE)) > 50
