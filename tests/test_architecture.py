"""The layers hold: imports run adapters -> core -> (store | executor -> model), files and
classes stay small, and no module imports itself back (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 500
MAX_CLASS_LINES = 300

ADAPTERS = ("bot.adapters", "bot.discord_adapter", "bot.cli", "bot.console", "bot.__main__")
# What an adapter may import of ours: the core's api, figures and facade, the wiring and shared
# basics.
ADAPTER_ALLOWED = (
    "bot.core.api",
    "bot.core.figures",
    "bot.core.service",
    "bot.app",
    "bot.config",
    "bot.errors",
    "bot.messages",
    "bot.display",
    *ADAPTERS,
)
CORE_FORBIDDEN = ("bot.store", "bot.executors", "bot.app", *ADAPTERS)
THIRD_PARTY_FORBIDDEN_IN_CORE = ("aiosqlite", "sqlite3", "discord", "multiprocessing", "asyncpg")


def _modules() -> dict[str, Path]:
    found = {}
    for root in ("bot", "model"):
        for path in (REPO / root).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports (absolute names), wherever the import stands: in a function or
    an ``if TYPE_CHECKING:`` block it is still a dependency."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from package import module`` imports that module, not the package's __init__
            # (which a submodule's import has run before anyway).
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _ours(names: set[str]) -> set[str]:
    """The names that are our modules (``bot.core.api.ChannelRef`` -> ``bot.core.api``)."""
    result = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            result.add(name)
    return result


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("model")))
def test_model_imports_nothing_of_bot(module: str) -> None:
    assert not [n for n in _imports(MODULES[module]) if _under(n, ("bot",))]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, ADAPTERS)))
def test_adapters_import_only_the_core_api(module: str) -> None:
    names = _imports(MODULES[module])
    assert not [n for n in names if _under(n, ("model",))], "adapters never touch the model"
    ours = _ours(names)
    wrong = sorted(n for n in ours if n.startswith("bot") and not _under(n, ADAPTER_ALLOWED))
    assert not wrong, f"{module} imports {wrong}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, ("bot.core",))))
def test_core_knows_no_backend_or_adapter(module: str) -> None:
    names = _imports(MODULES[module])
    wrong = sorted(n for n in _ours(names) if _under(n, CORE_FORBIDDEN))
    wrong += sorted(n for n in names if _under(n, THIRD_PARTY_FORBIDDEN_IN_CORE))
    assert not wrong, f"{module} imports {wrong}"


@pytest.mark.parametrize(
    ("backend", "allowed"),
    [("bot.store", ("bot.core.store",)), ("bot.executors", ("bot.core.executor",))],
)
def test_backends_see_only_their_protocol(backend: str, allowed: tuple[str, ...]) -> None:
    for module in (m for m in MODULES if _under(m, (backend,))):
        core = [n for n in _ours(_imports(MODULES[module])) if _under(n, ("bot.core",))]
        assert all(_under(n, allowed) for n in core), f"{module} imports {core}"


def test_no_import_cycles() -> None:
    """Type-only imports and imports inside functions count: a cycle hidden in either is still
    two modules that cannot be read, tested or moved apart."""
    graph = {name: _ours(_imports(path)) - {name} for name, path in MODULES.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for edge in sorted(graph.get(name, ())):
            if state.get(edge) == 1:
                cycles.append(" -> ".join([*path[path.index(edge) :], edge]))
            elif edge not in state:
                visit(edge, [*path, edge])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_and_classes_stay_small(module: str) -> None:
    path = MODULES[module]
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.relative_to(REPO)} has {lines} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"class {node.name} has {size} lines"
