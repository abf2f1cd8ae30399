"""``server.workers``: a count or "auto", and more than one only where no state needs one
process's memory."""

from __future__ import annotations

import pytest

from mirror.config import ConfigError, load_config

SINGLE_PROCESS = {"console": {"enabled": False}}


@pytest.mark.parametrize(
    ("value", "count"), [(1, 1), (4, 4), ("3", 3), ("auto", 8)], ids=["one", "four", "env", "auto"]
)
def test_workers_is_a_count_or_auto_for_one_per_cpu(value: object, count: int) -> None:
    config = load_config(None, overrides={"server": {"workers": value}, **SINGLE_PROCESS})
    assert config.server.worker_count(8) == count


@pytest.mark.parametrize("value", [0, -2, "two", 1.5], ids=["zero", "negative", "word", "half"])
def test_anything_else_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"server\.workers"):
        load_config(None, overrides={"server": {"workers": value}, **SINGLE_PROCESS})


@pytest.mark.parametrize(
    ("table", "conflict"),
    [
        ({"console": {"enabled": True}}, "console.enabled"),
        ({"retention": {"max_size": 1 << 30}, **SINGLE_PROCESS}, "retention.max_size"),
        ({"hosted": {"tenancy_max_bytes": 1 << 20}, **SINGLE_PROCESS}, "hosted.tenancy_max_bytes"),
    ],
    ids=["console", "capacity", "quota"],
)
def test_more_than_one_worker_is_refused_with_state_kept_in_one_process(
    table: dict[str, object], conflict: str
) -> None:
    with pytest.raises(ConfigError, match=rf"server\.workers: .* {conflict}"):
        load_config(None, overrides={"server": {"workers": 2}, **table})
