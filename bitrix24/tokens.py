"""What the Bitrix24 client needs from whoever keeps a portal's tokens: the token store.

The client knows HTTP and Bitrix24's rules, nothing of where tokens are kept. Its owner (for b24sms,
providers/services/portal_access.py over an Installation row) implements :class:`TokenStore` and
passes it in: the client reads the portal's address and token from it before each call, asks it to
rotate the tokens (the store serialises refreshes across processes and saves the grant the client
obtained), tells it when the portal moved (a ``302`` to an allowed address), and tells it of the
errors its owner must see (the application must be reinstalled, a redirect was refused). The errors
themselves are raised to the caller as typed errors (bitrix24/client.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PortalAccess:
    """One portal as the store holds it now: what a call needs."""

    key: str  # stable name of this portal's shared state (method pauses, the refresh lock)
    domain: str  # for logs and errors
    client_endpoint: str  # https://portal/rest/
    access_token: str
    rate_limit_key: str  # the portal's leaky bucket (common/ratelimit.py), shared by every worker
    rate_limit_burst: int
    rate_limit_drain_per_second: float
    inactive: str = ""  # why no call may be made now (e.g. "acme.bitrix24.ru is Removed"); "" when active


@dataclass(frozen=True)
class RefreshCredentials:
    """What the OAuth server needs to rotate a portal's tokens."""

    client_id: str
    client_secret: str
    refresh_token: str
    domain: str
    client_endpoint: str  # the current one: a grant names a new one only when it differs


@dataclass(frozen=True)
class TokenGrant:
    """The OAuth server's answer to a refresh, checked: what the store saves. None means "keep"."""

    access_token: str
    expires_at: datetime
    refresh_token: str | None = None
    client_endpoint: str | None = None  # an allowed address (bitrix24/urls.py) that differs from the current one
    domain: str | None = None  # with client_endpoint
    server_endpoint: str | None = None
    scope: str | None = None


class TokenStore(Protocol):
    def load(self) -> PortalAccess:
        """The portal's current address, token and limits."""

    def refresh(self, *, failed_access_token: str, exchange: Callable[[RefreshCredentials], TokenGrant]) -> None:
        """Rotate the tokens, one refresh per portal at a time across every process.

        When the stored access token already differs from ``failed_access_token``, another worker
        rotated it: nothing is asked. Otherwise ``exchange`` is called with the stored credentials
        and the grant it returns is saved. Raises InstallationInactive (no call may be made),
        Bitrix24AuthError (no refresh token) or what ``exchange`` raised, having recorded a
        Bitrix24NeedsReinstall.
        """

    def endpoint_moved(self, *, client_endpoint: str, domain: str) -> None:
        """The portal answered from a new allowed address (a renamed portal): keep it."""

    def call_failed(self, error: Exception) -> None:
        """A call ended in ``error`` (Bitrix24NeedsReinstall, Bitrix24RedirectRefused): record what must be seen."""
