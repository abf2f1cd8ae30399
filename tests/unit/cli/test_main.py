"""``mirror`` is built from one module per subcommand, each with ``add`` and ``run``."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mirror.cli.main import SUBCOMMANDS, chosen, main, parser


def test_every_subcommand_is_a_module_named_after_it() -> None:
    assert list(SUBCOMMANDS) == [
        "serve",
        "admin",
        "demo",
        "cache",
        "keys",
        "retention",
        "check",
        "prewarm",
        "export",
        "import",
        "bench",
        "db",
        "tier",
        "healthcheck",
    ]
    # ``import`` is a Python keyword: its module is ``importer``.
    module_names = {"import": "importer"}
    for name, module in SUBCOMMANDS.items():
        assert getattr(module, "__name__", "") == f"mirror.cli.{module_names.get(name, name)}"
        assert callable(module.add) and callable(module.run)


def test_help_lists_the_subcommands_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["--help"])
    assert done.value.code == 0
    listed = (
        "{serve,admin,demo,cache,keys,retention,check,prewarm,export,import,bench,db,tier,"
        "healthcheck}"
    )
    assert listed in capsys.readouterr().out


def test_main_dispatches_to_the_subcommand_and_returns_its_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRROR_RETENTION_COOLING_PERIOD", "-1")
    assert main(["retention", "policy", "list"]) == 2
    assert "mirror retention: configuration error: retention.cooling_period" in (
        capsys.readouterr().err
    )


def _help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["--version"])
    assert done.value.code == 0
    assert re.fullmatch(r"mirror \d+\.\d+\S*\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "keys", "list"],
        ["keys", "list", "--log-level", "debug"],
        ["admin", "tenancy", "list", "--log-level", "DEBUG"],
        ["retention", "--log-level", "debug", "policy", "list"],
    ],
    ids=["before", "after", "nested", "middle"],
)
def test_log_level_goes_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert args.log_level == "DEBUG" and args.log_format == "text"


def test_log_format_after_the_subcommand() -> None:
    assert parser().parse_args(["serve", "--log-format", "json"]).log_format == "json"


def test_a_bad_log_level_is_a_usage_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--log-level", "loud"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "unknown log level 'loud': choose from DEBUG, INFO, WARNING, ERROR" in err
    assert "Traceback" not in err


def test_serve_help_shows_defaults_and_the_precedence(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help_of(["serve"], capsys).split())
    assert "(default: 127.0.0.1:5016)" in text and "(default: ./data)" in text
    assert "(default: docker.io)" in text and "(default: 60)" in text
    assert "the defaults in the code, the --config file" in text
    assert "MIRROR_<SECTION>_<KEY> environment variables" in text and "then these flags" in text


def _every_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Iterator[str]:
    yield _help_of(argv, capsys)
    top = parser()
    node: argparse.ArgumentParser = top
    for word in argv:
        node = next(
            a.choices[word] for a in node._actions if isinstance(a, argparse._SubParsersAction)
        )
    for action in node._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name in action.choices:
                yield from _every_help([*argv, name], capsys)


def test_no_help_text_shows_rst_markup(capsys: pytest.CaptureFixture[str]) -> None:
    for text in _every_help([], capsys):
        assert "``" not in text and ":mod:" not in text, text


def test_every_admin_option_and_argument_has_help() -> None:
    top = parser()
    admin = next(
        a.choices["admin"] for a in top._actions if isinstance(a, argparse._SubParsersAction)
    )
    stack, seen = [admin], 0
    while stack:
        node = stack.pop()
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
                for choice in action._choices_actions:
                    assert choice.help, f"{node.prog} {choice.dest}: no help"
            else:
                seen += 1
                assert action.help, f"{node.prog} {action.option_strings or action.dest}: no help"
    assert seen > 100


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["export", "alpine", "-o", "b.tar"], "export"),
        (["--log-level", "debug", "import", "b.tar"], "import"),
        (["--log-format=json", "serve"], "serve"),
        (["--log-level", "serve", "keys"], "keys"),
        (["--help"], None),
        (["bogus", "serve"], None),
    ],
    ids=["first-word", "after-valued-option", "option-with-equals", "value-not-command",
         "none", "unknown"],
)  # fmt: skip
def test_the_chosen_subcommand_is_the_first_word_that_is_not_an_option(
    argv: list[str], command: str | None
) -> None:
    assert chosen(argv) == command


def test_a_command_imports_no_other_subcommand() -> None:
    """Start-up time: ``mirror export`` does not import ``check``, ``admin``, the server..."""
    probe = (
        "import sys\n"
        "from mirror.cli.main import main\n"
        "try:\n"
        "    main(['export', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('mirror.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "mirror.cli.export" in loaded
    for other in ("check", "admin", "serve", "retention", "importer", "cache"):
        assert f"'mirror.cli.{other}'" not in loaded, loaded


def test_tier_lists_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["tier", "--help"])
    assert done.value.code == 0
    assert "{nginx-config,haproxy-config,repair}" in capsys.readouterr().out
