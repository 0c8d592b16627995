"""The package layout's one rule: imports only point down (front ends on top, numpy leaves at
the bottom), so any package can be read and reused without the ones above it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "maskseg"

# Top to bottom; a part may import its own floor's other members only where listed as allowed.
FLOORS = [
    ["__main__"],
    ["cli"],
    ["train"],
    ["video", "serve", "evaluate", "engines"],
    ["data"],
    ["pipeline"],
    ["models"],
    ["config"],
    ["console", "io"],
    ["files"],
]
FLOOR = {part: i for i, parts in enumerate(FLOORS) for part in parts}


def part_of(module: str) -> str | None:
    """``maskseg.pipeline.scene`` -> ``pipeline``; ``maskseg`` itself -> None."""
    bits = module.split(".")
    return bits[1] if bits[0] == "maskseg" and len(bits) > 1 else None


def imports(path: Path) -> list[tuple[str, int]]:
    """Every maskseg module ``path`` imports (at any depth of the file), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            if node.module == "maskseg":  # from maskseg import video (not __version__)
                found += [
                    (f"maskseg.{a.name}", node.lineno)
                    for a in node.names
                    if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").is_file()
                ]
    return [(m, line) for m, line in found if m == "maskseg" or m.startswith("maskseg.")]


def test_every_part_has_a_floor():
    parts = {p.stem if p.is_file() else p.name for p in SRC.iterdir()}
    parts -= {"__init__", "__pycache__", "weights", "py.typed"}
    assert parts <= set(FLOOR), f"parts without a floor: {sorted(parts - set(FLOOR))}"


def test_imports_only_point_down():
    upward = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        here = part_of(".".join(rel.parts))
        if here == "__init__":
            continue  # maskseg/__init__.py: the public names, imported lazily
        for module, line in imports(path):
            there = part_of(module)
            if there is None or there == here:
                continue
            if FLOOR[there] <= FLOOR[here]:
                upward.append(f"{path.relative_to(SRC)}:{line} ({here}) imports {module}")
    assert not upward, "imports pointing up or sideways:\n" + "\n".join(upward)
