"""naslab's layers (docs/architecture.md): no module imports a layer above its own.

Read from the source with `ast` (function-level imports too), so the rule holds for lazy imports as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "naslab"

# Bottom to top; a module may import its own layer and the layers below it. Keep in step with
# docs/architecture.md ("Layers").
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        ("errors", "registry", "records", "interrupt", "archive", "rank_agreement", "validation", "loggers"),
    ),
    ("ops and data", ("ops", "data")),
    ("spaces", ("spaces",)),
    ("plots", ("plots",)),
    ("training", ("train", "summary")),
    ("evaluators", ("evaluators",)),
    ("strategies", ("strategies",)),
    ("search", ("search",)),
    ("studies", ("studies",)),
    ("stages", ("stages", "export")),
    ("application", ("pipeline", "lifecycle", "launch")),
]
LEVEL = {part: level for level, (_, parts) in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """`naslab.spaces.micro.space` -> `spaces`."""
    return module.split(".")[1] if module.count(".") >= 1 else ""


def naslab_imports(path: Path, package: str = "") -> list[tuple[int, str]]:
    """(line, module) of every `naslab.*` import in the file, at any depth: `from naslab.x import y`,
    `import naslab.x`, `from naslab import x` and relative imports (resolved against `package`, the
    file's dotted package, e.g. `naslab.spaces.micro`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: `from ..strategies import x` inside naslab.spaces -> naslab.strategies
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if module == "naslab":  # `from naslab import strategies`
                found += [(node.lineno, f"naslab.{a.name}") for a in node.names]
            elif module.startswith("naslab."):
                found.append((node.lineno, module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("naslab.")]
    return found


def dotted_package(path: Path) -> str:
    """`src/naslab/spaces/micro/space.py` -> `naslab.spaces.micro`."""
    return ".".join(("naslab", *path.relative_to(SRC).parent.parts))


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_package_is_in_a_layer() -> None:
    parts = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in MODULES}
    assert parts - {"__init__"} <= set(LEVEL), f"not in a layer: {sorted(parts - set(LEVEL) - {'__init__'})}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    own = path.relative_to(SRC).parts[0].removesuffix(".py")
    above = [
        f"line {line}: {module} ({LAYERS[LEVEL[part_of(module)]][0]})"
        for line, module in naslab_imports(path, dotted_package(path))
        if LEVEL.get(part_of(module), -1) > LEVEL[own]
    ]
    assert not above, f"{path.relative_to(SRC)} ({LAYERS[LEVEL[own]][0]}) imports a layer above: {above}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a space importing a strategy is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from naslab.strategies.nao import NAOStrategy\n")
    ((line, module),) = naslab_imports(bad)
    assert line == 2 and LEVEL[part_of(module)] > LEVEL["spaces"]
