"""htpasswd files for ``docker-registry``'s Basic auth, which accepts bcrypt entries only."""

from __future__ import annotations

import warnings
from pathlib import Path


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """Write an htpasswd file (bcrypt, as docker-registry requires) for ``users``.

    Uses libxcrypt through the ``crypt`` module (deprecated, present up to Python 3.12) at the
    lowest cost so that each authenticated request stays fast.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    lines = [
        f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"
        for user, password in users.items()
    ]
    path.write_text("".join(lines))
    return path
