"""Who may connect to a server: loopback by default, an access token for anything else.

A server bound to 127.0.0.1 (or ``localhost``, ``::1``) is reachable from this machine only. Bound to
any other address it is reachable from the network, so every request must carry a random token
that the server prints once when it starts; the token is compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_PARAMETER = "token"  # the query parameter of the first request
TOKEN_COOKIE = "dkoar_station_token"  # carried by every later request of the browser


def needs_token(host: str) -> bool:
    """Whether a server bound to ``host`` must require the access token."""
    return host.strip().lower() not in LOOPBACK_HOSTS


def new_token() -> str:
    """A random access token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_matches(given: str | None, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())
