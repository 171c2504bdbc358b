"""No module outside ``catalog/`` issues SQL or sets ORM row fields.

A static check over ``src/picpipe``: it parses every module outside ``catalog/`` and reports,
as ``path:line: code``, what only ``catalog/`` may do:

- import ``sqlite3``, or anything from ``sqlalchemy`` at run time (``sqlalchemy.exc`` to catch
  database errors, and imports under ``TYPE_CHECKING``, are fine);
- call ``execute``/``scalar``/``scalars``/``get``/``get_one``/``add``/``delete``… on a session
  or connection (a receiver named ``db``, ``session``, ``conn``, ``connection``, ``cursor``);
- assign a mapped column of an ORM row: a name bound from a session call or a ``catalog``
  function, a loop over one, or a parameter annotated with a model class.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import picpipe
from picpipe.catalog.models import Base

SRC = Path(picpipe.__file__).parent

# Modules allowed to write rows themselves for now (none: runs, leases and claims live in
# catalog/runs.py, the import's and sync's writes in catalog/queries.py and catalog/replicas.py).
# Modules whose catalog reads and writes still move into catalog/ (known, listed here so no
# new one joins them unnoticed).
PENDING_CATALOG_MOVES: frozenset[str] = frozenset(
    {"jobs/cards.py", "jobs/catalog_backup.py", "jobs/restore_catalog.py", "pipeline/dry_run.py"}
)

_SESSION_NAMES = frozenset({"db", "session", "conn", "connection", "cursor", "_db", "_conn"})
_SESSION_CALLS = frozenset(
    {
        "execute",
        "executemany",
        "executescript",
        "scalar",
        "scalars",
        "get",
        "get_one",
        "add",
        "add_all",
        "merge",
        "delete",
        "bulk_save_objects",
        "bulk_insert_mappings",
        "bulk_update_mappings",
    }
)
_MODELS = frozenset(m.class_.__name__ for m in Base.registry.mappers)
_COLUMNS = frozenset(attr.key for mapper in Base.registry.mappers for attr in mapper.column_attrs)


def _receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Checker(ast.NodeVisitor):
    def __init__(self, catalog_names: set[str]) -> None:
        self.catalog_names = catalog_names  # names imported from picpipe.catalog.*
        self.found: list[tuple[int, str]] = []
        self.rows: list[set[str]] = [set()]  # per function: names that hold ORM rows

    # -- imports -------------------------------------------------------------------------

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "sqlite3" or alias.name.split(".")[0] == "sqlalchemy":
                self.found.append((node.lineno, f"import {alias.name}"))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.split(".")[0] == "sqlalchemy" and module != "sqlalchemy.exc":
            self.found.append((node.lineno, f"from {module} import ..."))

    # -- calls and assignments -----------------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        rows = set(self.rows[-1])
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            if arg.annotation is not None and _MODELS & _names_in(arg.annotation):
                rows.add(arg.arg)
        self.rows.append(rows)
        self.generic_visit(node)
        self.rows.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 - the visitor's naming

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in _SESSION_CALLS
            and _receiver_name(func.value) in _SESSION_NAMES
        ):
            self.found.append((node.lineno, ast.unparse(node)[:80]))
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target, node.lineno)
        if self._yields_rows(node.value):
            for target in node.targets:
                self.rows[-1].update(_bound_names(target))
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_target(node.target, node.lineno)
        if (node.value is not None and self._yields_rows(node.value)) or (
            _MODELS & _names_in(node.annotation)
        ):
            self.rows[-1].update(_bound_names(node.target))
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        if self._yields_rows(node.iter):
            self.rows[-1].update(_bound_names(node.target))
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if item.optional_vars is not None and self._yields_rows(item.context_expr):
                self.rows[-1].update(_bound_names(item.optional_vars))
        self.generic_visit(node)

    def _check_target(self, target: ast.expr, line: int) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._check_target(element, line)
        elif (
            isinstance(target, ast.Attribute)
            and target.attr in _COLUMNS
            and isinstance(target.value, ast.Name)
            and target.value.id in self.rows[-1]
        ):
            self.found.append((line, f"{ast.unparse(target)} = ..."))

    def _yields_rows(self, value: ast.expr) -> bool:
        """A session call, or a call of something imported from ``picpipe.catalog``."""
        for node in ast.walk(value):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute) and (
                    _receiver_name(func.value) in _SESSION_NAMES
                    or _receiver_name(func.value) in self.catalog_names
                ):
                    return True
                if isinstance(func, ast.Name) and func.id in self.catalog_names:
                    return True
        return False


def _names_in(node: ast.expr) -> set[str]:
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        names |= set(node.value.replace("|", " ").replace("[", " ").replace("]", " ").split())
    return names


def _bound_names(target: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _catalog_imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("picpipe.catalog"):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("picpipe.catalog"):
                    names.add(alias.asname or alias.name.rpartition(".")[2])
    return names - {"Catalog"}  # the session factory itself hands out sessions, not rows


def offences(source: str) -> list[tuple[int, str]]:
    """(line, code) of every SQL call, SQL import and ORM field assignment in ``source``."""
    tree = ast.parse(source)
    checker = _Checker(_catalog_imports(tree))
    checker.visit(tree)
    return sorted(checker.found)


def _modules() -> list[str]:
    return sorted(
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*.py")
        if p.relative_to(SRC).parts[0] != "catalog"
    )


def test_no_sql_or_row_writes_outside_catalog() -> None:
    found = [
        f"src/picpipe/{module}:{line}: {code}"
        for module in _modules()
        if module not in PENDING_CATALOG_MOVES
        for line, code in offences((SRC / module).read_text())
    ]
    assert not found, "SQL and ORM row writes belong in catalog/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import sqlite3\n",
        "from sqlalchemy import select\n",
        "def f(db):\n    return db.execute(q)\n",
        "def f(self):\n    self._db.execute('DELETE FROM entry')\n",
        "def f(db, key):\n    asset = db.get(Asset, key)\n",
        "from picpipe.catalog.queries import find_asset\n"
        "def f(db):\n    asset = find_asset(db, 'k')\n    asset.thumbs_state = 'ok'\n",
        "from picpipe.catalog import queries as q\n"
        "def f(db):\n    for run in q.stale_sessions(db, 'sync'):\n        run.status = 'x'\n",
        "def f(run: ImportSession):\n    run.failed += 1\n",
        "def f(run: ImportSession):\n    run.seen, run.new = 1, 2\n",
    ],
)
def test_the_check_catches(source: str) -> None:
    assert offences(source)


@pytest.mark.parametrize(
    "source",
    [
        "from sqlalchemy.exc import SQLAlchemyError\n",
        "if TYPE_CHECKING:\n    from sqlalchemy.orm import Session\n",
        "def f(report):\n    report.failed += 1\n",
        "def f(cache):\n    return cache.get('k')\n",
        "from picpipe.catalog.queries import find_asset\n"
        "def f(db):\n    asset = find_asset(db, 'k')\n    return asset.kind\n",
    ],
)
def test_the_check_allows(source: str) -> None:
    assert not offences(source)
