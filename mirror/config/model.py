"""Typed, frozen configuration: defaults in code, a TOML file, ``MIRROR_*`` environment overrides.

Every problem is reported as a ``ConfigError`` that names the offending key.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field

from mirror.oci.names import NAME_PATTERN, is_host
from mirror.oci.reflist import ReferenceListError, parse_reference
from mirror.tier.placement import BALANCERS, make_ring, replica_entry, ring_members, server_of
from mirror.upstream.hosts import HostPattern

MiB = 1024 * 1024
_TENANCY = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# A host name or IP address as a Host header carries it, without the port.
_REGISTRY_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])$")


class ConfigError(Exception):
    """A configuration value is missing, malformed or inconsistent; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    """How the HTTP server listens."""

    # host:port to listen on; loopback by default (plain HTTP is for node-local use).
    listen: str = "127.0.0.1:5016"
    # Write one access-log line per request.
    access_log: bool = True
    # PEM certificate chain and private key: serve HTTPS when both are set.
    tls_cert: str = ""
    tls_key: str = ""
    # PEM CA bundle: require client certificates signed by it (mTLS); needs tls_cert.
    tls_client_ca: str = ""
    # Allow plain HTTP on an address other than loopback (node-local use only).
    allow_plain_http: bool = False
    # Who may read GET /metrics (its labels name upstreams, tenancies and rules): "anonymous",
    # "admin" (Basic credentials of an admin-tenancy administrator; needs auth.enabled), "off"
    # (404), or "auto" = "admin" with auth enabled, else "anonymous".
    metrics: str = "auto"
    # Seconds a client connection may stay idle, or take to send a complete request head, before
    # it is closed (one timer, armed at connect and after each response; trickled bytes do not
    # re-arm it, so slow-header clients are dropped too). Must be positive.
    keepalive_timeout: float = 75.0
    # With auth off, accept anonymous pushes into <tenancy>/<repo> (a seeding station): only
    # on a loopback listen address; refused at start on any other. Without it every write is
    # 405 UNSUPPORTED when auth is off.
    allow_anonymous_push: bool = False
    # Server processes sharing the listen port (SO_REUSEPORT) and the data directory: a whole
    # number >= 1, or "auto" = one per CPU. With more than one, each worker owns a share of
    # the digests and the others read a cold blob from its owner, so each digest is still
    # fetched from upstream once (docs/architecture.md, "Workers").
    workers: int | str = 1
    # How much lower (Linux nice, 0-19) the scheduling priority of the threads that hash, seal
    # and write blobs is than the event loop's, which answers requests: with fewer cores than
    # busy threads, a tag HEAD is answered before a fill's next chunk is sealed. 0: the same.
    thread_nice: int = 10

    def worker_count(self, cpus: int | None) -> int:
        """How many worker processes ``workers`` asks for (``cpus``: ``os.cpu_count()``)."""
        return max(cpus or 1, 1) if self.workers == "auto" else int(self.workers)


@dataclass(frozen=True)
class StorageConfig:
    """Where the cache and its metadata live."""

    # Directory holding blobs/, metadata/ and tmp/.
    data_dir: str = "./data"
    # I/O chunk size when reading from upstream and serving from disk (1 MiB is the sweet spot).
    chunk_size: int = 1 * MiB
    # Seconds an upload session (uploads/<uuid>/ in the data directory) may stay idle before
    # it is unknown (BLOB_UPLOAD_UNKNOWN) and its files are swept. Must be positive. On a tier
    # also the longest a hosted-quota reservation nobody freed is held (a dead replica's go
    # with its connections).
    upload_timeout: float = 86400.0


@dataclass(frozen=True)
class MetadataConfig:
    """Where the metadata (tags, manifests, links, last pulls) lives."""

    # "diskcache": the embedded store in <data_dir>/metadata (one node, the default);
    # "postgres": a PostgreSQL database shared by the replicas of a regional tier.
    backend: str = "diskcache"
    # With backend = "postgres": libpq DSN without a password, e.g.
    # "postgresql://mirror@db.internal:5432/mirror".
    dsn: str = ""
    # The database password: read from this environment variable, or from this file (first
    # line); neither is ever logged. Empty: no password (peer/trust/certificate auth).
    password_env: str = ""
    password_file: str = ""
    # Connections per replica, and seconds one metadata call may take before it fails.
    pool_size: int = 4
    call_timeout: float = 10.0

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad ``metadata.*`` key."""
        if self.backend not in ("diskcache", "postgres"):
            raise ConfigError('metadata.backend: expected "diskcache" or "postgres"')
        if self.backend != "postgres":
            return
        if not self.dsn:
            raise ConfigError('metadata.dsn: required with backend = "postgres"')
        if not self.dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError("metadata.dsn: expected a postgresql:// URL")
        if "@" in self.dsn and ":" in self.dsn.split("://", 1)[1].split("@", 1)[0]:
            raise ConfigError(
                "metadata.dsn: must not carry a password; use metadata.password_env or "
                "metadata.password_file"
            )
        if self.password_env and self.password_file:
            raise ConfigError("metadata.password_env: set it or metadata.password_file, not both")
        if self.pool_size < 1:
            raise ConfigError("metadata.pool_size: must be at least 1")
        if not self.call_timeout > 0:
            raise ConfigError("metadata.call_timeout: must be positive")


@dataclass(frozen=True)
class CacheConfig:
    """Freshness and fill behaviour."""

    # Seconds a tag's digest is trusted before it is revalidated with an upstream HEAD.
    tag_ttl: float = 60.0
    # Seconds past its TTL a cached tag may still be served when upstream is failing.
    max_stale: float = 7 * 24 * 3600.0
    # Upper bound, in seconds, on a blob fill that continues after its clients went away.
    fill_timeout: float = 3600.0
    # Seconds between flushes of batched last-pull times to the metadata store.
    last_pull_flush_interval: float = 5.0
    # Never contact any upstream (air-gapped sites): cached tags never go stale, anything not
    # cached answers a fast 404 saying the mirror is offline. Also `mirror serve --offline`.
    offline: bool = False


@dataclass(frozen=True)
class EncryptionConfig:
    """Encryption at rest of every cached object (blobs and manifests)."""

    # Encrypt the cache; false keeps plaintext files (for disks that are already encrypted).
    enabled: bool = True
    # Where the key-encryption keys (KEKs) come from: "file", "env" or "command".
    kek_source: str = "file"
    # Key file, created with mode 0600 for a new cache; refused if others may read it (group
    # read is accepted, as a Kubernetes Secret mount with fsGroup gives). "" means
    # "<data_dir>.kek": beside the data directory, not inside it (see docs/encryption.md).
    kek_file: str = ""
    # Environment variable holding the keyring, for kek_source = "env".
    kek_env: str = "MIRROR_KEKS"
    # Command printing the keyring on stdout, for kek_source = "command".
    kek_command: tuple[str, ...] = ()
    # Seconds between runs of kek_command to pick up a new current KEK.
    kek_command_refresh: float = 60.0
    # "auto" (AES-256-GCM with AES instructions, else ChaCha20-Poly1305), or either by name.
    cipher: str = "auto"
    # Plaintext bytes per sealed chunk: a range read decrypts only the chunks it covers.
    chunk_size: int = 1 * MiB


@dataclass(frozen=True)
class UpstreamConfig:
    """One upstream registry the mirror pulls through to."""

    # Registry host as clients name it (containerd's ?ns=, the path prefix), e.g. "docker.io".
    host: str
    # Base URL the mirror talks to, e.g. "https://registry-1.docker.io".
    url: str
    # Other names that select this upstream (e.g. "registry-1.docker.io"), as ?ns= or as the
    # first path component. A host with a port also gets the port-free alias of
    # port_free_alias() ("127.0.0.1:5000" -> "127.0.0.1-5000"): podman and skopeo refuse a
    # port inside a repository path (127.0.0.1:5016/127.0.0.1:5000/...).
    aliases: tuple[str, ...] = ()
    # Prefix single-component names with "library/" (Docker Hub's official images).
    library_prefix: bool = False
    # Credentials for the upstream (token or Basic auth); anonymous when unset.
    username: str | None = None
    password: str | None = None
    # Seconds to connect, and to wait between bytes of a response.
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # Retries of idempotent requests on connect errors and 5xx.
    retries: int = 3
    # Consecutive failed attempts (no answer, timeout, 5xx) after which requests to this
    # upstream fail fast for breaker_cooldown seconds, so cached tags are served stale at once.
    # 0 disables the circuit breaker.
    breaker_threshold: int = 3
    breaker_cooldown: float = 30.0
    # PEM CA bundle to verify the upstream's TLS certificate (system CAs when unset).
    ca_file: str | None = None
    # Verify the upstream's TLS certificate (turn off only for tests).
    verify_tls: bool = True
    # The url is another mirror (a regional tier), not the registry itself: every request
    # carries ?ns=<host> so that mirror picks this registry's upstream (docs/airgap.md).
    forward_ns: bool = False
    # Limits to stay under the upstream's rate limits (0: none). Connections open at once
    # (blob transfers leave one for manifests and tokens), requests a second, and blob bytes a
    # second. Manifest and token requests never wait behind blob transfers.
    max_connections: int = 0
    requests_per_second: float = 0.0
    bandwidth: int = 0

    def __post_init__(self) -> None:
        alias = port_free_alias(self.host)
        if alias is not None and alias not in self.aliases:
            object.__setattr__(self, "aliases", (*self.aliases, alias))


def port_free_alias(host: str) -> str | None:
    """The default alias of a host with a port (``:`` becomes ``-``), usable as a path
    component; ``None`` for a host without a port."""
    name, sep, port = host.rpartition(":")
    if not sep or not name or not port.isdigit():
        return None
    return f"{name}-{port}"


@dataclass(frozen=True)
class AuthConfig:
    """Tenancies, users, auth tokens and policies. Off: anonymous pull-through, as before."""

    # Require credentials or bearer tokens on the registry API; serve /auth/token and /admin/v1.
    enabled: bool = False
    # Token service name: the challenge's service=, the tokens' issuer and audience.
    service: str = "mirror"
    # Token endpoint URL sent to clients; "" derives it from the request's Host header.
    realm: str = ""
    # Seconds a bearer token is valid.
    token_ttl: float = 300.0
    # Ed25519 private key (PEM) signing bearer tokens; "" = <data_dir>/auth/signing-key.pem.
    # With metadata.backend = "postgres" it is required and must exist (a secret mounted on
    # every replica: a token one signs, the others accept); it is never created then.
    signing_key: str = ""
    # Tenancy of ?ns=, host-prefixed and bare names (node-local mode); "" refuses those names.
    default_tenancy: str = ""
    # Host names (no port; matched against a request's Host) of the registry face, where
    # clients address tenancy repositories as <tenancy>/<repo>. Every other Host, and every
    # ?ns= request, is the node-local face: names go to the configured upstreams in
    # default_tenancy whatever tenancies exist. Without a default tenancy every request is
    # the registry face; with one and no registry hosts, tenancies are reached only by admin.
    registry_hosts: tuple[str, ...] = ()
    # Anyone, without credentials, may pull the default tenancy's proxy repositories.
    public_proxy: bool = False
    # Tenancy created at first start; its administrators administer every tenancy.
    admin_tenancy: str = "admin"
    # Failed logins from one source within failed_login_window seconds before it is refused.
    max_failed_logins: int = 10
    failed_login_window: float = 60.0
    # Seconds a source that failed too often is refused (429 with Retry-After).
    lockout: float = 60.0
    # scrypt cost N (a power of two) of stored auth token hashes.
    hash_cost: int = 16384
    # Upstream hosts tenancies' pull-through rules may use: "host", "host:port", "*.domain" or
    # "*". Internal addresses (loopback, private, link-local) only for hosts listed without "*".
    # Empty: no tenancy may create (or use) a rule. [[upstreams]] are not restricted by this.
    rule_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyConfig:
    """A retention policy declared in the config file (created or updated at start-up)."""

    # Policy name; "global" edits the global policy (which has no repositories).
    name: str
    # Select images whose last pull (by tag or digest) is older than this many days.
    not_pulled_days: float | None = None
    # Select images that have had no tag pointing at them in this mirror for this many days.
    not_tagged_days: float | None = None
    # Never delete images carrying one of these tags (exact, or globs such as "v*").
    exempt_tags: tuple[str, ...] = ()
    # "any": one matching criterion selects an image; "all": every set criterion must match.
    match: str = "any"
    # Repositories under this policy, as "HOST/REPO" (moved here from any other policy).
    repositories: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetentionConfig:
    """Retention policies, garbage collection and the cache size limit."""

    # Seconds between background retention runs inside the server; 0 disables them.
    interval: float = 3600.0
    # Seconds a new or widened policy (or a newly attached repository) waits before it
    # deletes anything, so a mistake shows in a dry run first.
    cooling_period: float = 6 * 3600.0
    # Maximum cache size in bytes (blobs, manifests and fills in progress); 0 = no limit.
    max_size: int = 0
    # Above high_watermark * max_size the least recently pulled images are evicted until the
    # cache is below low_watermark * max_size.
    high_watermark: float = 0.9
    low_watermark: float = 0.8
    # JSON-lines audit log of every deletion; "" means <data_dir>/retention/audit.jsonl.
    audit_log: str = ""
    # Days audit events are kept (the file's, and on a tier the shared table's); older ones
    # are pruned at start and every 6 h by one replica at a time. 0 keeps them for ever.
    audit_keep_days: float = 400.0
    # Policies declared here; the config file wins over API edits at each start.
    policies: tuple[PolicyConfig, ...] = ()

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first inconsistent ``retention.*`` key."""
        for name in ("interval", "cooling_period", "max_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"retention.{name}: must not be negative")
        if not 0 <= self.audit_keep_days < math.inf:
            raise ConfigError(
                "retention.audit_keep_days: must be a number of days >= 0 (0 keeps for ever)"
            )
        if not 0 < self.low_watermark <= self.high_watermark <= 1:
            raise ConfigError(
                "retention.low_watermark: need 0 < low_watermark <= high_watermark <= 1"
            )
        self._check_policies()

    def _check_policies(self) -> None:
        names: set[str] = set()
        for i, policy in enumerate(self.policies):
            key = f"retention.policies[{i}]"
            if policy.name in names:
                raise ConfigError(f"{key}.name: policy {policy.name!r} declared twice")
            names.add(policy.name)
            for days in ("not_pulled_days", "not_tagged_days"):
                value = getattr(policy, days)
                if value is not None and value < 0:
                    raise ConfigError(f"{key}.{days}: must not be negative")
            if policy.name == "global" and policy.repositories:
                raise ConfigError(
                    f"{key}.repositories: the global policy governs every unattached repository"
                )
            if policy.match not in ("any", "all"):
                raise ConfigError(f'{key}.match: expected "any" or "all"')


@dataclass(frozen=True)
class HostedConfig:
    """Hosted repositories: what may be pushed into ``<tenancy>/<repo>``."""

    # Largest manifest body a push may send, in bytes (distribution-spec: at least 4 MiB).
    max_manifest_size: int = 4 * MiB
    # Default per-tenancy quotas (0: unlimited): bytes a tenancy's hosted repositories store
    # (each object once per tenancy) and how many hosted repositories it has. An operator sets
    # a tenancy's own with PUT /admin/v1/tenancies/<tenancy>/quota (mirror admin quota set).
    tenancy_max_bytes: int = 0
    tenancy_max_repositories: int = 0
    # Seconds a hosted link (a blob, a child manifest) must stay unreferenced by every
    # manifest of its repository before the collector drops it: spares a push whose blobs
    # are uploaded but whose manifest is not PUT yet. Counted from when a retention run
    # first found it so, or from the DELETE that left it so.
    gc_grace: float = 3600.0

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad ``hosted.*`` key."""
        if self.max_manifest_size < 1024:
            raise ConfigError("hosted.max_manifest_size: must be at least 1024 bytes")
        for key in ("tenancy_max_bytes", "tenancy_max_repositories"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"hosted.{key}: must be a whole number >= 0 (0: unlimited)")
        if not 0 <= self.gc_grace < float("inf"):
            raise ConfigError("hosted.gc_grace: must be a number of seconds, at least 0")


@dataclass(frozen=True)
class PrewarmConfig:
    """The scheduled pre-warm list: images fetched into the cache before anyone pulls them."""

    # References to keep warm ("docker.io/library/alpine:3.20", "ghcr.io/org/app@sha256:...");
    # every platform of an index is fetched.
    images: tuple[str, ...] = ()
    # Seconds between refreshes of the list's tags (a run also starts at start-up); 0 is off.
    interval: float = 0.0
    # Images fetched at once by a scheduled run (and the CLI's / admin API's default).
    concurrency: int = 4

    def check(self, offline: bool) -> None:
        """Raise ``ConfigError`` naming the first bad ``prewarm.*`` key."""
        if self.interval < 0:
            raise ConfigError("prewarm.interval: must not be negative")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError("prewarm.concurrency: must be between 1 and 64")
        if self.interval > 0 and offline:
            raise ConfigError("prewarm.interval: an offline mirror (cache.offline) cannot pre-warm")
        if self.interval > 0 and not self.images:
            raise ConfigError("prewarm.images: required when prewarm.interval is set")
        for i, image in enumerate(self.images):
            try:
                parse_reference(image)
            except ReferenceListError as exc:
                raise ConfigError(f"prewarm.images[{i}]: {exc}") from None


@dataclass(frozen=True)
class TierConfig:
    """``[tier]``: this server as one replica of a regional tier (no replicas: standalone)."""

    # Every replica's URL, as the load balancer's server list names them (http://host:port),
    # optionally with its share of the ring: "http://host:port weight=2" (1 to 256, default
    # 1: a replica with twice the disk takes twice the digests); the same list, in any order,
    # on every replica and in the load balancer (``mirror tier nginx-config``/``haproxy-config``).
    replicas: tuple[str, ...] = ()
    # Whose consistent-hash ring places the digests: "nginx" (``hash ... consistent``) or
    # "haproxy" (``hash-type consistent``); the load balancer in front of the replicas.
    balancer: str = "nginx"
    # This replica's URL: one of ``replicas``.
    self: str = ""
    # File holding the secret every replica shares (at least 16 bytes); it signs peer requests.
    secret_file: str = ""
    # Keep a copy of blobs read from their owner replica (default: relay them uncached).
    cache_peer_blobs: bool = False
    # Seconds to wait for a peer to accept a connection, and between bytes from it.
    peer_connect_timeout: float = 2.0
    peer_read_timeout: float = 30.0
    # Seconds a peer that did not answer is passed over (this replica goes upstream instead).
    peer_down_for: float = 10.0
    # Copies of each hosted blob and manifest, on the first replicas of its digest's walk; a
    # push is answered only once that many replicas hold it (at most len(replicas)).
    hosted_replication: int = 2
    # Seconds between the background repair passes that restore the copies this replica
    # should hold (after a replica was lost or replaced) and remove its copies beyond the
    # factor once the holders prove theirs; ``mirror tier repair`` runs one now.
    repair_interval: float = 300.0

    @property
    def enabled(self) -> bool:
        """Whether this server is a replica of a tier."""
        return bool(self.replicas)

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad ``tier.*`` key."""
        if not self.enabled:
            if self.self:
                raise ConfigError("tier.replicas: required when tier.self is set")
            return
        servers = [_tier_server(f"tier.replicas[{i}]", u) for i, u in enumerate(self.replicas)]
        if len(set(servers)) != len(servers):
            raise ConfigError(f"tier.replicas: a replica is listed twice: {servers}")
        self._check_ring()
        if not self.self:
            raise ConfigError("tier.self: required when tier.replicas is set")
        if _tier_server("tier.self", self.self) not in servers:
            raise ConfigError(f"tier.self: {self.self!r} is not one of tier.replicas")
        if not self.secret_file:
            raise ConfigError("tier.secret_file: required when tier.replicas is set")
        timings = ("peer_connect_timeout", "peer_read_timeout", "peer_down_for", "repair_interval")
        for name in timings:
            if not getattr(self, name) > 0:
                raise ConfigError(f"tier.{name}: must be positive")
        if not 1 <= self.hosted_replication <= len(servers):
            raise ConfigError(
                f"tier.hosted_replication: must be between 1 and the {len(servers)} replicas"
            )

    def _check_ring(self) -> None:
        """Raise ``ConfigError`` unless the balancer is known and its ring takes the replicas."""
        if self.balancer not in BALANCERS:
            choices = ", ".join(BALANCERS)
            raise ConfigError(f"tier.balancer: one of {choices}, got {self.balancer!r}")
        try:
            make_ring(self.balancer, ring_members(self.replicas))
        except ValueError as exc:
            raise ConfigError(f"tier.replicas: {exc}") from None


def _tier_server(key: str, entry: str) -> str:
    try:
        return server_of(replica_entry(entry)[0])
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


@dataclass(frozen=True)
class ConsoleConfig:
    """The web console under ``/console/`` (docs/console.md)."""

    # Serve the console; with auth off it is a read-only view answering loopback only.
    enabled: bool = True
    # Seconds a console sign-in lasts; signing out, or revoking its token, ends it sooner.
    session_lifetime: float = 8 * 3600.0
    # Seconds between the cache dashboard's samples of the metrics (it keeps 360 of them).
    sample_interval: float = 10.0

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first bad ``console.*`` key."""
        if not 60 <= self.session_lifetime <= 30 * 86400:
            raise ConfigError("console.session_lifetime: must be between 60 s and 30 days")
        if not self.sample_interval >= 1:
            raise ConfigError("console.sample_interval: must be at least 1 second")


def _default_upstreams() -> tuple[UpstreamConfig, ...]:
    return (
        UpstreamConfig(
            host="docker.io",
            url="https://registry-1.docker.io",
            aliases=("registry-1.docker.io", "index.docker.io"),
            library_prefix=True,
        ),
        UpstreamConfig(host="ghcr.io", url="https://ghcr.io"),
        UpstreamConfig(host="quay.io", url="https://quay.io"),
        UpstreamConfig(host="registry.k8s.io", url="https://registry.k8s.io"),
    )


@dataclass(frozen=True)
class Config:
    """The whole mirror configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    upstreams: tuple[UpstreamConfig, ...] = field(default_factory=_default_upstreams)
    auth: AuthConfig = field(default_factory=AuthConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    hosted: HostedConfig = field(default_factory=HostedConfig)
    prewarm: PrewarmConfig = field(default_factory=PrewarmConfig)
    tier: TierConfig = field(default_factory=TierConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    # Upstream host used for bare names (no ?ns= and no host path prefix); "" for none.
    default_upstream: str = "docker.io"

    def upstream(self, host: str) -> UpstreamConfig | None:
        """The upstream selected by ``host`` (its host or one of its aliases)."""
        for upstream in self.upstreams:
            if host == upstream.host or host in upstream.aliases:
                return upstream
        return None

    def metrics_access(self) -> str:
        """Who may read ``/metrics``: ``server.metrics`` with ``auto`` resolved."""
        if self.server.metrics != "auto":
            return self.server.metrics
        return "admin" if self.auth.enabled else "anonymous"

    def validate(self) -> Config:
        """Check cross-field consistency; returns self or raises ``ConfigError``."""
        _validate_listen(self.server.listen)
        _validate_tls(self.server)
        _validate_metrics(self.server.metrics, self.auth.enabled)
        if not self.server.keepalive_timeout > 0:
            raise ConfigError("server.keepalive_timeout: must be positive")
        if not 0 <= self.server.thread_nice <= 19:
            raise ConfigError("server.thread_nice: must be 0-19 (a Linux nice increment)")
        if not self.storage.upload_timeout > 0:
            raise ConfigError("storage.upload_timeout: must be positive")
        if self.server.allow_anonymous_push:
            _validate_anonymous_push(self.server.listen, self.auth.enabled)
        self._validate_workers()
        _validate_encryption(self.encryption)
        _validate_upstreams(self.upstreams)
        if self.default_upstream and self.upstream(self.default_upstream) is None:
            raise ConfigError(
                f"default_upstream: {self.default_upstream!r} is not a configured upstream"
            )
        if self.storage.chunk_size < 4096:
            raise ConfigError("storage.chunk_size: must be at least 4096")
        for name in ("tag_ttl", "max_stale", "fill_timeout", "last_pull_flush_interval"):
            if getattr(self.cache, name) < 0:
                raise ConfigError(f"cache.{name}: must not be negative")
        self._validate_auth()
        self.metadata.check()
        if self.auth.enabled and self.metadata.backend == "postgres" and not self.auth.signing_key:
            raise ConfigError(
                'auth.signing_key: required with metadata.backend = "postgres": every replica '
                "signs with the same key (mount one secret file on each)"
            )
        self.retention.check()
        self.hosted.check()
        self.prewarm.check(self.cache.offline)
        self.tier.check()
        self.console.check()
        return self

    def _validate_workers(self) -> None:
        """``server.workers``: a count or "auto"; more than one only without the parts that
        keep their state in one process's memory (docs/architecture.md, "Workers")."""
        workers = self.server.workers
        if workers != "auto" and (isinstance(workers, str) or workers < 1):
            raise ConfigError(f"server.workers: expected a number >= 1 or 'auto', got {workers!r}")
        if workers == 1:
            return
        single = {
            "tier.replicas": self.tier.enabled,
            "console.enabled": self.console.enabled,
            "retention.max_size": bool(self.retention.max_size),
            "hosted.tenancy_max_bytes": bool(self.hosted.tenancy_max_bytes),
            "hosted.tenancy_max_repositories": bool(self.hosted.tenancy_max_repositories),
        }
        for key, used in single.items():
            if used:
                raise ConfigError(f"server.workers: more than one worker cannot be used with {key}")

    def _validate_auth(self) -> None:
        auth = self.auth
        cost = auth.hash_cost
        if cost < 2 or cost & (cost - 1):
            raise ConfigError("auth.hash_cost: must be a power of two >= 2")
        for name in ("token_ttl", "failed_login_window", "lockout"):
            if getattr(auth, name) <= 0:
                raise ConfigError(f"auth.{name}: must be positive")
        if auth.max_failed_logins < 1:
            raise ConfigError("auth.max_failed_logins: must be at least 1")
        for name in ("default_tenancy", "admin_tenancy"):
            value = getattr(auth, name)
            if value and not _TENANCY.fullmatch(value):
                raise ConfigError(f"auth.{name}: not a tenancy name: {value!r}")
        if auth.enabled and not auth.admin_tenancy:
            raise ConfigError("auth.admin_tenancy: required when auth is enabled")
        _validate_rule_hosts(auth.rule_hosts)
        if auth.realm and not auth.realm.startswith(("http://", "https://")):
            raise ConfigError(f"auth.realm: expected http(s)://..., got {auth.realm!r}")
        _validate_registry_hosts(auth.registry_hosts)


def _validate_registry_hosts(hosts: tuple[str, ...]) -> None:
    for host in hosts:
        if not isinstance(host, str) or not _REGISTRY_HOST.fullmatch(host):
            raise ConfigError(
                f"auth.registry_hosts: expected host names without port, got {host!r}"
            )


def _validate_rule_hosts(patterns: tuple[str, ...]) -> None:
    """``ConfigError`` naming the first ``auth.rule_hosts`` entry that is not a pattern."""
    for i, pattern in enumerate(patterns):
        try:
            HostPattern.parse(pattern)
        except ValueError as exc:
            raise ConfigError(f"auth.rule_hosts[{i}]: {exc}") from None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_listen(listen: str) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"server.listen: expected HOST:PORT, got {listen!r}")


def _validate_anonymous_push(listen: str, auth: bool) -> None:
    if auth:
        raise ConfigError("server.allow_anonymous_push: only for auth.enabled = false")
    if not _is_loopback(listen.rpartition(":")[0]):
        raise ConfigError(f"server.allow_anonymous_push: only on a loopback listener, not {listen}")


METRICS_ACCESS = ("auto", "anonymous", "admin", "off")


def _validate_metrics(metrics: str, auth: bool) -> None:
    if metrics not in METRICS_ACCESS:
        raise ConfigError(
            f"server.metrics: expected one of {', '.join(METRICS_ACCESS)}, got {metrics!r}"
        )
    if metrics == "admin" and not auth:
        raise ConfigError('server.metrics: "admin" needs auth.enabled = true')


def _validate_upstreams(upstreams: tuple[UpstreamConfig, ...]) -> None:
    """Hosts and aliases are registry hosts, each configured once; the rest is well formed."""
    seen: set[str] = set()
    for i, upstream in enumerate(upstreams):
        if not is_host(upstream.host):
            raise ConfigError(f"upstreams[{i}].host: not a registry host: {upstream.host!r}")
        for name in (upstream.host, *upstream.aliases):
            if name != upstream.host and not (is_host(name) or _is_path_component(name)):
                raise ConfigError(
                    f"upstreams[{i}].aliases: not a registry host or name component: {name!r}"
                )
            if name in seen:
                raise ConfigError(f"upstreams[{i}].host: {name!r} configured twice")
            seen.add(name)
        _validate_upstream(i, upstream)


def _is_path_component(name: str) -> bool:
    """Whether ``name`` can be one component of a repository path (a port-free alias)."""
    return "/" not in name and NAME_PATTERN.fullmatch(name) is not None


def _validate_upstream(i: int, upstream: UpstreamConfig) -> None:
    for name in (
        "retries",
        "breaker_threshold",
        "breaker_cooldown",
        "max_connections",
        "requests_per_second",
        "bandwidth",
    ):
        if getattr(upstream, name) < 0:
            raise ConfigError(f"upstreams[{i}].{name}: must not be negative")
    if not upstream.url.startswith(("http://", "https://")):
        raise ConfigError(f"upstreams[{i}].url: expected http(s)://..., got {upstream.url!r}")


def _validate_tls(server: ServerConfig) -> None:
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError("server.tls_cert: set both tls_cert and tls_key, or neither")
    if server.tls_client_ca and not server.tls_cert:
        raise ConfigError("server.tls_client_ca: client certificates need tls_cert and tls_key")
    host = server.listen.rpartition(":")[0]
    if not server.tls_cert and not server.allow_plain_http and not _is_loopback(host):
        raise ConfigError(
            f"server.tls_cert: required to listen on {server.listen} (plain HTTP is for "
            "loopback; set server.allow_plain_http = true for a node-local address)"
        )


def _validate_encryption(enc: EncryptionConfig) -> None:
    if enc.kek_source not in ("file", "env", "command"):
        raise ConfigError(
            f"encryption.kek_source: expected file, env or command, got {enc.kek_source!r}"
        )
    if enc.enabled and enc.kek_source == "command" and not enc.kek_command:
        raise ConfigError("encryption.kek_command: required when kek_source = command")
    if enc.cipher not in ("auto", "aes-256-gcm", "chacha20-poly1305"):
        raise ConfigError(
            "encryption.cipher: expected auto, aes-256-gcm or chacha20-poly1305, "
            f"got {enc.cipher!r}"
        )
    if not 4096 <= enc.chunk_size <= 64 * MiB:
        raise ConfigError("encryption.chunk_size: must be between 4096 and 67108864")
    if enc.kek_command_refresh < 0:
        raise ConfigError("encryption.kek_command_refresh: must not be negative")
