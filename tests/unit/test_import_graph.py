"""The package's import graph: every arrow points down the layers, so each stage reads alone.

An import (at module level or inside a function: both are dependencies) from one unit of `imagesearch` to
another must go to a strictly lower layer. Units are the sub-packages and top-level modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "imagesearch"

# Lowest first. A unit may import units of lower layers only (never one of its own layer): so the detector
# and the classifier never import each other, and features/ and matching/ import no stage.
LAYERS: list[set[str]] = [
    {"io", "distributed", "optim", "parallel"},
    {"config", "runtime"},
    {"data", "checkpoint", "cli"},
    {"metrics", "synthetic", "backbones"},
    {"engine", "features"},
    {"weights", "detector", "classifier"},
    {"embedder"},  # the classifier without its FC: it builds the classifier's network
    {"matching"},
    {"evaluation"},
    {"pipeline", "caches"},
    {"folds"},
]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_edges(package: Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> the places ("file:line") where the import is written."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        if module == "imagesearch":
            continue
        source = _unit(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imagesearch"):
                targets = [node.module] if node.module != "imagesearch" else [f"imagesearch.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("imagesearch.")]
            else:
                continue
            for target in targets:
                if _unit(target) != source:
                    edges.setdefault((source, _unit(target)), []).append(f"{rel}.py:{node.lineno}")
    return edges


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    units.discard("__init__")
    placed = set().union(*LAYERS)
    assert units == placed, f"units without a layer: {sorted(units - placed)}; layers naming no unit: {sorted(placed - units)}"


def test_imports_point_down() -> None:
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    upward = {
        f"{a} -> {b}": places for (a, b), places in import_edges().items() if layer.get(b, -1) >= layer.get(a, -1)
    }
    assert not upward, f"imports that do not point down the layers: {upward}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    # The check itself can fail: a feature module that imports the embedder, even inside a function, is seen.
    fake = tmp_path / "imagesearch"
    (fake / "features").mkdir(parents=True)
    (fake / "features" / "x.py").write_text("def f():\n    from imagesearch.embedder import load_model\n")
    assert import_edges(fake) == {("features", "embedder"): ["imagesearch/features/x.py:2"]}
