"""What the upstream saw at once (scenario 12's facts): requests in flight from
docker-registry's own log, and the TCP connections it holds, from /proc/net/tcp."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from benchmarks.inflight import (
    ESTABLISHED,
    ConnectionSampler,
    established,
    go_duration,
    parse_served,
    peak_overlap,
)

pytestmark = pytest.mark.integration

LINE = (
    'time="2026-12-01T11:54:08.{frac}Z" level=info msg="response completed" '
    'go.version=go1.19.8 http.request.host="127.0.0.1:37099" http.request.id=x '
    'http.request.method={method} http.request.remoteaddr="127.0.0.1:53344" '
    "http.request.uri={uri} http.request.useragent=mirror/1 "
    'http.response.contenttype="application/json" http.response.duration={duration} '
    "http.response.status=200 http.response.written=2"
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("14.916101ms", 0.014916101), ("850µs", 0.00085), ("1m2.5s", 62.5), ("3ns", 3e-9)],
    ids=["ms", "micro", "minutes", "ns"],
)
def test_go_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


def test_each_finished_request_is_the_interval_the_registry_measured() -> None:
    log = "\n".join(
        [
            LINE.format(
                frac="500000000", method="GET", uri='"/v2/r/blobs/sha256:a"', duration="400ms"
            ),
            'time="2026-12-01T11:54:08Z" level=info msg="listening on 127.0.0.1:1"',
            LINE.format(
                frac="250000000", method="HEAD", uri="/v2/r/manifests/v1", duration="1.5ms"
            ),
        ]
    )
    served = parse_served(log)
    assert [(s.method, s.uri) for s in served] == [
        ("GET", '"/v2/r/blobs/sha256:a"'),
        ("HEAD", "/v2/r/manifests/v1"),
    ]
    assert served[0].end - served[0].start == pytest.approx(0.4)
    assert served[1].end - served[0].end == pytest.approx(-0.25)
    # The HEAD ran inside the GET: two at once.
    assert peak_overlap(served) == 2


def test_requests_one_after_the_other_never_overlap() -> None:
    log = "\n".join(
        LINE.format(frac=f"{i}00000000", method="HEAD", uri="/v2/r/manifests/v1", duration="100ms")
        for i in range(1, 6)
    )
    assert peak_overlap(parse_served(log)) == 1
    assert peak_overlap([]) == 0


def test_the_server_side_of_established_connections_is_counted() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert established(port) == 0
        with ConnectionSampler(port, interval=0.005) as sampler:
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            accepted = [server.accept()[0] for _ in clients]
            deadline = time.monotonic() + 5
            while (sampler.samples < 3 or sampler.peak < 3) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert established(port) == 3
            for sock in clients + accepted:
                sock.close()
        assert sampler.peak == 3


TABLE_HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def row(n: int, local: str, remote: str, state: str) -> str:
    return f"{n:4}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 0 0 1\n"


def test_a_connection_listed_twice_by_a_torn_read_counts_once(tmp_path: Path) -> None:
    # Port 0x1F90 = 8080: two connections to it, one of them listed twice (the row at a
    # read's resume point), one in TIME_WAIT, and a client-side row whose peer is 8080.
    rows = [
        row(0, "0100007F:1F90", "00000000:0000", "0A"),
        row(1, "0100007F:1F90", "0100007F:C350", ESTABLISHED),
        row(2, "0100007F:1F90", "0100007F:C351", ESTABLISHED),
        row(3, "0100007F:1F90", "0100007F:C351", ESTABLISHED),
        row(4, "0100007F:1F90", "0100007F:C352", "06"),
        row(5, "0100007F:C350", "0100007F:1F90", ESTABLISHED),
    ]
    table = tmp_path / "tcp"
    table.write_text(TABLE_HEAD + "".join(rows))
    assert established(8080, str(table)) == 2
