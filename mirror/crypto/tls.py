"""TLS for the mirror's listener: HTTPS with an operator's certificate, optionally requiring
client certificates (mTLS) signed by a given CA."""

from __future__ import annotations

import ssl


class TlsError(Exception):
    """A certificate, key or CA file could not be loaded; the message names the file."""


def server_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    """A server context (TLS 1.2+) for ``cert``/``key``; with ``client_ca`` every client must
    present a certificate signed by it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"server.tls_cert/tls_key ({cert}, {key}): {exc}") from None
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"server.tls_client_ca ({client_ca}): {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
