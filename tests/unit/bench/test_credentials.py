"""Credentials come from ``--user USER:PASSWORD`` or a docker config's ``auths`` entry for the
registry's host (``auth`` base64 or ``username``/``password``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mirror.bench.credentials import CredentialsError, from_docker_config, parse_user


def test_user_flag_splits_at_the_first_colon() -> None:
    assert parse_user("alice:pa:ss") == ("alice", "pa:ss")
    with pytest.raises(CredentialsError):
        parse_user("alice")


def _config(tmp_path: Path, auths: dict[str, object]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return path


def test_docker_config_entries_by_host_in_every_spelling(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"alice:secret").decode()
    path = _config(
        tmp_path,
        {
            "reg.example:5000": {"auth": encoded},
            "https://other.example": {"username": "bob", "password": "pw"},
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:tok").decode()},
        },
    )
    assert from_docker_config(path, "reg.example:5000") == ("alice", "secret")
    assert from_docker_config(path, "other.example") == ("bob", "pw")
    assert from_docker_config(path, "registry-1.docker.io") == ("hub", "tok")
    assert from_docker_config(path, "unknown.example") is None


def test_an_unreadable_docker_config_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    with pytest.raises(CredentialsError, match=r"config\.json"):
        from_docker_config(broken, "reg.example")
    bad_auth = _config(tmp_path, {"reg.example": {"auth": "!!!"}})
    with pytest.raises(CredentialsError, match="auth"):
        from_docker_config(bad_auth, "reg.example")
