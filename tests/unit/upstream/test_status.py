"""Upstream answers map onto our codes without repeating the upstream's own words."""

from __future__ import annotations

import json

import pytest

from mirror.errors import ErrorCode
from mirror.upstream.status import error_for

SECRET = "SECRET-INTERNAL-TEXT"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, ErrorCode.MANIFEST_UNKNOWN),
        (403, ErrorCode.DENIED),
        (401, ErrorCode.UNAUTHORIZED),
        (500, ErrorCode.UNAVAILABLE),
    ],
)
def test_upstream_messages_are_not_repeated(status: int, code: ErrorCode) -> None:
    body = json.dumps({"errors": [{"code": code.name, "message": SECRET}]}).encode()
    error = error_for(status, body, unknown=ErrorCode.MANIFEST_UNKNOWN)
    assert error.code is code
    assert SECRET not in json.dumps(error.body())
