"""The architecture, checked: every module imports only from its own layer or below, and
sibling packages of one layer import each other only where declared.

cli -> app, config -> web -> services (pullthrough, auth, retention) -> stores and upstream
(blobstore, db, upstream; testing) -> pure core (oci, crypto, clock, verify, auth.policy, ...)
-> errors.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mirror"

# Lower number = lower layer. The longest matching prefix names a module's unit and layer.
LAYERS: dict[str, int] = {
    "mirror": 0,
    "mirror.errors": 0,
    "mirror.oci": 1,
    "mirror.clock": 0,
    "mirror.lru": 1,
    "mirror.metrics": 1,
    "mirror.crypto": 1,
    "mirror.verify": 1,
    "mirror.auth.policy": 1,
    "mirror.retention.policy": 1,
    "mirror.testing": 2,
    "mirror.blobstore": 2,
    "mirror.db": 2,
    "mirror.upstream": 2,
    "mirror.pullthrough": 3,
    "mirror.auth": 3,
    "mirror.hosted": 3,
    "mirror.retention": 3,
    # A tier replica reads blobs from their owner (a source beside the upstream clients);
    # the ring itself is pure.
    "mirror.tier": 3,
    "mirror.tier.ring": 1,
    "mirror.hosted.names": 1,
    "mirror.web": 4,
    "mirror.console": 4,
    "mirror.check": 4,
    "mirror.bundle": 4,
    "mirror.bench": 4,
    "mirror.config": 5,
    "mirror.app": 5,
    "mirror.cli": 6,
    "mirror.__main__": 7,
}

# Imports between sibling units of one layer that the architecture allows (importer, imported).
SIBLINGS: frozenset[tuple[str, str]] = frozenset(
    {
        ("mirror.verify", "mirror.oci"),  # a verifier checks against a Digest
        ("mirror.app", "mirror.config"),  # the app is wired from the configuration
        ("mirror.hosted", "mirror.pullthrough"),  # hosted manifests answer as cached ones do
        ("mirror.bench", "mirror.check"),  # bench seeds an origin with check's push code
        ("mirror.console", "mirror.web"),  # the console calls the admin API's own checks
    }
)


def unit_of(module: str) -> str:
    """The longest prefix of ``module`` that LAYERS names."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return prefix
    raise KeyError(f"{module} has no layer: add it to LAYERS")


def layer_of(module: str) -> int:
    """The layer of ``module``'s unit."""
    return LAYERS[unit_of(module)]


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


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_siblings_import_each_other_only_where_declared(path: Path) -> None:
    unit = unit_of(module_name(path))
    sideways = [
        name
        for name in imports_of(path)
        if (other := unit_of(name)) != unit
        and LAYERS[other] == LAYERS[unit]
        and (unit, other) not in SIBLINGS
        and unit != "mirror"
        and other != "mirror"
    ]
    assert sideways == [], f"{module_name(path)} ({unit}) imports a sibling: {sideways}"


def test_every_declared_sibling_pair_is_one_layer() -> None:
    for importer, imported in SIBLINGS:
        assert LAYERS[importer] == LAYERS[imported], (importer, imported)
