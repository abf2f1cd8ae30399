"""``mirror bench`` flags: sizes with units, workload lists, and unsafe or nonsensical
combinations refused with exit status 2 before anything is sent."""

from __future__ import annotations

import argparse

import pytest

from mirror.bench.plan import WORKLOADS
from mirror.cli.bench_flags import counts, size, workloads
from mirror.cli.main import main


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8MiB", 8 << 20), ("256KiB", 256 << 10), ("1G", 1 << 30), ("4096", 4096), ("2 M", 2 << 20)],
)
def test_sizes_take_binary_units(text: str, expected: int) -> None:
    assert size(text) == expected


def test_bad_lists_and_sizes_are_argument_errors() -> None:
    for parse, text in ((size, "8 parsecs"), (workloads, "pull,teleport"), (counts, "0,4")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    assert workloads("all") == WORKLOADS
    assert workloads("manifest, pull") == ("manifest", "pull")


@pytest.mark.parametrize(
    "argv",
    [
        ["http://127.0.0.1:1", "--workload", "push"],
        ["http://127.0.0.1:1", "--origin", "http://127.0.0.1:2"],
        ["http://127.0.0.1:1", "--rate", "0"],
        ["http://127.0.0.1:1", "--deadline", "0"],
        ["ftp://127.0.0.1:1"],
        ["http://127.0.0.1:1", "--user", "nocolon"],
    ],
    ids=[
        "push-needs-allow-push",
        "origin-needs-allow-push",
        "rate-zero",
        "deadline-zero",
        "not-http",
        "bad-user",
    ],
)
def test_refused_before_anything_is_sent(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *argv]) == 2
    assert capsys.readouterr().err.startswith("mirror bench: ")
