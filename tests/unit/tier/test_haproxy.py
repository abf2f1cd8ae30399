"""The HAProxy configuration: ``mirror tier haproxy-config`` prints it for weighted replicas,
Debian's HAProxy accepts it, and bad replicas are refused with a message."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mirror.cli.main import main
from mirror.tier.haproxy import HAProxyTier, render
from mirror.tier.haproxy_ring import server_id
from tests.peers.haproxy import haproxy_binary

SERVERS = ("mirror-0.mirror:5016", "mirror-1.mirror:5016", "mirror-2.mirror:5016")


def test_haproxy_config_prints_each_replica_with_its_id_and_weight(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["tier", "haproxy-config", "--listen", "0.0.0.0:5000"]
    argv += ["--replica", f"http://{SERVERS[0]} weight=2"]
    argv += [arg for server in SERVERS[1:] for arg in ("--replica", f"http://{server}")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    expected = HAProxyTier(SERVERS, listen="0.0.0.0:5000", weights={SERVERS[0]: 2})
    assert out == render(expected)
    lines = re.findall(r"server replica-(\d+) (\S+) id (\d+) weight (\d+)", out)
    assert lines == [
        (str(server_id(s)), s, str(server_id(s)), "2" if s == SERVERS[0] else "1") for s in SERVERS
    ]
    assert "balance hash var(txn.mirror_tier_key)" in out
    assert "hash-type consistent crc32" in out


@pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_generated_configuration(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(HAProxyTier(["127.0.0.1:5001", "127.0.0.1:5002"])))
    checked = subprocess.run(
        [str(haproxy_binary()), "-c", "-f", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        (["ftp://a:1"], "replica URL"),
        (["http://a:1", "http://a:1/"], "given twice"),
        (["http://a:1 weight=x"], "'URL weight=N'"),
        (["http://a:1 weight=0"], "weight must be 1 to 256"),
    ],
    ids=["bad-url", "twice", "bad-weight", "zero-weight"],
)
def test_haproxy_config_refuses_bad_replicas(
    replicas: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tier", "haproxy-config"]
    for url in replicas:
        argv += ["--replica", url]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
