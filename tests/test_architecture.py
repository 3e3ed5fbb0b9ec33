"""The package's layout rules (docs/architecture.md), checked on the source: imports run one way.

Every ``import`` of the package is read with :mod:`ast` — at module level and inside
functions alike (a lazy import is still a dependency) — and resolved to the module it
names. Then:

* each room imports only the rooms below it (:data:`MAY_IMPORT`);
* nothing but ``cli`` imports ``cli``;
* the imports have no cycle, at module level or inside functions (a lazy import that
  closes a cycle only hides it; imports under ``if TYPE_CHECKING:`` never run and are
  left out of this rule);
* no module has more than :data:`MAX_LINES` lines outside ``synthesis/`` (split by job);
* no module or package is named like a standard-library module (run as a script, its
  folder comes first on ``sys.path`` and it would shadow the real one: the old
  ``inspect.py``).
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pianomtl"

MAY_IMPORT: dict[str, set[str]] = {
    # room: the other rooms it may import (its own modules always)
    "constants": set(),
    "extras": set(),
    "core": {"constants", "extras"},
    "models": {"constants", "extras", "core"},
    "data": {"constants", "extras", "core"},
    "synthesis": {"constants", "extras", "core"},
    "transcription": {"constants", "extras", "core", "models"},
    "train": {"constants", "extras", "core", "models", "data", "transcription"},
    "batch": {"constants", "extras", "core", "transcription"},
    "score": {"constants", "extras", "core", "transcription"},  # sheet music from a transcription (issue 26)
    "web": {"constants", "extras", "core", "synthesis", "transcription", "score"},
    "cli": {
        "constants",
        "extras",
        "core",
        "models",
        "data",
        "synthesis",
        "transcription",
        "train",
        "web",
        "batch",
        "score",
        "pianomtl",
    },
    "pianomtl": {"transcription"},  # the package's __init__: the public entry points
}
"""The rule of docs/architecture.md: ``cli → web → train | transcription → models | data → core``."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    """``pianomtl.core.midi`` → ``core``; ``pianomtl`` → ``pianomtl``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    top_level: bool
    typing_only: bool = False
    """Under ``if TYPE_CHECKING:``: for annotations only, never executed."""

    def __str__(self) -> str:
        where = "" if self.top_level else " (in a function)"
        source = MODULES[self.importer].relative_to(PACKAGE)
        return f"{self.importer} imports {self.imported}{where}: {source}:{self.line}"


def _resolve(name: str) -> str:
    """The package module ``name`` refers to: itself, or the module that defines it (``a.b.f`` → ``a.b``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str) -> Iterator[Import]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top_level = {id(node) for node in tree.body}
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in ``base``
        else:
            continue
        for name in names:
            if name == "pianomtl" or name.startswith("pianomtl."):
                yield Import(module, _resolve(name), node.lineno, id(node) in top_level, id(node) in typing_only)


IMPORTS = [found for module in MODULES for found in imports_of(module)]


def test_the_walk_sees_the_package() -> None:
    expected = {"pianomtl.core.midi", "pianomtl.synthesis.corpus", "pianomtl.cli.synth"}
    expected.add("pianomtl.transcription.stream")
    assert expected <= set(MODULES)
    assert set(map(room, MODULES)) <= set(MAY_IMPORT), "a new room: give it its place in MAY_IMPORT and the docs"
    lazy = [i for i in IMPORTS if i.importer == "pianomtl.synthesis.corpus" and not i.top_level]
    assert any(i.imported == "pianomtl.synthesis.piano" for i in lazy)  # function-level imports are seen


@pytest.mark.parametrize("importer_room", sorted(MAY_IMPORT))
def test_each_room_imports_only_the_rooms_below_it(importer_room: str) -> None:
    allowed = MAY_IMPORT[importer_room] | {importer_room}
    wrong = [str(i) for i in IMPORTS if room(i.importer) == importer_room and room(i.imported) not in allowed]
    assert not wrong, "\n".join(wrong)


def test_nothing_but_the_command_line_imports_it() -> None:
    wrong = [str(i) for i in IMPORTS if room(i.imported) == "cli" and room(i.importer) != "cli"]
    assert not wrong, "\n".join(wrong)


def test_transcription_needs_no_training_code_and_no_corpus() -> None:
    """What a user runs to transcribe imports neither training nor the corpus (nor their samplers)."""
    wrong = [
        str(i)
        for i in IMPORTS
        if room(i.importer) == "transcription" and room(i.imported) in {"train", "data", "cli", "web"}
    ]
    assert not wrong, "\n".join(wrong)


def test_module_level_imports_have_no_cycle() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in IMPORTS:
        if found.top_level and found.imported != found.importer:
            graph[found.importer].add(found.imported)
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = " → ".join([*path[path.index(module) :], module])
            raise AssertionError(f"import cycle at module level: {cycle}")
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_no_module_shadows_the_standard_library() -> None:
    names = {path.stem for path in PACKAGE.rglob("*.py")} | {path.name for path in PACKAGE.rglob("*") if path.is_dir()}
    clashes = sorted(n for n in names if n in sys.stdlib_module_names and not n.startswith("__"))
    assert not clashes, f"named like standard-library modules: {clashes}"


def _cycle(edges: list[Import]) -> str | None:
    """``"a → b → a (where)"`` for the first cycle among ``edges``, else ``None``."""
    graph: dict[str, dict[str, Import]] = {module: {} for module in MODULES}
    for found in edges:
        if found.imported != found.importer:
            graph[found.importer].setdefault(found.imported, found)
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> str | None:
        if module in path:
            loop = [*path[path.index(module) :], module]
            return " → ".join(loop) + "\n" + "\n".join(str(graph[a][b]) for a, b in itertools.pairwise(loop))
        if module in done:
            return None
        for imported in sorted(graph[module]):
            found = visit(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_no_cycle_even_through_imports_inside_functions() -> None:
    """A function-level import that closes a cycle (features ↔ torch_features, pipeline ↔ stream)
    is still a cycle: each side needs the other. Split out what both need instead."""
    found = _cycle([i for i in IMPORTS if not i.typing_only])
    assert found is None, f"import cycle:\n{found}"


def test_the_cycle_rule_can_fail() -> None:
    midi, files = "pianomtl.core.midi", "pianomtl.core.files"
    made_up = [Import(midi, files, 1, True), Import(files, midi, 1, False)]
    assert _cycle(made_up) is not None and _cycle(made_up[:1]) is None


MAX_LINES = 700
"""A module longer than this does several jobs; ``synthesis/`` (the renderers) is left to its room's owner."""


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in MODULES.values()
        if "synthesis" not in path.relative_to(PACKAGE).parts
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"
