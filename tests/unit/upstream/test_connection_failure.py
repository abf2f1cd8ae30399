"""Connection failures become one-line reasons, never Python reprs (issue 10)."""

from __future__ import annotations

import aiohttp
import pytest

from mirror.upstream.status import connection_failure


@pytest.mark.parametrize(
    "exc, reason",
    [
        pytest.param(TimeoutError(), "timed out", id="timeout"),
        pytest.param(aiohttp.ServerTimeoutError("read"), "timed out", id="server-timeout"),
        pytest.param(
            aiohttp.ServerDisconnectedError(), "connection closed before an answer", id="closed"
        ),
        pytest.param(
            aiohttp.ClientPayloadError("Response payload is not completed"),
            "answer broken off",
            id="payload",
        ),
        pytest.param(
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            "connection reset by peer",
            id="reset",
        ),
        pytest.param(aiohttp.ClientError(), "ClientError", id="other"),
    ],
)
def test_a_connection_failure_is_one_line_without_a_repr(exc: Exception, reason: str) -> None:
    assert connection_failure(exc) == reason
