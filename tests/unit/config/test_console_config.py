from pathlib import Path

import pytest

from mirror.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "conf" / "mirror.example.toml"


def test_the_console_is_on_with_an_eight_hour_session_by_default() -> None:
    console = load_config(environ={}).console
    assert (console.enabled, console.session_lifetime, console.sample_interval) == (
        True,
        8 * 3600.0,
        10.0,
    )


def test_the_example_file_documents_every_console_key() -> None:
    text = EXAMPLE.read_text()
    for key in ("[console]", "# enabled", "# session_lifetime", "# sample_interval"):
        assert key in text


@pytest.mark.parametrize(
    ("console", "message"),
    [
        pytest.param({"session_lifetime": 10}, "console.session_lifetime", id="too-short"),
        pytest.param({"session_lifetime": 31 * 86400}, "console.session_lifetime", id="too-long"),
        pytest.param({"sample_interval": 0}, "console.sample_interval", id="no-interval"),
    ],
)
def test_bad_console_settings_are_refused_naming_the_key(
    console: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"console": console}, environ={})


def test_the_environment_sets_console_keys() -> None:
    config = load_config(environ={"MIRROR_CONSOLE_ENABLED": "false"})
    assert config.console.enabled is False
