"""The mirror as a hosted registry for the push scenario: auth on, a tenancy ``bench`` and a
user ``bench/pusher`` in its ``administrators`` group (so its first push creates the
repository), provisioned through the admin API with the administrator token the first start
prints."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks.servers import MirrorServer, MirrorVariant, mirror_variants

TENANCY = "bench"
USER = "pusher"
AUTH_TOML = "[auth]\nenabled = true\n"
_ANNOUNCED = re.compile(rb"its auth token \(shown only now\) is: (\S+)")
WITHIN = 10.0


@dataclass(frozen=True)
class Pusher:
    """A user's login (``TENANCY/USER``) and the file holding its auth token."""

    login: str
    token_file: Path

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()


def push_variants(
    extra_args: tuple[str, ...] = (), hash_cost: int | None = None
) -> list[MirrorVariant]:
    """Every mirror configuration of :func:`mirror_variants` with auth turned on (and
    ``auth.hash_cost``, the cost of checking an auth token at login, when given)."""
    auth = AUTH_TOML + (f"hash_cost = {hash_cost}\n" if hash_cost else "")
    return [MirrorVariant(v.label, v.args, auth + v.toml) for v in mirror_variants(extra_args)]


def admin_token(server: MirrorServer) -> str:
    """The first administrator's token, from the mirror's log of its first start."""
    deadline = time.monotonic() + WITHIN
    log = server.base_dir / "mirror.log"
    while time.monotonic() < deadline:
        found = _ANNOUNCED.search(log.read_bytes()) if log.exists() else None
        if found:
            return found.group(1).decode()
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} printed no administrator token")


def _admin(
    server: MirrorServer, token: str, path: str, doc: dict[str, object]
) -> dict[str, object]:
    basic = base64.b64encode(f"admin/admin:{token}".encode()).decode()
    request = urllib.request.Request(
        f"{server.url}/admin/v1{path}",
        data=json.dumps(doc).encode(),
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def provision(server: MirrorServer) -> Pusher:
    """Create tenancy ``bench``, user ``bench/pusher`` (an administrator of it) and its auth
    token, written to a file beside the mirror's data."""
    token = admin_token(server)
    _admin(server, token, "/tenancies", {"name": TENANCY})
    _admin(
        server, token, f"/tenancies/{TENANCY}/users", {"name": USER, "groups": ["administrators"]}
    )
    created = _admin(
        server, token, f"/tenancies/{TENANCY}/users/{USER}/tokens", {"description": "bench"}
    )
    token_file = server.base_dir / "pusher.token"
    token_file.write_text(str(created["token"]))
    token_file.chmod(0o600)
    return Pusher(f"{TENANCY}/{USER}", token_file)
