"""Build images into one OCI layout and push them to a :class:`Registry` in one call."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from mirror.testing.images import (
    BuiltImage,
    BuiltIndex,
    Platform,
    build_image,
    build_index,
    random_layer,
)
from tests.peers.registry import Registry


@dataclass(frozen=True)
class PushedImage:
    """An image built locally and pushed to ``registry`` as ``repo:tag``."""

    registry: Registry
    repo: str
    tag: str
    image: BuiltImage

    @property
    def ref(self) -> str:
        """``HOST/REPO:TAG`` as clients pull it."""
        return self.registry.reference(self.repo, self.tag)


@dataclass(frozen=True)
class PushedIndex:
    """A multi-platform index built locally and pushed to ``registry`` as ``repo:tag``."""

    registry: Registry
    repo: str
    tag: str
    index: BuiltIndex

    @property
    def ref(self) -> str:
        """``HOST/REPO:TAG`` as clients pull it."""
        return self.registry.reference(self.repo, self.tag)


class ImageFactory:
    """Builds images with ``rng`` into one OCI layout and pushes them with skopeo to ``repo``
    (unless a call names another repository) on ``registry``."""

    def __init__(self, registry: Registry, layout_dir: Path, rng: random.Random, repo: str) -> None:
        self.registry = registry
        self.layout_dir = layout_dir
        self.rng = rng
        self.repo = repo

    def push(
        self,
        tag: str = "v1",
        *,
        repo: str | None = None,
        layers: int = 3,
        layer_size: int = 4096,
        marker: bytes | None = None,
        gzip_layers: bool = True,
        docker_v2s2: bool = False,
    ) -> PushedImage:
        """Build an image of ``layers`` random layers (each with ``marker`` planted) and push
        it; ``docker_v2s2`` makes skopeo convert it to Docker schema2 on the way."""
        contents = [random_layer(self.rng, layer_size, marker) for _ in range(layers)]
        image = build_image(self.layout_dir, tag, contents, gzip_layers=gzip_layers)
        repo = repo or self.repo
        self.registry.push(self.layout_dir, tag, repo, docker_v2s2=docker_v2s2)
        return PushedImage(self.registry, repo, tag, image)

    def push_index(
        self,
        tag: str = "multi",
        *,
        repo: str | None = None,
        platforms: tuple[Platform, ...] = (("linux", "amd64"), ("linux", "arm64")),
        layers_per_image: int = 2,
        layer_size: int = 4096,
    ) -> PushedIndex:
        """Build a multi-platform index and push it with every platform (``--all``)."""
        index = build_index(
            self.layout_dir,
            tag,
            list(platforms),
            layers_per_image,
            rng=self.rng,
            layer_size=layer_size,
        )
        repo = repo or self.repo
        self.registry.push(self.layout_dir, tag, repo, all_platforms=True)
        return PushedIndex(self.registry, repo, tag, index)
