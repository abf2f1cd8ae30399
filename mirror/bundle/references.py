"""Image references as a bundle names them: the full source reference
(``docker.io/library/alpine:3.20``), normalised the way Docker normalises short names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from mirror.errors import RegistryError
from mirror.oci.digest import Digest
from mirror.oci.names import TAG_PATTERN, is_host, validate_name, validate_tag

DOCKER_HUB = "docker.io"
# Names Docker Hub is also known by; the cache keeps it under one host.
DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "registry-1.docker.io"})
# ``image: foo`` in Kubernetes YAML or Helm output (also as a list item, quoted or not).
_IMAGE_FIELD = re.compile(r"""^\s*(?:-\s*)?image:\s*["']?([^"'\s#]+)""")


class ReferenceInvalid(ValueError):
    """Text that is not an image reference; the message says why."""


@dataclass(frozen=True, slots=True)
class SourceReference:
    """``host/repo`` with a tag, a digest, or both."""

    host: str
    repo: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``host/repo``."""
        return f"{self.host}/{self.repo}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return str(self.digest) if self.digest else self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"


def parse_reference(text: str) -> SourceReference:
    """Parse ``[host/]repo[:tag][@digest]``; a name without a host is Docker Hub's (``alpine``
    is ``docker.io/library/alpine:latest``). Raises ``ReferenceInvalid``."""
    name, _, pinned = text.strip().partition("@")
    tag = None
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
    first, sep, rest = name.partition("/")
    host, repo = (first, rest) if sep and is_host(first) else (DOCKER_HUB, name)
    host = DOCKER_HUB if host in DOCKER_HUB_ALIASES else host
    if host == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    try:
        validate_name(repo)
        digest = Digest.parse(pinned) if pinned else None
        if tag is not None:
            validate_tag(tag)
    except RegistryError as exc:
        raise ReferenceInvalid(f"{text!r} is not an image reference ({exc.code.name})") from None
    return SourceReference(host, repo, tag if tag or digest else "latest", digest)


def is_tag_only(ref_name: str) -> bool:
    """Whether an ``org.opencontainers.image.ref.name`` is a bare tag (``3.20``, as skopeo's
    ``oci-archive:FILE:3.20`` writes it) rather than a reference naming a repository."""
    return bool(TAG_PATTERN.fullmatch(ref_name)) and not any(c in ref_name for c in "/:@")


def image_fields(lines: Iterable[str]) -> list[str]:
    """The values of ``image:`` fields in Kubernetes YAML or Helm output."""
    return [m.group(1) for line in lines if (m := _IMAGE_FIELD.match(line))]


def read_references(
    arguments: Iterable[str], files: Iterable[TextIO] = (), stdin: TextIO | None = None
) -> list[SourceReference]:
    """The references named by ``arguments``, by ``files`` (one a line, ``#`` comments) and by
    the ``image:`` fields of YAML on ``stdin``, in order, each once. Raises
    ``ReferenceInvalid`` on the first that does not parse."""
    texts = list(arguments)
    for handle in files:
        texts += [line.split("#", 1)[0].strip() for line in handle]
    if stdin is not None:
        texts += image_fields(stdin)
    seen = dict.fromkeys(parse_reference(t) for t in texts if t)
    return list(seen)
