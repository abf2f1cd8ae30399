"""Lists of image references, as ``mirror prewarm`` and ``mirror export`` take them.

A list comes from command-line arguments, from files (one reference a line, ``#`` comments;
or Kubernetes YAML / JSON, read like stdin), and from Kubernetes manifests or Helm output on
stdin, whose ``image:`` fields are the references. Every reference is normalised the way
Docker does it (``alpine`` is ``docker.io/library/alpine:latest``), and the list keeps the
first occurrence of each, in order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mirror.errors import RegistryError
from mirror.oci.digest import Digest
from mirror.oci.names import NAME_PATTERN, TAG_PATTERN, is_host

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
# An ``image:`` key of a YAML block or flow mapping, or a JSON object, and its scalar value
# (``imagePullPolicy`` and ``initImage`` are other keys: the name must end at the colon).
_IMAGE_FIELD = re.compile(
    r"""(?:^|[\s{,\-])["']?image["']?\s*:\s*(["']?)([^\s"',}\]#]+)\1""", re.MULTILINE
)


class ReferenceListError(ValueError):
    """A reference that is not ``[registry/]repository[:tag][@digest]``; says where and why."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One normalised image reference: ``registry/repository`` and a tag, a digest, or both."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` (``docker.io/library/alpine``)."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to fetch: the digest when there is one (it pins the content), else the tag."""
        return str(self.digest) if self.digest is not None else self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{self.name}{tag}{digest}"


def parse_reference(text: str) -> ImageRef:
    """The normalised reference of ``text``; ``ReferenceListError`` saying what is wrong."""
    value = text.strip()
    rest, at, digest_text = value.partition("@")
    digest = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except RegistryError:
            raise ReferenceListError(f"{text!r}: not a digest: {digest_text!r}") from None
    name, tag = _split_tag(rest)
    first, slash, remainder = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, name
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    if not is_host(registry) or not NAME_PATTERN.fullmatch(repository):
        raise ReferenceListError(f"{text!r}: not [registry/]repository[:tag][@digest]")
    if tag is not None and not TAG_PATTERN.fullmatch(tag):
        raise ReferenceListError(f"{text!r}: not a tag: {tag!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, repository, tag, digest)


def _split_tag(name: str) -> tuple[str, str | None]:
    """``name`` without its ``:tag`` (a colon after the last slash), and the tag."""
    head, colon, tail = name.rpartition(":")
    if colon and "/" not in tail:
        return head, tail
    return name, None


def is_tag_only(ref_name: str) -> bool:
    """Whether an ``org.opencontainers.image.ref.name`` is a bare tag (``3.20``, as skopeo's
    ``oci-archive:FILE:3.20`` writes it) rather than a reference naming a repository."""
    return bool(TAG_PATTERN.fullmatch(ref_name)) and not any(c in ref_name for c in "/:@")


def image_fields(text: str) -> list[str]:
    """The values of every ``image:`` field of Kubernetes YAML, Helm output or JSON."""
    return [match.group(2) for match in _IMAGE_FIELD.finditer(text)]


def listed(text: str) -> list[str]:
    """The references of a list file: ``image:`` fields if it is YAML or JSON that has them,
    else one reference a line (blank lines and ``#`` comments skipped)."""
    fields = image_fields(text)
    if fields:
        return fields
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def parse_all(texts: Iterable[tuple[str, str]]) -> list[ImageRef]:
    """Parse ``(where, reference)`` pairs, first occurrence of each kept, in order;
    ``ReferenceListError`` names where a bad one came from."""
    found: dict[str, ImageRef] = {}
    for where, text in texts:
        try:
            ref = parse_reference(text)
        except ReferenceListError as exc:
            raise ReferenceListError(f"{where}: {exc}") from None
        found.setdefault(str(ref), ref)
    return list(found.values())


def read_reference_list(
    arguments: Sequence[str] = (),
    files: Sequence[Path] = (),
    manifests: str | None = None,
) -> list[ImageRef]:
    """The references of ``arguments``, then of each file (see :func:`listed`), then the
    ``image:`` fields of ``manifests`` (Kubernetes YAML or Helm output, e.g. stdin).
    ``ReferenceListError`` for a bad reference or an unreadable file, naming it."""
    texts: list[tuple[str, str]] = [("argument", a) for a in arguments]
    for path in files:
        try:
            content = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ReferenceListError(f"{path}: cannot read: {exc}") from None
        texts.extend((str(path), ref) for ref in listed(content))
    if manifests is not None:
        texts.extend(("stdin", ref) for ref in image_fields(manifests))
    return parse_all(texts)
