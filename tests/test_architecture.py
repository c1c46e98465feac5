"""The import rules of docs/architecture.md, checked on the source: what each module of
newsletter/ imports (at the top or inside a function; not under TYPE_CHECKING, which is
for annotations only), read from its syntax tree."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "newsletter"

#: Take data and return data: no database, network, clock or files.  They may import
#: each other and config (the settings they are given), nothing else of the package.
PURE = {
    "newsletter.models",
    "newsletter.errors",
    "newsletter.text",
    "newsletter.tokens",
    "newsletter.links",
    "newsletter.placeholders",
    "newsletter.splice",
    "newsletter.schedule",
    "newsletter.subscribers",
    "newsletter.stopping",
    "newsletter.delivery.policy",
    "newsletter.bounces.parse",
    "newsletter.bounces.policy",
    "newsletter.bounces.verp",
    "newsletter.sources.parse",
    "newsletter.sources.normalize",
    "newsletter.sources.merge",
    "newsletter.render.sample",
    "newsletter.personal.interests",
    "newsletter.personal.match",
    "newsletter.personal.stated",
    "newsletter.personal.library",
    "newsletter.personal.rank",
    "newsletter.personal.digest",
}
PURE_TOO = ("newsletter.topics",)  # whole packages
#: What a pure module never imports: databases, sockets, mail and web servers.
IO_LIBRARIES = (
    "sqlalchemy",
    "psycopg",
    "sqlite3",
    "socket",
    "ssl",
    "smtplib",
    "imaplib",
    "mailbox",
    "urllib.request",
    "http",
    "waitress",
    "werkzeug",
    "subprocess",
    "fcntl",
)

#: (whose imports, what they may not import, why): each a rule of docs/architecture.md.
RULES = [
    (
        ("newsletter.delivery",),
        (
            "newsletter.render",
            "newsletter.templating",
            "newsletter.topics",
            "newsletter.sources",
            "newsletter.web",
            "newsletter.pipeline",
            "newsletter.daemon",
            "newsletter.cli",
        ),
        "delivery sends a stored issue: it neither renders nor fetches, and no entry point "
        "is below it",
    ),
    (
        ("newsletter.render", "newsletter.templating", "newsletter.placeholders"),
        (
            "newsletter.delivery",
            "newsletter.store",
            "newsletter.web",
            "newsletter.pipeline",
            "newsletter.lock",
        ),
        "rendering turns a digest into bytes; it knows no ledger, transport or web app",
    ),
    (
        ("newsletter.store",),
        (
            "newsletter.delivery",
            "newsletter.render",
            "newsletter.topics",
            "newsletter.web",
            "newsletter.bounces",
            "newsletter.sources.http",
            "newsletter.lock",
            "newsletter.pipeline",
            "newsletter.daemon",
            "newsletter.cli",
        ),
        "the store keeps records; it calls no stage",
    ),
    (
        ("newsletter.web",),
        ("newsletter.pipeline", "newsletter.daemon", "newsletter.delivery.sender"),
        "the web app changes one subscriber per request; it sends no issue",
    ),
    (
        ("newsletter",),
        ("newsletter.cli",),
        "the command line is the top: nothing imports it",
    ),
    (
        ("newsletter",),
        ("newsletter.daemon",),
        "only the command line starts the daemon",
    ),
]
#: ... but for these (the importer, the module).
ALLOWED = {
    ("newsletter.__main__", "newsletter.cli"),
    ("newsletter.cli", "newsletter.daemon"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` but those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            for other in child.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield child
        yield from _nodes(child)


@functools.cache
def imports(name: str) -> frozenset[str]:
    """The dotted names ``name`` imports: a submodule where ``from X import y`` names one."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules() else base)
    return frozenset(found)


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def pure(name: str) -> bool:
    return name in PURE or under(name, PURE_TOO)


def test_the_walk_sees_the_imports_it_checks():
    """Not vacuous: known edges, lazy and aliased ones included, are found; imports for
    annotations only are not."""
    assert "newsletter.delivery" in imports("newsletter.pipeline")  # inside a function
    assert "newsletter.store.schema" in imports("newsletter.store.ledger")  # from X import y
    assert "newsletter.delivery.policy" in imports("newsletter.delivery.sender")
    assert "sqlalchemy" in imports("newsletter.store.ledger")
    assert "newsletter.store" not in imports("newsletter.delivery.message")  # TYPE_CHECKING
    assert len(modules()) > 60 and all(name in modules() for name in PURE)


@pytest.mark.parametrize("name", sorted(n for n in modules() if pure(n)))
def test_a_pure_module_imports_only_pure_modules_and_no_io(name):
    own = {i for i in imports(name) if under(i, ("newsletter",))}
    wrong = sorted(i for i in own if not pure(i) and i not in ("newsletter", "newsletter.config"))
    assert not wrong, f"{name} (pure) imports {wrong}"
    io = sorted(i for i in imports(name) if under(i, IO_LIBRARIES))
    assert not io, f"{name} (pure) imports {io}"


@pytest.mark.parametrize(("whose", "never", "why"), RULES, ids=[r[2][:40] for r in RULES])
def test_import_rule(whose, never, why):
    broken = sorted(
        (name, i)
        for name in modules()
        if under(name, whose)
        for i in imports(name)
        if under(i, never) and not under(name, never) and (name, i) not in ALLOWED
    )
    assert not broken, f"{why}: {broken}"
