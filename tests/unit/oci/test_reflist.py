"""Reference lists (mirror/oci/reflist.py): arguments, list files and Kubernetes / Helm YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.oci.reflist import (
    ReferenceListError,
    image_fields,
    is_tag_only,
    listed,
    parse_reference,
    read_reference_list,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "normalised", "fetched"),
    [
        ("alpine", "docker.io/library/alpine:latest", "latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20", "3.20"),
        ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "3"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7", "7"),
        ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "v1"),
        ("localhost:5000/x/y", "localhost:5000/x/y:latest", "latest"),
        ("localhost/app", "localhost/app:latest", "latest"),
        ("registry-1.docker.io/bitnami/redis", "docker.io/bitnami/redis:latest", "latest"),
        ("127.0.0.1:5000/repo:tag", "127.0.0.1:5000/repo:tag", "tag"),
        (f"quay.io/a/b@{DIGEST}", f"quay.io/a/b@{DIGEST}", DIGEST),
        (f"nginx:1.27@{DIGEST}", f"docker.io/library/nginx:1.27@{DIGEST}", DIGEST),
    ],
    ids=[
        "bare",
        "tag",
        "hub-alias",
        "hub-org",
        "other",
        "port",
        "localhost",
        "hub-registry-1",
        "ip",
        "digest",
        "both",
    ],
)
def test_references_are_normalised_like_docker(text: str, normalised: str, fetched: str) -> None:
    ref = parse_reference(text)
    assert (str(ref), ref.reference) == (normalised, fetched)


@pytest.mark.parametrize(
    "bad", ["", "UPPER/case", "alpine@sha256:zz", "app@sha256:short", "a/b:bad tag", "x::y"]
)
def test_bad_references_are_refused_with_the_text(bad: str) -> None:
    with pytest.raises(ReferenceListError):
        parse_reference(bad)


HELM_OUTPUT = """\
---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      initContainers: [{name: init, image: 'busybox:1.36'}]
      containers:
        - name: app
          image: "ghcr.io/org/app:v1"
          imagePullPolicy: IfNotPresent
        - image: nginx:1.27
          name: proxy
---
{"kind": "Pod", "spec": {"containers": [{"image": "quay.io/k/v:2", "name": "j"}]}}
"""


def test_image_fields_of_kubernetes_yaml_helm_output_and_json() -> None:
    assert image_fields(HELM_OUTPUT) == [
        "busybox:1.36",
        "ghcr.io/org/app:v1",
        "nginx:1.27",
        "quay.io/k/v:2",
    ]


def test_a_list_combines_arguments_files_and_stdin_keeping_first_occurrences(
    tmp_path: Path,
) -> None:
    listed = tmp_path / "images.txt"
    listed.write_text("# the region's base images\nalpine:3.20\n\nbusybox:1.36  # init\n")
    refs = read_reference_list(["docker.io/library/alpine:3.20"], [listed], HELM_OUTPUT)
    assert [str(r) for r in refs] == [
        "docker.io/library/alpine:3.20",
        "docker.io/library/busybox:1.36",
        "ghcr.io/org/app:v1",
        "docker.io/library/nginx:1.27",
        "quay.io/k/v:2",
    ]


def test_a_bad_line_is_named_by_its_file(tmp_path: Path) -> None:
    listed = tmp_path / "images.txt"
    listed.write_text("alpine\nNot/Valid\n")
    with pytest.raises(ReferenceListError, match=r"images\.txt"):
        read_reference_list(files=[listed])


def test_a_list_file_may_be_kubernetes_yaml() -> None:
    """What ``mirror export -f`` and ``mirror prewarm -f`` both accept."""
    assert listed("spec:\n  containers:\n  - image: busybox:1.36 # init\n") == ["busybox:1.36"]


def test_a_bare_tag_names_no_repository() -> None:
    """A bundle's ``ref.name`` of ``3.20`` (skopeo's ``oci-archive:FILE:3.20``) is only a tag."""
    assert is_tag_only("3.20") and not is_tag_only("alpine:3.20")
    assert not is_tag_only("docker.io/library/alpine:3.20")
