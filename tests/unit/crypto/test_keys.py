"""Key-encryption keys, the keyring text format, and the three key sources."""

from __future__ import annotations

import base64
import os
import random
import stat
import sys
from pathlib import Path

import pytest

from mirror.clock import ManualClock
from mirror.crypto.keys import KEK_SIZE, Kek, Keyring, KeyringError, new_kek
from mirror.crypto.sources import KeyCommand, KeyEnv, KeyFile


def kek(name: str, fill: int) -> Kek:
    return Kek(name, bytes([fill]) * KEK_SIZE)


def entry(k: Kek) -> str:
    return f"{k.id}:{base64.b64encode(k.key).decode()}"


# Keyring --------------------------------------------------------------------------------------


def test_format_and_parse_round_trip_with_current_first() -> None:
    ring = Keyring((kek("new", 2), kek("old", 1)))

    parsed = Keyring.parse(ring.format(), "test")

    assert parsed == ring
    assert parsed.current.id == "new"
    assert parsed.get("old") == kek("old", 1)
    assert parsed.get("nope") is None
    assert parsed.ids() == ("new", "old")


def test_parse_accepts_commas_comments_and_blank_lines() -> None:
    text = f"# keys\n\n{entry(kek('a', 1))}, {entry(kek('b', 2))}  # trailing comment\n"

    assert Keyring.parse(text, "env").ids() == ("a", "b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "holds no KEK", id="empty"),
        pytest.param("# only a comment\n", "holds no KEK", id="comment-only"),
        pytest.param("no-separator", "expected ID:BASE64KEY", id="no-colon"),
        pytest.param("a:!!!notbase64", "not base64", id="bad-base64"),
        pytest.param(f"a:{base64.b64encode(b'short').decode()}", "expected 32 bytes", id="short"),
        pytest.param(f"bad id:{base64.b64encode(bytes(32)).decode()}", "KEK id", id="bad-id"),
        pytest.param(f"{entry(kek('a', 1))}\n{entry(kek('a', 2))}", "twice", id="duplicate"),
    ],
)
def test_parse_rejects_malformed_keyrings_naming_the_source(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message) as caught:
        Keyring.parse(text, "key file /etc/mirror.kek")
    assert str(caught.value).startswith("key file /etc/mirror.kek: ")


def test_with_current_and_without() -> None:
    ring = Keyring((kek("one", 1),)).with_current(kek("two", 2))

    assert ring.current.id == "two"
    assert ring.without("one").ids() == ("two",)
    with pytest.raises(KeyringError, match="current KEK"):
        ring.without("two")
    with pytest.raises(KeyringError, match="no KEK"):
        ring.without("three")


def test_check_value_tells_keys_apart_and_hides_them() -> None:
    assert kek("a", 1).check_value() == kek("a", 1).check_value()
    assert kek("a", 1).check_value() != kek("a", 2).check_value()
    assert kek("a", 1).key.hex() not in kek("a", 1).check_value()
    assert "key=" not in repr(kek("a", 1))


def test_new_kek_id_carries_the_day_and_randomness_is_a_parameter() -> None:
    rng = random.Random(7)

    made = new_kek(rng.randbytes, 1_700_000_000.0)

    assert made.id.startswith("kek-20231114-") and len(made.key) == KEK_SIZE
    assert new_kek(random.Random(7).randbytes, 1_700_000_000.0) == made


# Key file ------------------------------------------------------------------------------------


def test_key_file_is_created_private_and_loads(tmp_path: Path) -> None:
    source = KeyFile(tmp_path / "keys" / "mirror.kek")

    created = source.create(os.urandom, 1_700_000_000.0)

    assert stat.S_IMODE(source.path.stat().st_mode) == 0o600
    assert source.load() == created
    assert not source.changed()
    with pytest.raises(FileExistsError):
        source.create(os.urandom, 1_700_000_000.0)


@pytest.mark.parametrize(
    ("mode", "wrong"),
    [
        pytest.param(0o644, "wrong bits o+r (others may read it); chmod 600", id="world-read"),
        pytest.param(0o604, "wrong bits o+r (others may read it);", id="world-only"),
        pytest.param(0o660, "too open: wrong bits g+w (its group may write it);", id="group-w"),
        pytest.param(0o666, "g+w (its group may write it), o+r (others may read it), o+w", id="rw"),
    ],
)
def test_key_file_with_loose_permissions_is_refused_naming_the_bits(
    tmp_path: Path, mode: int, wrong: str
) -> None:
    source = KeyFile(tmp_path / "mirror.kek")
    source.create(os.urandom, 0.0)
    source.path.chmod(mode)

    with pytest.raises(KeyringError, match=f"mode {mode:04o}, ") as refused:
        source.load()
    assert wrong in str(refused.value)


@pytest.mark.parametrize("mode", [0o640, 0o440, 0o400], ids=["0640", "0440", "0400"])
def test_a_group_readable_key_file_is_accepted_as_a_secret_mount_gives_it(
    tmp_path: Path, mode: int
) -> None:
    """A Kubernetes Secret volume with ``fsGroup``: root-owned, mode 0440, read by the group."""
    source = KeyFile(tmp_path / "mirror.kek")
    ring = source.create(os.urandom, 0.0)
    source.path.chmod(mode)
    if os.geteuid() == 0:
        os.chown(source.path, 0, 4242)  # root-owned, the pod's fsGroup as its group

    assert source.load() == ring


def test_a_key_file_is_described_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert KeyFile(Path("mirror.kek")).describe() == f"key file {tmp_path / 'mirror.kek'}"


def test_missing_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="does not exist"):
        KeyFile(tmp_path / "absent.kek").load()


def test_key_file_save_is_noticed_as_a_change(tmp_path: Path) -> None:
    source = KeyFile(tmp_path / "mirror.kek")
    ring = source.create(os.urandom, 0.0)
    source.load()

    source.save(ring.with_current(kek("next", 9)))

    assert source.changed()
    assert source.load().current.id == "next"
    assert stat.S_IMODE(source.path.stat().st_mode) == 0o600
    assert not source.changed()


# Environment and command ---------------------------------------------------------------------


def test_env_source() -> None:
    ring = Keyring((kek("a", 1), kek("b", 2)))
    value = ",".join(entry(k) for k in ring.keks)

    assert KeyEnv("KEKS", {"KEKS": value}).load() == ring
    assert not KeyEnv("KEKS", {"KEKS": value}).changed()
    with pytest.raises(KeyringError, match="environment variable KEKS is not set"):
        KeyEnv("KEKS", {}).load()


def test_command_source_runs_the_helper_and_refreshes_on_schedule() -> None:
    ring = Keyring((kek("vault", 3),))
    clock = ManualClock()
    source = KeyCommand(
        (sys.executable, "-c", f"print({ring.format()!r})"), refresh=60.0, clock=clock
    )

    assert source.changed()
    assert source.load() == ring
    assert not source.changed()
    clock.advance(60.0)
    assert source.changed()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            (sys.executable, "-c", "import sys; sys.stderr.write('denied'); sys.exit(3)"),
            "exited 3: denied",
            id="fails",
        ),
        pytest.param(("/nonexistent/helper",), "could not run", id="missing"),
        pytest.param((sys.executable, "-c", "print('garbage')"), "expected ID:BASE64KEY", id="bad"),
    ],
)
def test_command_source_failures_are_clear(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        KeyCommand(argv).load()


def test_command_source_times_out() -> None:
    source = KeyCommand((sys.executable, "-c", "import time; time.sleep(5)"), timeout=0.2)

    with pytest.raises(KeyringError, match="could not run"):
        source.load()


def test_empty_command_is_refused() -> None:
    with pytest.raises(KeyringError, match="empty command"):
        KeyCommand(())
