"""An installation's tokens as the Bitrix24 client's token store (bitrix24/tokens.py), and the client for it.

The client knows HTTP and Bitrix24; this module knows the Installation row. It gives the client the
portal's address, token and rate limit, serialises token refreshes across processes with a row lock,
saves the rotated tokens and a moved portal's address, and records what an operator must see: an
installation whose application must be reinstalled, a redirect that was refused (``last_error``).
"""

from collections.abc import Callable

import requests
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from bitrix24.client import (
    Bitrix24AuthError,
    Bitrix24Client,
    Bitrix24NeedsReinstall,
    Bitrix24RedirectRefused,
    InstallationInactive,
)
from bitrix24.tokens import PortalAccess, RefreshCredentials, TokenGrant
from providers.models import Installation, InstallationState

# The fields a refresh may change, copied back onto the caller's instance.
_TOKEN_FIELDS = (
    "access_token",
    "refresh_token",
    "access_token_expires_at",
    "client_endpoint",
    "domain",
    "server_endpoint",
    "scope",
    "state",
    "last_error",
    "updated_at",
)


class InstallationTokenStore:
    """The token store of one installation; the instance passed in is kept up to date in place."""

    def __init__(self, installation: Installation):
        self.installation = installation

    def load(self) -> PortalAccess:
        inst = self.installation
        return PortalAccess(
            key=str(inst.pk),
            domain=inst.domain,
            client_endpoint=inst.client_endpoint,
            access_token=inst.access_token,
            rate_limit_key=f"portal:{inst.member_id}",
            rate_limit_burst=inst.rate_limit_burst,
            rate_limit_drain_per_second=inst.rate_limit_drain_per_second,
            inactive="" if inst.is_active else f"{inst.domain} is {inst.get_state_display()}",
        )

    def refresh(self, *, failed_access_token: str, exchange: Callable[[RefreshCredentials], TokenGrant]) -> None:
        """Under the row lock (select_for_update) for the whole refresh; the grant is stored in one UPDATE."""
        installation = self.installation
        outcome = None
        with transaction.atomic():
            row = Installation.objects.select_for_update().select_related("application").get(pk=installation.pk)
            if row.state != InstallationState.ACTIVE:
                outcome = InstallationInactive("INSTALLATION_INACTIVE", row.get_state_display(), method="oauth.refresh")
            elif row.access_token and row.access_token != failed_access_token:
                pass  # another worker refreshed already
            elif not row.refresh_token:
                outcome = Bitrix24AuthError("NO_REFRESH_TOKEN", "no refresh token stored", method="oauth.refresh")
            else:
                try:
                    grant = exchange(
                        RefreshCredentials(
                            client_id=row.application.client_id,
                            client_secret=row.application.client_secret,
                            refresh_token=row.refresh_token,
                            domain=row.domain,
                            client_endpoint=row.client_endpoint,
                        )
                    )
                except Bitrix24NeedsReinstall as exc:
                    row.mark_needs_reinstall(
                        gettext(
                            "Bitrix24 refused the refresh token (%(error)s): reinstall the application on the portal."
                        )
                        % {"error": exc.error}
                    )
                    outcome = exc
                else:
                    _grant_save(row, grant)
            for name in _TOKEN_FIELDS:
                setattr(installation, name, getattr(row, name))
        if outcome is not None:
            raise outcome

    def endpoint_moved(self, *, client_endpoint: str, domain: str) -> None:
        inst = self.installation
        inst.client_endpoint, inst.domain = client_endpoint, domain
        Installation.objects.filter(pk=inst.pk).update(
            client_endpoint=client_endpoint, domain=domain, updated_at=timezone.now()
        )

    def call_failed(self, error: Exception) -> None:
        inst = self.installation
        if isinstance(error, Bitrix24NeedsReinstall):
            inst.mark_needs_reinstall(
                gettext("Bitrix24 answered %(error)s: reinstall the application on the portal.")
                % {"error": error.error}
            )
        elif isinstance(error, Bitrix24RedirectRefused):  # shown as the last error, the state unchanged
            inst.last_error = str(error)
            Installation.objects.filter(pk=inst.pk).update(last_error=inst.last_error, updated_at=timezone.now())


def _grant_save(row: Installation, grant: TokenGrant) -> None:
    row.access_token = grant.access_token
    if grant.refresh_token:
        row.refresh_token = grant.refresh_token
    row.access_token_expires_at = grant.expires_at
    fields = ["access_token", "refresh_token", "access_token_expires_at", "updated_at"]
    if grant.client_endpoint:
        row.client_endpoint, row.domain = grant.client_endpoint, grant.domain
        fields += ["client_endpoint", "domain"]
    if grant.server_endpoint:
        row.server_endpoint = grant.server_endpoint
        fields.append("server_endpoint")
    if grant.scope:
        row.scope = grant.scope
        fields.append("scope")
    row.save(update_fields=fields)


def portal_client(installation: Installation, *, session: requests.Session | None = None) -> Bitrix24Client:
    """The Bitrix24 client of ``installation`` (its tokens kept in its row)."""
    return Bitrix24Client(InstallationTokenStore(installation), session=session)


def installation_tokens_refresh(
    installation: Installation, *, failed_access_token: str | None = None, session: requests.Session | None = None
) -> Installation:
    """Refresh the installation's tokens: one refresh per portal at a time across all workers.

    If the stored access token already differs from ``failed_access_token`` (default: the instance's
    current one), another worker has rotated it: that pair is reused and no HTTP request is made.
    ``invalid_grant`` marks the installation "needs reinstall" and raises Bitrix24NeedsReinstall.
    Returns ``installation`` (updated in place).
    """
    client = portal_client(installation, session=session)
    try:
        client.refresh_tokens(failed_access_token=failed_access_token)
    finally:
        if session is None:
            client.close()
    return installation
