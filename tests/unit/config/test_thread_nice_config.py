"""``server.thread_nice``: how far below the event loop the blocking-work threads run."""

from __future__ import annotations

import pytest

from mirror.config import ConfigError, load_config


def test_the_default_runs_blocking_work_ten_below_the_loop() -> None:
    assert load_config(None).server.thread_nice == 10


@pytest.mark.parametrize("value", [0, 19], ids=["same-priority", "lowest"])
def test_any_nice_increment_is_accepted(value: int) -> None:
    config = load_config(None, overrides={"server": {"thread_nice": value}})
    assert config.server.thread_nice == value


@pytest.mark.parametrize("value", [-1, 20], ids=["above-the-loop", "beyond-19"])
def test_anything_else_is_refused_naming_the_key(value: int) -> None:
    with pytest.raises(ConfigError, match=r"server\.thread_nice"):
        load_config(None, overrides={"server": {"thread_nice": value}})
