"""Wiring of the auth services from the configuration (part of ``app``, kept apart so the
pull-through wiring stays readable)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirror.app.metadata import postgres_settings
from mirror.app.stores import open_keys
from mirror.auth.access import Authorizer, Resolver
from mirror.auth.bootstrap import bootstrap, load_key, load_or_create_key
from mirror.auth.links import LinkGuard
from mirror.auth.login import Login
from mirror.auth.service import AuthService
from mirror.auth.throttle import LoginThrottle, Throttle
from mirror.auth.tokens import TokenService
from mirror.blobstore.interface import BlobStore
from mirror.clock import Clock
from mirror.config import Config, ConfigError
from mirror.crypto.sealed import SecretSealer
from mirror.db.identity.store import IdentityStore
from mirror.db.postgres.identity import PostgresRecords
from mirror.db.postgres.shared import SharedDatabase
from mirror.db.postgres.throttle import PostgresThrottle
from mirror.db.roles import MetadataStore
from mirror.upstream.pool import UpstreamPool
from mirror.upstream.routing import Router


def print_once(text: str) -> None:
    """Print the first-start announcement to stdout (never to the log)."""
    print(text, flush=True)


def open_auth(
    config: Config,
    router: Router,
    metadata: MetadataStore,
    upstreams: UpstreamPool,
    clock: Clock,
    announce: Callable[[str], None],
    *,
    store: BlobStore,
    rng: random.Random | None = None,
) -> AuthService:
    """Load (or create) the signing key, open the identity store and bootstrap; a failure
    leaves the identity store closed. ``store`` is the blob cache blob proofs read from; ``rng``
    chooses their offsets (unpredictable ``SystemRandom`` unless a test passes one)."""
    key = signing_key(config)
    identity, throttle = open_identity(config, clock)
    try:
        if config.encryption.enabled:
            keys = open_keys(config, clock=clock)
            identity.sealer = SecretSealer(lambda: keys.current, keys.find, os.urandom)
            identity.seal_rule_passwords([t.name for t in identity.tenancies()])
        links = LinkGuard(metadata, upstreams, store, rng or random.SystemRandom())
        return _auth_service(
            config, key, identity, throttle, router, links, upstreams, clock, announce
        )
    except BaseException:
        identity.close()
        raise


def signing_key(config: Config) -> Ed25519PrivateKey:
    """The signing key: of a tier, the mounted secret every replica shares (never created:
    ``ConfigError`` when it cannot be read); of a single node, created at first start."""
    configured = config.auth.signing_key
    if config.metadata.backend != "postgres":
        data_dir = Path(config.storage.data_dir)
        return load_or_create_key(
            Path(configured) if configured else data_dir / "auth" / "signing-key.pem"
        )
    try:
        return load_key(Path(configured))
    except OSError as exc:
        raise ConfigError(f"auth.signing_key: cannot read {configured}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"auth.signing_key: {exc}") from None


def open_identity(config: Config, clock: Clock) -> tuple[IdentityStore, LoginThrottle]:
    """The identity store and the failed-login throttle: this replica's own (diskcache, in
    memory), or with ``[metadata] backend = "postgres"`` the tier's, in the shared database
    (closing the store closes the connection both use)."""
    auth = config.auth
    most, window, lockout = auth.max_failed_logins, auth.failed_login_window, auth.lockout
    if config.metadata.backend != "postgres":
        identity = IdentityStore(Path(config.storage.data_dir) / "identity")
        return identity, Throttle(clock, max_failures=most, window=window, lockout=lockout)
    database = SharedDatabase.open(postgres_settings(config, os.environ), "identity")
    try:
        records = PostgresRecords.open(database)
    except BaseException:
        database.close()
        raise
    throttle = PostgresThrottle(database, clock, max_failures=most, window=window, lockout=lockout)
    return IdentityStore(records=records), throttle


def _auth_service(
    config: Config,
    key: Ed25519PrivateKey,
    identity: IdentityStore,
    throttle: LoginThrottle,
    router: Router,
    links: LinkGuard,
    upstreams: UpstreamPool,
    clock: Clock,
    announce: Callable[[str], None],
) -> AuthService:
    """The auth services over an open identity store (bootstrapped on the first start)."""
    auth = config.auth
    # One transaction: of replicas starting at once, one bootstraps and the others find it done.
    with identity.transaction():
        created = bootstrap(identity, auth.admin_tenancy, clock.now(), hash_cost=auth.hash_cost)
        if auth.default_tenancy and identity.tenancy(auth.default_tenancy) is None:
            identity.create_tenancy(auth.default_tenancy, clock.now())
    if created is not None:
        announce(created.announcement())
    reserved = frozenset(name for u in config.upstreams for name in (u.host, *u.aliases))
    resolver = Resolver(
        identity,
        router,
        auth.default_tenancy,
        registry_hosts=auth.registry_hosts,
        reserved=reserved,
    )
    authorizer = Authorizer(
        identity,
        admin_tenancy=auth.admin_tenancy,
        default_tenancy=auth.default_tenancy,
        public_proxy=auth.public_proxy,
    )
    tokens = TokenService(
        key, identity, resolver, authorizer, clock, service=auth.service, ttl=auth.token_ttl
    )
    return AuthService(
        identity=identity,
        resolver=resolver,
        authorizer=authorizer,
        login=Login(identity, throttle, clock, hash_cost=auth.hash_cost),
        tokens=tokens,
        links=links,
        upstreams=upstreams,
        realm=auth.realm,
    )
