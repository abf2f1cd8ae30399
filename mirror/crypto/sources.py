"""Where the keyring comes from: a key file, an environment variable, or an external command
(the way credential helpers work, for Vault or a cloud KMS)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from mirror.clock import Clock, SystemClock
from mirror.crypto.keys import Keyring, KeyringError, new_kek


class KeySource(Protocol):
    """A source of the keyring."""

    def describe(self) -> str:
        """Where the keys come from, for messages."""
        ...

    def load(self) -> Keyring:
        """The keyring now; raises ``KeyringError`` with a message saying what is wrong."""
        ...

    def changed(self) -> bool:
        """Whether the keyring may differ from the last ``load`` (cheap to ask)."""
        ...


# Mode bits a key file may not have, with how each is named in the refusal. Group read is
# allowed: a Kubernetes Secret mount is root-owned and group-readable (fsGroup, mode 0440).
_WRONG_BITS = (
    (0o020, "g+w (its group may write it)"),
    (0o010, "g+x"),
    (0o004, "o+r (others may read it)"),
    (0o002, "o+w (others may write it)"),
    (0o001, "o+x"),
)


def wrong_bits(mode: int) -> list[str]:
    """The permission bits of ``mode`` a key file must not have, named (empty when fine)."""
    return [name for bit, name in _WRONG_BITS if mode & bit]


class KeyFile:
    """A keyring file, which must not be writable by its group nor readable by others
    (readable by its group is fine, as a Kubernetes Secret mount with ``fsGroup`` gives).

    ``create`` makes it (mode 0600, one fresh KEK) when it does not exist: only do that for
    a new cache, or the objects of an existing one become unreadable.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None

    def describe(self) -> str:
        """How log lines and errors name this source (the file's absolute path)."""
        # Absolute: a relative path means nothing to someone reading a log elsewhere.
        return f"key file {self.path.absolute()}"

    def exists(self) -> bool:
        """Whether the key file exists."""
        return self.path.exists()

    def create(self, random_bytes: Callable[[int], bytes], now: float) -> Keyring:
        """Write a new keyring with one KEK; fails if the file already exists."""
        ring = Keyring((new_kek(random_bytes, now),))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(ring.format())
            out.flush()
            os.fsync(out.fileno())
        return ring

    def load(self) -> Keyring:
        """The keyring in the file; ``KeyringError`` when missing, readable by others or
        malformed."""
        try:
            info = os.stat(self.path)
            text = self.path.read_text()
        except FileNotFoundError:
            raise KeyringError(f"{self.describe()} does not exist") from None
        except OSError as exc:
            raise KeyringError(f"{self.describe()}: {exc.strerror}") from None
        mode = stat.S_IMODE(info.st_mode)
        wrong = wrong_bits(mode)
        if wrong:
            opened = "readable by others" if mode & 0o004 else "too open"
            raise KeyringError(
                f"{self.describe()} has mode {mode:04o}, {opened}: wrong bits "
                f"{', '.join(wrong)}; chmod 600 it (or 640/440 to let its group read it)"
            )
        self._seen = _identity(info)
        return Keyring.parse(text, self.describe())

    def changed(self) -> bool:
        """Whether the file changed since it was loaded (another inode, size or mtime)."""
        try:
            return _identity(os.stat(self.path)) != self._seen
        except FileNotFoundError:
            return True

    def save(self, ring: Keyring) -> None:
        """Replace the file atomically (same mode 0600)."""
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.new")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(ring.format())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)


def _identity(info: os.stat_result) -> tuple[int, int, int]:
    return (info.st_ino, info.st_mtime_ns, info.st_size)


class KeyEnv:
    """A keyring in an environment variable (entries separated by commas or newlines)."""

    def __init__(self, name: str, environ: Mapping[str, str]) -> None:
        self.name = name
        self._environ = environ

    def describe(self) -> str:
        """How log lines and errors name this source."""
        return f"environment variable {self.name}"

    def load(self) -> Keyring:
        """The keyring in the variable; ``KeyringError`` when unset or malformed."""
        text = self._environ.get(self.name)
        if not text:
            raise KeyringError(f"{self.describe()} is not set")
        return Keyring.parse(text, self.describe())

    def changed(self) -> bool:
        """An environment variable does not change while the process runs."""
        return False


class KeyCommand:
    """A command that prints the keyring on stdout; run again when a key is not found, and
    at most every ``refresh`` seconds (on ``clock.monotonic``) to pick up a new current KEK."""

    def __init__(
        self,
        argv: tuple[str, ...],
        *,
        timeout: float = 30.0,
        refresh: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        if not argv:
            raise KeyringError("encryption.kek_command: empty command")
        self.argv = argv
        self.timeout = timeout
        self.refresh = refresh
        self._clock = clock or SystemClock()
        self._loaded_at: float | None = None

    def describe(self) -> str:
        """How log lines and errors name this source (the command, not its arguments)."""
        return f"key command {self.argv[0]}"

    def load(self) -> Keyring:
        """The keyring the command prints; ``KeyringError`` when it fails, times out or prints
        no keyring."""
        try:
            done = subprocess.run(
                self.argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KeyringError(f"{self.describe()} could not run: {exc}") from None
        if done.returncode != 0:
            raise KeyringError(
                f"{self.describe()} exited {done.returncode}: {done.stderr.strip()[:200]}"
            )
        self._loaded_at = self._clock.monotonic()
        return Keyring.parse(done.stdout, self.describe())

    def changed(self) -> bool:
        """Whether the refresh interval passed since the command last ran."""
        loaded = self._loaded_at
        return loaded is None or self._clock.monotonic() - loaded >= self.refresh
