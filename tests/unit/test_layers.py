"""The architecture, checked: every module imports only from its own layer or below.

cli/demo -> app -> web -> pullthrough, auth -> store, identity, upstream, routing, config
-> pure core (oci, policy grammar, crypto, errors).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mirror"

# Lower number = lower layer. The longest matching prefix decides a module's layer.
LAYERS: dict[str, int] = {
    "mirror": 0,
    "mirror.errors": 0,
    "mirror.clock": 0,
    "mirror.oci": 0,
    "mirror.verify": 0,
    "mirror.lru": 0,
    "mirror.metrics": 0,
    "mirror.crypto": 0,
    "mirror.auth.policy": 0,
    "mirror.testing": 1,
    "mirror.blobstore": 1,
    "mirror.db": 1,
    "mirror.upstream": 1,
    "mirror.pullthrough": 2,
    "mirror.auth": 2,
    "mirror.retention": 2,
    "mirror.retention.policy": 0,
    "mirror.web": 3,
    "mirror.config": 4,
    "mirror.app": 4,
    "mirror.cli": 5,
    "mirror.__main__": 6,
}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} has no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "mirror" or name.startswith("mirror.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_module_imports_only_downward(path: Path) -> None:
    module = module_name(path)
    upward = [name for name in imports_of(path) if layer_of(name) > layer_of(module)]
    assert upward == [], f"{module} (layer {layer_of(module)}) imports upward: {upward}"
