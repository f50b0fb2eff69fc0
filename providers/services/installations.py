"""Bitrix24 applications and their installations on portals: install, reinstall, update, uninstall.

The install endpoint accepts the two ways Bitrix24 hands us tokens (docs/contracts/bitrix24.md §4): the
``ONAPPINSTALL`` event (``event``, ``data[...]``, ``auth[...]``) and the install-page POST (query
``DOMAIN``/``PROTOCOL``/..., form ``AUTH_ID``/``REFRESH_ID``/...). Both are parsed into one
:class:`InstallPayload`.

Trust model: nothing in an install request is believed. A portal's ``member_id`` and our
``client_id`` are public, and the request can name any endpoint. Only the Bitrix24 OAuth server
(``B24_OAUTH_URL``, a setting) can say which portal a token belongs to: the request's refresh
token is refreshed there with our client_id and client_secret (:func:`install_tokens_verify`),
and ``member_id``, ``client_endpoint``, ``server_endpoint`` and the tokens are taken from its
answer. No address the request names is ever called; nothing is stored before the OAuth server
has answered, and a ``member_id`` that differs from the one it answers is refused.
"""

import hmac
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from bitrix24 import contract
from bitrix24.client import (
    Bitrix24AuthError,
    Bitrix24Client,
    Bitrix24Error,
    Bitrix24MethodError,
    Bitrix24TransientError,
    InstallationInactive,
    call_deadline,
    oauth_token_refresh,
)
from bitrix24.urls import portal_address_refusal, portal_domain_allowed, portal_url_refusal
from common.public_urls import public_url
from common.taskqueue import enqueue, enqueue_on_commit
from providers.models import BitrixApplication, Installation, InstallationState, RegistrationState, RepairReason
from providers.services.portal_access import portal_client
from providers.services.registration import error_text, registrations_push_after_reinstall

logger = logging.getLogger(__name__)

DEFAULT_APPLICATION_NAME = "default"
EVENT_INSTALL = contract.EVENT_ONAPPINSTALL
EVENT_UNINSTALL = contract.EVENT_ONAPPUNINSTALL
EVENT_UPDATE = contract.EVENT_ONAPPUPDATE
# The application events b24sms binds (event.bind) at install, in this order; see app_event_handlers.
APP_EVENTS = (EVENT_UNINSTALL, EVENT_UPDATE)
BIND_EVENTS_TASK = "providers.tasks.bind_event_handlers"
DEFAULT_TOKEN_LIFETIME = contract.ACCESS_TOKEN_LIFETIME
DOMAIN_PATTERN = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?$")  # host[:port][/path]
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
HANDLER_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # secrets.token_urlsafe; anything else is unknown
DOMAIN_MAX_LENGTH = Installation._meta.get_field("domain").max_length
ENDPOINT_MAX_LENGTH = Installation._meta.get_field("client_endpoint").max_length


class InstallVerificationFailed(Exception):
    """The received tokens were refused by the portal, or belong to another application."""


class InstallPortalUnreachable(Exception):
    """The OAuth server could not be asked to confirm the tokens (network, 5xx, time budget): try again later."""


class InstallNotConfigured(Exception):
    """Our side cannot confirm tokens: the application has no client secret, or the OAuth server refuses it."""


class UninstallRefused(Exception):
    """An application event (ONAPPUNINSTALL, ONAPPUPDATE) does not carry the application_token stored at install."""


# --- Applications ---------------------------------------------------------------------------


@transaction.atomic
def application_sync_default() -> BitrixApplication | None:
    """Create or update the default application from B24_CLIENT_ID / B24_CLIENT_SECRET.

    Without B24_CLIENT_ID nothing changes (the existing default, if any, is returned). An empty
    B24_CLIENT_SECRET never erases a secret an operator saved in the admin.
    """
    client_id = settings.B24_CLIENT_ID.strip()
    current = BitrixApplication.objects.select_for_update().filter(is_default=True).first()
    if not client_id:
        return current
    application = BitrixApplication.objects.select_for_update().filter(client_id=client_id).first()
    if current is not None and current != application:
        current.is_default = False
        current.save(update_fields=["is_default", "updated_at"])
    if application is None:
        application = BitrixApplication(client_id=client_id, name=DEFAULT_APPLICATION_NAME)
    application.is_default = True
    if settings.B24_CLIENT_SECRET:
        application.client_secret = settings.B24_CLIENT_SECRET
    application.save()
    return application


def application_get_default() -> BitrixApplication | None:
    return BitrixApplication.objects.filter(is_default=True).first() or application_sync_default()


def ensure_default_application_after_migrate(**kwargs):
    application_sync_default()


def application_install_url(application: BitrixApplication) -> str:
    """The URL to paste into Bitrix24 as the application's install handler."""
    if application.is_default:
        return public_url("b24-install-default")
    return public_url("b24-install", application_id=application.pk)


# --- Parsing what Bitrix24 posts ---------------------------------------------------------------


@dataclass(frozen=True)
class InstallPayload:
    source: str  # "event" (ONAPPINSTALL) or "page" (install-page POST)
    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    access_token: str
    refresh_token: str
    expires_at: datetime
    application_token: str
    scope: str
    portal_status: str
    user_id: str


def _text(value, field: str, *, required: bool = False, max_length: int = 500) -> str:
    if value is None or value == "":
        if required:
            raise ValidationError({field: _("This field is required.")})
        return ""
    if not isinstance(value, str):
        raise ValidationError({field: _("Expected a single value.")})
    value = value.strip()
    if required and not value:
        raise ValidationError({field: _("This field is required.")})
    if CONTROL_CHARACTERS.search(value):
        raise ValidationError({field: _("Control characters are not allowed.")})
    if len(value) > max_length:
        raise ValidationError({field: _("Too long (at most %(n)d characters).") % {"n": max_length}})
    return value


def _endpoint(value: str, field: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        raise ValidationError({field: _("Expected an http(s) URL.")}) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({field: _("Expected an http(s) URL.")})
    value = value if value.endswith("/") else value + "/"
    if len(value) > ENDPOINT_MAX_LENGTH:
        raise ValidationError({field: _("Too long (at most %(n)d characters).") % {"n": ENDPOINT_MAX_LENGTH}})
    return value


def _domain(value: str, field: str) -> str:
    if len(value) > DOMAIN_MAX_LENGTH or not DOMAIN_PATTERN.match(value):
        raise ValidationError({field: _("Not a portal domain.")})
    return value


def _check_portal_endpoint(*, domain: str, client_endpoint: str, domain_field: str, endpoint_field: str) -> None:
    """Before any outbound call: the endpoint we would call belongs to the portal that says it installs us.

    Its host must equal the domain sent (outside the sandbox, whose labelled portal lives on
    127.0.0.1), be admitted by B24_ALLOWED_PORTAL_DOMAINS, and use https when B24_REQUIRE_HTTPS.
    """
    endpoint = urlsplit(client_endpoint)
    claimed = urlsplit(f"//{domain}")
    try:
        claimed_port = claimed.port
    except ValueError:
        raise ValidationError({domain_field: _("Not a portal domain.")}) from None
    endpoint_port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    same_host = claimed.hostname == endpoint.hostname and claimed_port in (None, endpoint_port)
    if not same_host and not settings.SANDBOX:
        raise ValidationError({endpoint_field: _("The client endpoint's host is not the portal domain sent.")})
    if not portal_domain_allowed(endpoint.hostname):
        raise ValidationError({domain_field: _("This portal domain is not allowed (B24_ALLOWED_PORTAL_DOMAINS).")})
    if settings.B24_REQUIRE_HTTPS and endpoint.scheme != "https":
        raise ValidationError({endpoint_field: _("The client endpoint must use https.")})
    if portal_url_refusal(client_endpoint) is not None:
        raise ValidationError(
            {
                endpoint_field: _(
                    "Not an address of a portal (credentials, backslashes or characters a host cannot have)."
                )
            }
        )


def _expiry(*, expires: str = "", expires_in: str = "", field: str) -> datetime:
    now = timezone.now()
    try:
        if expires:
            return datetime.fromtimestamp(int(expires), tz=UTC)
        if expires_in:
            return now + timedelta(seconds=int(expires_in))
    except (ValueError, OverflowError, OSError):
        raise ValidationError({field: _("Expected a number.")}) from None
    return now + timedelta(seconds=DEFAULT_TOKEN_LIFETIME)


def _scope(value: str) -> str:
    """Scopes as a comma list (one documentation page says spaces: accept both)."""
    return ",".join(s for s in value.replace(" ", ",").split(",") if s)


def install_payload_parse(*, query: dict, form: dict) -> InstallPayload:
    """Turn an ONAPPINSTALL event or an install-page POST into one payload; ValidationError naming the field."""
    if "event" in form:
        event = _text(form.get("event"), "event", required=True)
        if event.upper() != EVENT_INSTALL:
            raise ValidationError({"event": _("Expected the ONAPPINSTALL event.")})
        auth = form.get("auth")
        if not isinstance(auth, dict):
            raise ValidationError({"auth": _("This field is required.")})

        def auth_value(key, **kw):
            return _text(auth.get(key), f"auth[{key}]", **kw)

        client_endpoint = _endpoint(auth_value("client_endpoint", required=True), "auth[client_endpoint]")
        domain = _domain(auth_value("domain", required=True, max_length=DOMAIN_MAX_LENGTH), "auth[domain]")
        _check_portal_endpoint(
            domain=domain,
            client_endpoint=client_endpoint,
            domain_field="auth[domain]",
            endpoint_field="auth[client_endpoint]",
        )
        server_endpoint = auth_value("server_endpoint")
        return InstallPayload(
            source="event",
            member_id=auth_value("member_id", required=True, max_length=64),
            domain=domain,
            client_endpoint=client_endpoint,
            server_endpoint=_endpoint(server_endpoint, "auth[server_endpoint]") if server_endpoint else "",
            access_token=auth_value("access_token", required=True, max_length=512),
            refresh_token=auth_value("refresh_token", required=True, max_length=512),
            expires_at=_expiry(
                expires=auth_value("expires"), expires_in=auth_value("expires_in"), field="auth[expires]"
            ),
            application_token=auth_value("application_token", required=True, max_length=128),
            scope=_scope(auth_value("scope")),
            portal_status=auth_value("status", max_length=4),
            user_id=auth_value("user_id", max_length=32),
        )

    # Install page: DOMAIN/PROTOCOL in the query string (some portals also repeat them in the form).
    def query_value(key, **kw):
        value = query.get(key)
        if value in (None, ""):
            value = form.get(key)
        return _text(value, key, **kw)

    def form_value(key, **kw):
        return _text(form.get(key), key, **kw)

    if not form.get("AUTH_ID"):
        raise ValidationError(
            {"AUTH_ID": _("Neither an ONAPPINSTALL event nor an install-page POST (AUTH_ID missing).")}
        )
    domain = _domain(query_value("DOMAIN", required=True, max_length=DOMAIN_MAX_LENGTH), "DOMAIN")
    protocol = query_value("PROTOCOL") or "1"
    if protocol not in ("0", "1"):
        raise ValidationError({"PROTOCOL": _("Expected 0 (http) or 1 (https).")})
    scheme = "https" if protocol == "1" else "http"
    server_endpoint = form_value("SERVER_ENDPOINT")
    client_endpoint = _endpoint(f"{scheme}://{domain.rstrip('/')}/rest/", "DOMAIN")
    domain = urlsplit(client_endpoint).netloc
    _check_portal_endpoint(
        domain=domain, client_endpoint=client_endpoint, domain_field="DOMAIN", endpoint_field="PROTOCOL"
    )
    return InstallPayload(
        source="page",
        member_id=form_value("member_id", required=True, max_length=64),
        domain=domain,
        client_endpoint=client_endpoint,
        server_endpoint=_endpoint(server_endpoint, "SERVER_ENDPOINT") if server_endpoint else "",
        access_token=form_value("AUTH_ID", required=True, max_length=512),
        refresh_token=form_value("REFRESH_ID", required=True, max_length=512),
        expires_at=_expiry(expires_in=form_value("AUTH_EXPIRES"), field="AUTH_EXPIRES"),
        application_token=form_value("APPLICATION_TOKEN", required=True, max_length=128),
        scope=_scope(form_value("APPLICATION_SCOPE")),
        portal_status=form_value("status", max_length=4),
        user_id="",
    )


# --- Install ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedPortal:
    """What the Bitrix24 OAuth server said about the install's tokens: the only facts we store."""

    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    access_token: str
    refresh_token: str
    expires_at: datetime
    scope: str
    portal_status: str


def _answer_text(answer: dict, key: str, max_length: int = 512) -> str:
    value = answer.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or CONTROL_CHARACTERS.search(value) or len(value) > max_length:
        return ""
    return value.strip()


def _answer_expiry(answer: dict) -> datetime:
    try:
        return _expiry(
            expires=_answer_text(answer, "expires", 20),
            expires_in=_answer_text(answer, "expires_in", 20),
            field="expires",
        )
    except ValidationError:  # an odd number from the OAuth server: the documented lifetime
        return _expiry(field="expires")


def _portal_from_oauth_answer(*, answer: dict, payload: InstallPayload) -> VerifiedPortal:
    member_id = _answer_text(answer, "member_id", 64)
    if not member_id or not hmac.compare_digest(member_id.encode(), payload.member_id.encode()):
        raise InstallVerificationFailed(_("The tokens belong to another portal than the member_id sent."))
    endpoint = _answer_text(answer, "client_endpoint", ENDPOINT_MAX_LENGTH - 1)
    endpoint = endpoint if not endpoint or endpoint.endswith("/") else endpoint + "/"
    refusal = portal_url_refusal(endpoint) or portal_address_refusal(endpoint)
    if refusal is not None:
        raise InstallVerificationFailed(_("The portal's address cannot be used (%(reason)s).") % {"reason": refusal})
    access_token, refresh_token = _answer_text(answer, "access_token"), _answer_text(answer, "refresh_token")
    if not access_token or not refresh_token:
        raise InstallPortalUnreachable("the OAuth server answered without tokens")
    host = urlsplit(endpoint).netloc
    # The portal's name is its endpoint's host. Only the sandbox labels a fake portal served from
    # 127.0.0.1 with a portal-like name; the label is shown, never called.
    domain = payload.domain if settings.SANDBOX and payload.domain else host
    server_endpoint = _answer_text(answer, "server_endpoint", ENDPOINT_MAX_LENGTH)
    return VerifiedPortal(
        member_id=member_id,
        domain=domain,
        client_endpoint=endpoint,
        server_endpoint=server_endpoint if portal_url_refusal(server_endpoint) is None else "",
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=_answer_expiry(answer),
        scope=_scope(_answer_text(answer, "scope", 500)) or payload.scope,
        portal_status=_answer_text(answer, "status", 4) or payload.portal_status,
    )


def _late_install_event(*, application: BitrixApplication, payload: InstallPayload) -> Installation | None:
    """The active installation a repeated install request belongs to, or None.

    The install page and ``ONAPPINSTALL`` carry the same refresh token, and ONAPPINSTALL "may
    arrive late" (docs/contracts/bitrix24.md §4.2): the second to arrive finds its token already rotated. It is
    accepted (and changes nothing) only when it carries the application_token stored at install,
    which only Bitrix24 and we know.
    """
    installation = Installation.objects.filter(
        application=application, member_id=payload.member_id, state=InstallationState.ACTIVE
    ).first()
    if installation is None or not installation.application_token_matches(payload.application_token):
        return None  # (a constant-time compare of keyed hashes; never for an installation without a token)
    return installation


def install_tokens_verify(*, application: BitrixApplication, payload: InstallPayload) -> VerifiedPortal | None:
    """Ask the Bitrix24 OAuth server whose the tokens are: refresh them with our client_id and secret.

    Returns the portal as the OAuth server describes it, or None for a late repeat of an install
    that is already stored (see :func:`_late_install_event`). Raises InstallVerificationFailed (the
    token is not one the OAuth server issued to this application for this member_id),
    InstallPortalUnreachable (try again) or InstallNotConfigured (our client secret is missing or
    refused). Only the OAuth server is called.
    """
    if not application.client_secret:
        raise InstallNotConfigured(_("The application's client secret is not set (B24_CLIENT_SECRET or the admin)."))
    try:
        answer = oauth_token_refresh(
            client_id=application.client_id,
            client_secret=application.client_secret,
            refresh_token=payload.refresh_token,
            domain=payload.domain,
        )
    except Bitrix24TransientError as exc:
        raise InstallPortalUnreachable(str(exc.error or type(exc).__name__)) from exc
    except Bitrix24Error as exc:
        if exc.error.lower() == "invalid_client":
            raise InstallNotConfigured(_("The Bitrix24 OAuth server refused our client_id and secret.")) from exc
        if isinstance(exc, Bitrix24AuthError) and _late_install_event(application=application, payload=payload):
            return None
        raise InstallVerificationFailed(
            _("The Bitrix24 OAuth server did not confirm the tokens (%(error)s).") % {"error": exc.error}
        ) from exc
    return _portal_from_oauth_answer(answer=answer if isinstance(answer, dict) else {}, payload=payload)


def installation_install_and_bind(
    *, application: BitrixApplication, payload: InstallPayload, time_budget: float
) -> tuple[Installation, str]:
    """The install request's whole work: :func:`installation_install`, then binding the application's events,
    within ``time_budget`` seconds (every timeout, retry and rate-limit wait inside is capped by it). A bind
    that did not fit, or failed for now, is queued; beat binds what is still missing later
    (B24_EVENTS_BIND_RETRY_AFTER). Raises what :func:`installation_install` raises."""
    with call_deadline(time_budget):
        installation, result = installation_install(application=application, payload=payload)
        bound = "bound"
        if result != "unchanged":
            bound = installation_bind_events_recorded(installation=installation, final_attempt=False)
    if bound == "retry":
        try:
            enqueue(BIND_EVENTS_TASK, installation.pk, countdown=10)
        except Exception:  # the installation is stored: a broker outage must not fail the install
            logger.exception("could not queue the event re-bind", extra={"domain": installation.domain})
    return installation, result


def installation_install(*, application: BitrixApplication, payload: InstallPayload) -> tuple[Installation, str]:
    """Verify the tokens at the OAuth server, then create or update the installation of (application, member_id).

    Returns (installation, result), result being "installed", "reinstalled" or "unchanged" (a late
    repeat of an install already stored: nothing was changed). A reinstall brings a removed or
    needs-reinstall installation back to active. Bitrix24 deletes an application's providers when it
    is reinstalled or updated, so live registrations on this portal are pushed again.
    """
    verified = install_tokens_verify(application=application, payload=payload)
    if verified is None:
        installation = _late_install_event(application=application, payload=payload)
        logger.info(
            "b24sms install repeated: nothing changed",
            extra={"domain": installation.domain, "member_id": installation.member_id, "source": payload.source},
        )
        return installation, "unchanged"
    try:
        installation, created = _installation_store(application=application, payload=payload, verified=verified)
    except IntegrityError:  # a concurrent first install of the same portal won the race: update it
        installation, created = _installation_store(application=application, payload=payload, verified=verified)
    logger.info(
        "b24sms installed",
        extra={
            "domain": installation.domain,
            "member_id": installation.member_id,
            "first_install": created,
            "source": payload.source,
        },
    )
    return installation, "installed" if created else "reinstalled"


@transaction.atomic
def _installation_store(
    *, application: BitrixApplication, payload: InstallPayload, verified: VerifiedPortal
) -> tuple[Installation, bool]:
    installation = (
        Installation.objects.select_for_update().filter(application=application, member_id=verified.member_id).first()
    )
    created = installation is None
    if created:
        installation = Installation(application=application, member_id=verified.member_id)
    # Fresh from the OAuth server, so never older than what is stored.
    installation.domain = verified.domain
    installation.client_endpoint = verified.client_endpoint
    installation.access_token = verified.access_token
    installation.refresh_token = verified.refresh_token
    installation.access_token_expires_at = verified.expires_at
    installation.server_endpoint = verified.server_endpoint or installation.server_endpoint
    installation.application_token = payload.application_token  # stored as its keyed hash
    installation.scope = verified.scope
    installation.portal_status = verified.portal_status
    if payload.user_id:
        installation.installed_by_user_id = payload.user_id
    installation.state = InstallationState.ACTIVE
    installation.last_error = ""
    installation.installed_at = timezone.now()
    installation.uninstalled_at = None
    installation.bound_events = ""  # a reinstall removes the application's event bindings: bound again next
    installation.lacks_sender_update = False  # the portal may have been upgraded since: learnt again
    installation.save()
    if not created:
        registrations_push_after_reinstall(installation=installation, repair_reason=RepairReason.REINSTALL)
    return installation, created


def uninstall_handler_url(installation: Installation) -> str:
    return public_url("b24-uninstall", secret=installation.handler_secret)


def event_handler_url(installation: Installation) -> str:
    return public_url("b24-event", secret=installation.handler_secret)


def app_event_handlers(installation: Installation) -> dict[str, str]:
    """The handler URL of each application event b24sms binds. ONAPPUNINSTALL keeps the uninstall URL
    every earlier install bound; ONAPPUPDATE goes to the events endpoint."""
    return {EVENT_UNINSTALL: uninstall_handler_url(installation), EVENT_UPDATE: event_handler_url(installation)}


def _bindings_shown(client: Bitrix24Client) -> set[tuple[str, str]]:
    """(event, handler) pairs ``event.get`` shows; empty when it cannot be asked."""
    try:
        bound = client.call(contract.METHOD_EVENT_GET) or []
    except Bitrix24Error:
        return set()
    rows = bound.values() if isinstance(bound, dict) else bound
    return {(str(b.get("event", "")).upper(), b.get("handler")) for b in rows if isinstance(b, dict)}


def _bound_events_save(installation: Installation, confirmed) -> None:
    installation.bound_events = ",".join(event for event in APP_EVENTS if event in confirmed)
    installation.events_bind_attempted_at = timezone.now()
    Installation.objects.filter(pk=installation.pk).update(
        bound_events=installation.bound_events, events_bind_attempted_at=installation.events_bind_attempted_at
    )


def installation_bind_events(*, installation: Installation) -> dict[str, Bitrix24Error]:
    """Bind every application event (APP_EVENTS) to its handler URL; save the confirmed ones in bound_events.

    Bindings are removed when the application is reinstalled or updated, so every event is bound
    again each time. An error on a re-bind counts as success when ``event.get`` shows the binding
    (docs/contracts/bitrix24.md §2.7). Returns the events that could not be bound, with their errors. A transient
    error or InstallationInactive is raised at once (what was confirmed until then is saved).
    """
    handlers = app_event_handlers(installation)
    client = portal_client(installation)
    confirmed, errors = [], {}
    try:
        for event, handler in handlers.items():
            try:
                client.call(contract.METHOD_EVENT_BIND, {"event": event, "handler": handler})
            except Bitrix24MethodError as exc:
                errors[event] = exc
            else:
                confirmed.append(event)
        if errors:
            shown = _bindings_shown(client)
            for event in [e for e in errors if (e, handlers[e]) in shown]:
                confirmed.append(event)
                del errors[event]
    finally:
        _bound_events_save(installation, confirmed)
    return errors


BIND_ERROR_PREFIX = "event.bind"  # last_error of a failed bind starts with it (also "event.bind ONAPPUNINSTALL: ...")


def installation_bind_events_recorded(*, installation: Installation, final_attempt: bool = True) -> str:
    """Bind the application events and record a failure in the installation's last_error.

    Returns "bound" (every event), "failed" (permanent) or "retry" (transient and not ``final_attempt``).
    """
    try:
        errors = installation_bind_events(installation=installation)
    except Bitrix24TransientError as exc:
        text, outcome = f"{BIND_ERROR_PREFIX}: {error_text(exc)}", ("failed" if final_attempt else "retry")
    except (Bitrix24Error, InstallationInactive) as exc:
        text, outcome = f"{BIND_ERROR_PREFIX}: {error_text(exc)}", "failed"
    else:
        if not errors:
            Installation.objects.filter(pk=installation.pk, last_error__startswith=BIND_ERROR_PREFIX).update(
                last_error="", updated_at=timezone.now()
            )
            return "bound"
        text = "; ".join(f"{BIND_ERROR_PREFIX} {event}: {error_text(exc)}" for event, exc in errors.items())
        outcome = "failed"
    logger.warning(
        "event.bind failed",
        extra={"domain": installation.domain, "outcome": outcome, "bound_events": installation.bound_events},
    )
    Installation.objects.filter(pk=installation.pk).update(last_error=text[:2000], updated_at=timezone.now())
    return outcome


def installations_bind_missing_events(*, retry_after: timedelta, limit: int = 100) -> list[int]:
    """Beat: ask for the event bindings of active installations that lack some (installed before
    ONAPPUPDATE was bound, or a bind that failed), at most once per ``retry_after`` each.
    Returns the installation ids a bind task was queued for."""
    expected = ",".join(APP_EVENTS)
    now = timezone.now()
    with transaction.atomic():
        due = list(
            Installation.objects.select_for_update(skip_locked=True)
            .filter(state=InstallationState.ACTIVE)
            .exclude(bound_events=expected)
            .filter(Q(events_bind_attempted_at__isnull=True) | Q(events_bind_attempted_at__lt=now - retry_after))
            .order_by(F("events_bind_attempted_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:limit]
        )
        Installation.objects.filter(pk__in=due).update(events_bind_attempted_at=now)
        for installation_id in due:
            enqueue_on_commit(BIND_EVENTS_TASK, installation_id)
    if due:
        logger.info("binding missing application events", extra={"installations": len(due)})
    return due


# --- Uninstall --------------------------------------------------------------------------------


def _event_name(form: dict, *, expected: tuple[str, ...], refusal) -> str:
    event = _text(form.get("event"), "event", required=True).upper()
    if event not in expected:
        raise ValidationError({"event": refusal})
    return event


def _event_auth(form: dict) -> tuple[str, object]:
    """(application_token, member_id) of an application event; ValidationError when missing."""
    auth = form.get("auth")
    if not isinstance(auth, dict):
        raise ValidationError({"auth": _("This field is required.")})
    token = _text(auth.get("application_token"), "auth[application_token]", required=True, max_length=128)
    return token, auth.get("member_id")


def _event_installation(*, secret: str, token: str, member_id) -> Installation:
    """The installation of ``secret``, locked, when the event carries its application_token (constant time).

    Raises Installation.DoesNotExist for an unknown secret, UninstallRefused for a wrong token or member_id.
    Call inside a transaction.
    """
    if not HANDLER_SECRET_PATTERN.fullmatch(secret):  # e.g. a NUL, which PostgreSQL refuses in a query
        raise Installation.DoesNotExist
    installation = Installation.objects.by_handler_secret(secret).select_for_update().get()
    if not installation.application_token_matches(token):  # keyed hashes, constant time
        raise UninstallRefused()
    if isinstance(member_id, str) and member_id and member_id != installation.member_id:
        raise UninstallRefused()
    return installation


def installation_uninstall(*, secret: str, form: dict) -> Installation:
    """ONAPPUNINSTALL: check the application_token (constant time), mark the installation removed
    and its registrations removed (Bitrix24 deletes an uninstalled application's providers).

    Raises Installation.DoesNotExist for an unknown secret, UninstallRefused for a wrong token,
    ValidationError for a malformed event. A repeated event changes nothing.
    """
    _event_name(form, expected=(EVENT_UNINSTALL,), refusal=_("Expected the ONAPPUNINSTALL event."))
    token, member_id = _event_auth(form)
    with transaction.atomic():
        installation = _event_installation(secret=secret, token=token, member_id=member_id)
        if installation.state == InstallationState.REMOVED:
            return installation
        now = timezone.now()
        installation.mark_removed(now)
        installation.registrations.exclude(state=RegistrationState.REMOVED).update(
            state=RegistrationState.REMOVED,
            last_error=str(_("The application was uninstalled from the portal.")),
            updated_at=now,
        )
    logger.info("b24sms uninstalled", extra={"domain": installation.domain, "member_id": installation.member_id})
    return installation


# --- Application update -----------------------------------------------------------------------


def installation_app_update(*, secret: str, form: dict) -> tuple[Installation, str]:
    """ONAPPUPDATE: Bitrix24 has just deleted every provider of the application on the portal
    (docs/contracts/bitrix24.md §4.6). Check the application_token (constant time), then register every live
    provider again (sender.add with the same HANDLER; each re-add is recorded as a repair) and bind
    the application events again (an update removes them too).

    Returns (installation, result): "repairing", or "ignored" when the installation is not active.
    Raises as :func:`installation_uninstall`. A repeated event is harmless (sender.add then finds
    the provider and updates it).
    """
    _event_name(form, expected=(EVENT_UPDATE,), refusal=_("Expected the ONAPPUPDATE event."))
    token, member_id = _event_auth(form)
    with transaction.atomic():
        installation = _event_installation(secret=secret, token=token, member_id=member_id)
        if not installation.is_active:
            logger.info("ONAPPUPDATE for an inactive installation ignored", extra={"domain": installation.domain})
            return installation, "ignored"
        registrations_push_after_reinstall(installation=installation, repair_reason=RepairReason.APP_UPDATE)
        Installation.objects.filter(pk=installation.pk).update(bound_events="", updated_at=timezone.now())
        enqueue_on_commit(BIND_EVENTS_TASK, installation.pk)
    logger.info(
        "ONAPPUPDATE: providers are registered again",
        extra={"domain": installation.domain, "member_id": installation.member_id},
    )
    return installation, "repairing"


def installation_event(*, secret: str, form: dict) -> tuple[Installation, str]:
    """The events endpoint: ONAPPUPDATE (see :func:`installation_app_update`) or ONAPPUNINSTALL."""
    event = _event_name(
        form, expected=(EVENT_UPDATE, EVENT_UNINSTALL), refusal=_("Expected the ONAPPUPDATE or ONAPPUNINSTALL event.")
    )
    if event == EVENT_UNINSTALL:
        return installation_uninstall(secret=secret, form=form), "removed"
    return installation_app_update(secret=secret, form=form)
