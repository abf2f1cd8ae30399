"""The configured key source: a key command runs again on the app's clock, not the system's."""

from __future__ import annotations

import sys

from mirror.app.stores import key_source
from mirror.clock import ManualClock
from mirror.config import EncryptionConfig
from mirror.crypto.keys import Keyring, new_kek


def test_a_key_command_is_refreshed_when_the_given_clock_says_so() -> None:
    ring = Keyring((new_kek(lambda n: b"k" * n, 0.0),))
    helper = (sys.executable, "-c", f"print({ring.format()!r})")
    clock = ManualClock()
    enc = EncryptionConfig(kek_source="command", kek_command=helper, kek_command_refresh=30.0)
    source = key_source(enc, {}, clock)

    assert source.load() == ring
    clock.advance(29.0)
    assert not source.changed()
    clock.advance(1.0)
    assert source.changed()
