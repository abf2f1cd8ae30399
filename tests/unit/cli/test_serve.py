"""``mirror serve`` flags: ``--upstream HOST[,ALIAS...]=URL[,forward_ns]`` becomes an
upstream table, so a node-local mirror can be chained to a regional one from the command
line alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.cli.main import parser
from mirror.cli.serve import config_from_args
from mirror.config.model import UpstreamConfig


def upstream_of(tmp_path: Path, flag: str, host: str) -> UpstreamConfig:
    """The configured upstream ``host`` after ``mirror serve --upstream FLAG``."""
    args = parser().parse_args(["serve", "--data-dir", str(tmp_path), "--upstream", flag])
    config = config_from_args(args)
    return next(u for u in config.upstreams if u.host == host)


def test_forward_ns_after_the_url_chains_the_upstream_to_another_mirror(tmp_path: Path) -> None:
    chained = upstream_of(tmp_path, "docker.io=http://regional.test:5016,forward_ns", "docker.io")
    assert chained.url == "http://regional.test:5016"
    assert chained.forward_ns is True


def test_without_it_an_upstream_is_the_registry_itself(tmp_path: Path) -> None:
    direct = upstream_of(tmp_path, "ghcr.io,gh=https://ghcr.io", "ghcr.io")
    assert direct.forward_ns is False
    assert direct.aliases == ("gh",)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("docker.io=http://r.test,forward", "unknown option 'forward'"),
        ("docker.io=,forward_ns", "expected HOST=URL, or HOST[,ALIAS...]=URL[,forward_ns]"),
    ],
    ids=["unknown-option", "no-url"],
)
def test_a_bad_option_is_refused_naming_it(
    flag: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["serve", "--upstream", flag])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
