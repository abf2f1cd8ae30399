"""The nginx configuration: the shipped template is what the generator prints, it hashes as
the spec says, and ``mirror tier nginx-config`` prints it for the given replicas."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mirror.cli.main import main
from mirror.tier.nginx import NginxTier, render

TEMPLATE = Path(__file__).resolve().parents[3] / "conf" / "nginx-tier.conf"
TEMPLATE_SERVERS = ("mirror-0.mirror:5016", "mirror-1.mirror:5016", "mirror-2.mirror:5016")


def test_the_shipped_template_is_what_the_generator_prints() -> None:
    expected = render(NginxTier(TEMPLATE_SERVERS, listen="0.0.0.0:5000"))
    assert TEMPLATE.read_text() == expected


def test_the_config_hashes_consistently_and_retries_the_next_replica() -> None:
    conf = render(NginxTier(["127.0.0.1:5001", "127.0.0.1:5002"]))
    assert "hash $mirror_tier_key consistent;" in conf
    assert "proxy_next_upstream error timeout http_502 http_503;" in conf
    assert "proxy_next_upstream_tries 2;" in conf
    assert re.findall(r"server (\S+) max_fails", conf) == ["127.0.0.1:5001", "127.0.0.1:5002"]


def test_nginx_config_prints_the_servers_of_the_replica_urls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["tier", "nginx-config", "--listen", "0.0.0.0:5000"]
    for server in TEMPLATE_SERVERS:
        argv += ["--replica", f"http://{server}"]
    assert main(argv) == 0
    assert capsys.readouterr().out == TEMPLATE.read_text()


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        (["ftp://a:1"], "replica URL"),
        (["http://a:1", "http://a:1/"], "given twice"),
    ],
    ids=["bad-url", "twice"],
)
def test_nginx_config_refuses_bad_replicas(
    replicas: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tier", "nginx-config"]
    for url in replicas:
        argv += ["--replica", url]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
