"""What export is given: references normalised as Docker does, from arguments, files and the
``image:`` fields of Kubernetes YAML or Helm output."""

from __future__ import annotations

import io

import pytest

from mirror.bundle.references import (
    ReferenceInvalid,
    is_tag_only,
    parse_reference,
    read_references,
)


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("index.docker.io/library/alpine:3.20", "docker.io/library/alpine:3.20"),
        ("quay.io/org/app:1.2", "quay.io/org/app:1.2"),
        ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("ghcr.io/o/a@sha256:" + "a" * 64, "ghcr.io/o/a@sha256:" + "a" * 64),
    ],
)
def test_references_are_normalised_to_their_full_source(text: str, full: str) -> None:
    assert str(parse_reference(text)) == full


@pytest.mark.parametrize("text", ["UPPER/case", "app:bad tag", "app@sha256:short", ""])
def test_a_malformed_reference_is_refused(text: str) -> None:
    with pytest.raises(ReferenceInvalid):
        parse_reference(text)


def test_references_come_from_arguments_files_and_yaml_image_fields_once_each() -> None:
    listed = io.StringIO("# images\nquay.io/org/app:1.2\n\nalpine:3.20  # again\n")
    yaml = io.StringIO(
        'spec:\n  containers:\n  - name: web\n    image: "nginx:1.27"\n'
        "  initContainers:\n    - image: busybox:1.36 # init\n"
    )
    found = read_references(["alpine:3.20"], [listed], yaml)
    assert [str(r) for r in found] == [
        "docker.io/library/alpine:3.20",
        "quay.io/org/app:1.2",
        "docker.io/library/nginx:1.27",
        "docker.io/library/busybox:1.36",
    ]


def test_a_bare_tag_names_no_repository() -> None:
    assert is_tag_only("3.20") and not is_tag_only("alpine:3.20")
    assert not is_tag_only("docker.io/library/alpine:3.20")
