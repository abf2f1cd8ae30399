"""What scenario 12 counts at the upstream: requests from docker-registry's log lines (with
the client's User-Agent, so the load generator's direct HEADs are told from the mirror's),
and TCP connections, except while another client's are excluded."""

from __future__ import annotations

import socket
import time

import pytest

from benchmarks.inflight import ConnectionSampler, established, parse_served

LINE = (
    'time="2026-12-01T17:52:06.40652502Z" level=info msg="response completed" go.version=go1.19.8'
    ' http.request.host="127.0.0.1:60695" http.request.method=HEAD'
    ' http.request.remoteaddr="127.0.0.1:47050" http.request.uri="/v2/bench/index/manifests/v1"'
    " http.request.useragent={agent} http.response.duration=1.922797ms"
    " http.response.status=200"
)


def test_a_served_request_names_its_client() -> None:
    served = parse_served(
        "\n".join([LINE.format(agent="mirror-bench-loadgen"), LINE.format(agent='"mirror/1 x"')])
    )
    assert [s.agent for s in served] == ["mirror-bench-loadgen", "mirror/1 x"]
    assert served[0].end - served[0].start == pytest.approx(0.001922797, abs=1e-6)
    assert served[0].method == "HEAD" and served[0].uri == '"/v2/bench/index/manifests/v1"'


def test_a_line_without_a_user_agent_is_still_a_request() -> None:
    (served,) = parse_served(LINE.replace(" http.request.useragent={agent}", ""))
    assert served.agent == "" and served.method == "HEAD"


def connect(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


def test_connections_opened_while_excluded_are_not_counted() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        port = server.getsockname()[1]
        mine = connect(port, 2)
        with ConnectionSampler(port, interval=0.005) as sampler:
            time.sleep(0.1)
            with sampler.excluded():
                others = connect(port, 5)
                assert established(port) == 7
                time.sleep(0.1)
                for sock in others:
                    sock.close()
            while established(port) > 2:
                time.sleep(0.01)
            time.sleep(0.1)
        for sock in mine:
            sock.close()
    assert sampler.peak == 2 and sampler.samples > 3
