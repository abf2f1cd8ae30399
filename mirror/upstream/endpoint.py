"""Where an upstream registry lives and how to talk to it: a plain, frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field

from yarl import URL

from mirror.upstream.limits import UpstreamLimits


@dataclass(frozen=True, slots=True)
class UpstreamEndpoint:
    """One upstream registry.

    ``host`` is the registry host clients name (``docker.io``, ``127.0.0.1:5000``); ``url`` is
    the base URL actually spoken to (``https://registry-1.docker.io``). Timeouts are seconds:
    ``connect_timeout`` bounds opening a socket, ``read_timeout`` each wait for bytes (not the
    whole transfer, so large blobs stream as long as bytes keep coming). ``retries`` counts
    extra attempts after the first one for idempotent requests. ``forward_ns`` marks ``url`` as
    another mirror (chaining): requests name the registry with ``?ns=<host>``, as containerd
    names it to a mirror. ``limits`` keeps the mirror under the upstream's rate limits.
    """

    host: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 3
    ca_file: str | None = None
    verify_tls: bool = True
    # Consecutive failed attempts before failing fast, and for how long (0 disables).
    breaker_threshold: int = 3
    breaker_cooldown: float = 30.0
    # ``url`` is another mirror: send containerd's ``?ns=<host>`` with every registry request.
    forward_ns: bool = False
    # Connections, requests a second and bytes a second this upstream may take (0: no limit).
    limits: UpstreamLimits = field(default_factory=UpstreamLimits)

    def __post_init__(self) -> None:
        base = URL(self.url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(
                f"upstream {self.host!r}: url must be http(s)://host, got {self.url!r}"
            )
        if self.retries < 0:
            raise ValueError(f"upstream {self.host!r}: retries must be >= 0")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"upstream {self.host!r}: set both username and password, or neither")

    @property
    def base_url(self) -> URL:
        """``url`` without a trailing slash, as a URL."""
        return URL(self.url.rstrip("/"))

    @property
    def has_credentials(self) -> bool:
        """Whether a username and password are configured."""
        return self.username is not None and self.password is not None
