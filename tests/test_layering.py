"""The package layering as an executable rule (issue 11, "Must show").

Every ``import`` and ``from ... import`` in ``src/sharedml`` — at module level,
inside functions, under ``TYPE_CHECKING`` — is read with :mod:`ast` (nothing
is imported), resolved to the module it names, and checked against the
layering by trust boundary (STYLE.md 1):

* ``node/`` (a data provider's process) does not import ``platform/`` (the
  operator's); both speak through :mod:`sharedml.control`, which imports
  neither side;
* the protocols — ``learn/``, ``mpc/``, ``psi/``, ``fl/`` — do not import the job
  layer (``components/``), either deployment (``platform/``, ``node/``) or a
  command line;
* ``crypto/`` holds primitives only: of sharedml it imports ``errors`` alone;
* each PSI protocol is written on its own: ``ecdh`` and ``kkrt`` import
  neither each other nor the front door ``psi/api.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import sharedml

SRC = Path(sharedml.__file__).resolve().parent


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``root``."""
    found = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import statement in the module ``name``.

    ``from a import b`` names ``a.b`` when that is a module, else ``a``;
    relative imports are resolved against the module's package.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in known else base), node.lineno


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _is_cli(module: str) -> bool:
    return module.startswith("sharedml.") and module.rpartition(".")[2] in ("cli", "cluster_cli")


@dataclass(frozen=True)
class Rule:
    """Modules under ``importers`` may not import modules under ``forbidden``; if
    ``only`` is given, they may import of sharedml nothing outside it."""

    id: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    no_cli: bool = False

    def breaks(self, target: str) -> bool:
        if self.only is not None and target.split(".")[0] == "sharedml":
            return not _within(target, self.only)
        return _within(target, self.forbidden) or (self.no_cli and _is_cli(target))

    def violations(self, modules: dict[str, Path]) -> list[str]:
        known = set(modules)
        found = set()
        for name, path in modules.items():
            if not _within(name, self.importers):
                continue
            for target, line in imports_of(name, path, known):
                if self.breaks(target):
                    found.add(f"{name}:{line} imports {target}")
        return sorted(found)


PROTOCOLS = ("sharedml.learn", "sharedml.mpc", "sharedml.psi", "sharedml.fl")
RULES = [
    Rule("node-not-platform", ("sharedml.node",), forbidden=("sharedml.platform",)),
    Rule("control-neutral", ("sharedml.control",), forbidden=("sharedml.node", "sharedml.platform")),
    Rule(
        "protocols-not-deployment",
        PROTOCOLS,
        forbidden=("sharedml.components", "sharedml.platform", "sharedml.node", "sharedml.cli"),
        no_cli=True,
    ),
    Rule("crypto-primitives-only", ("sharedml.crypto",), only=("sharedml.crypto", "sharedml.errors")),
    Rule("ecdh-alone", ("sharedml.psi.ecdh",), forbidden=("sharedml.psi.kkrt", "sharedml.psi.api")),
    Rule("kkrt-alone", ("sharedml.psi.kkrt",), forbidden=("sharedml.psi.ecdh", "sharedml.psi.api")),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_layering(rule: Rule) -> None:
    modules = _modules(SRC)
    assert any(_within(m, rule.importers) for m in modules), f"{rule.id} checks no module"
    assert rule.violations(modules) == []


def test_the_walker_sees_the_imports_the_rules_are_about() -> None:
    """The rules pass because the imports are absent, not because none were read."""
    modules = _modules(SRC)
    known = set(modules)

    def targets(name: str) -> set[str]:
        return {t for t, _ in imports_of(name, modules[name], known)}

    assert "sharedml.control" in targets("sharedml.node.agent")
    assert "sharedml.control" in targets("sharedml.platform.nodes")
    assert "sharedml.platform.scheduler" in targets("sharedml.platform.nodes")
    assert {"sharedml.psi.ecdh", "sharedml.psi.kkrt"} <= targets("sharedml.psi.api")


def test_a_planted_violation_is_reported(tmp_path: Path) -> None:
    """Function-level, relative and ``from package import module`` imports all count."""
    root = tmp_path / "sharedml"
    for folder in ("node", "platform", "crypto", "mpc", "components"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    (root / "cli.py").write_text("")
    (root / "platform" / "store.py").write_text("")
    (root / "node" / "agent.py").write_text("def f():\n    from ..platform import store\n")
    (root / "crypto" / "ring.py").write_text(
        "from sharedml import errors\nfrom sharedml.crypto import prg\nimport sharedml.mpc\n"
    )
    (root / "crypto" / "prg.py").write_text("")
    (root / "mpc" / "beaver.py").write_text("if True:\n    import sharedml.cli\n")
    modules = _modules(root)
    by_id = {r.id: r for r in RULES}
    assert by_id["node-not-platform"].violations(modules) == [
        "sharedml.node.agent:2 imports sharedml.platform.store"
    ]
    assert by_id["crypto-primitives-only"].violations(modules) == [
        "sharedml.crypto.ring:3 imports sharedml.mpc"
    ]
    assert by_id["protocols-not-deployment"].violations(modules) == [
        "sharedml.mpc.beaver:2 imports sharedml.cli"
    ]


def test_fl_builds_on_public_modules_only() -> None:
    """Horizontal learning takes what it shares with the vertical learners (link,
    schedules, early stopping) from public modules (``learn/training.py``), never
    from another package's private ``_`` modules."""
    modules = _modules(SRC)
    known = set(modules)
    private = sorted(
        f"{name}:{line} imports {target}"
        for name, path in modules.items() if _within(name, ("sharedml.fl",))
        for target, line in imports_of(name, path, known)
        if not _within(target, ("sharedml.fl",))
        and any(part.startswith("_") for part in target.split(".")[1:])
    )
    assert private == []
