"""``mirror`` is built from one module per subcommand, each with ``add`` and ``run``."""

from __future__ import annotations

import pytest

from mirror.cli.main import SUBCOMMANDS, main, parser


def test_every_subcommand_is_a_module_named_after_it() -> None:
    assert list(SUBCOMMANDS) == ["serve", "admin", "demo", "cache", "keys", "retention"]
    for name, module in SUBCOMMANDS.items():
        assert getattr(module, "__name__", "") == f"mirror.cli.{name}"
        assert callable(module.add) and callable(module.run)


def test_help_lists_the_subcommands_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["--help"])
    assert done.value.code == 0
    assert "{serve,admin,demo,cache,keys,retention}" in capsys.readouterr().out


def test_main_dispatches_to_the_subcommand_and_returns_its_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRROR_RETENTION_COOLING_PERIOD", "-1")
    assert main(["retention", "policy", "list"]) == 2
    assert "mirror retention: configuration error: retention.cooling_period" in (
        capsys.readouterr().err
    )
