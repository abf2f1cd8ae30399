"""Wiring of the auth services from the configuration (part of ``app``, kept apart so the
pull-through wiring stays readable)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirror.app.stores import open_keys
from mirror.auth.access import Authorizer, Resolver
from mirror.auth.bootstrap import bootstrap, load_or_create_key
from mirror.auth.links import LinkGuard
from mirror.auth.login import Login
from mirror.auth.service import AuthService
from mirror.auth.throttle import Throttle
from mirror.auth.tokens import TokenService
from mirror.blobstore.interface import BlobStore
from mirror.clock import Clock
from mirror.config import Config
from mirror.crypto.sealed import SecretSealer
from mirror.db.identity.store import IdentityStore
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
    auth = config.auth
    data_dir = Path(config.storage.data_dir)
    key = load_or_create_key(
        Path(auth.signing_key) if auth.signing_key else data_dir / "auth" / "signing-key.pem"
    )
    identity = IdentityStore(data_dir / "identity")
    try:
        if config.encryption.enabled:
            keys = open_keys(config, clock=clock)
            identity.sealer = SecretSealer(lambda: keys.current, keys.find, os.urandom)
            identity.seal_rule_passwords([t.name for t in identity.tenancies()])
        links = LinkGuard(metadata, upstreams, store, rng or random.SystemRandom())
        return _auth_service(config, key, identity, router, links, upstreams, clock, announce)
    except BaseException:
        identity.close()
        raise


def _auth_service(
    config: Config,
    key: Ed25519PrivateKey,
    identity: IdentityStore,
    router: Router,
    links: LinkGuard,
    upstreams: UpstreamPool,
    clock: Clock,
    announce: Callable[[str], None],
) -> AuthService:
    """The auth services over an open identity store (bootstrapped on the first start)."""
    auth = config.auth
    created = bootstrap(identity, auth.admin_tenancy, clock.now(), hash_cost=auth.hash_cost)
    if created is not None:
        announce(created.announcement())
    if auth.default_tenancy and identity.tenancy(auth.default_tenancy) is None:
        identity.create_tenancy(auth.default_tenancy, clock.now())
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
    throttle = Throttle(
        clock,
        max_failures=auth.max_failed_logins,
        window=auth.failed_login_window,
        lockout=auth.lockout,
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
