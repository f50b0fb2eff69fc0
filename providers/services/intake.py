"""Intake: a HANDLER call from Bitrix24 becomes one stored Message (exactly once), then a send."""
import hmac

import phonenumbers
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from ..handler_form import HandlerForm
from ..models import Installation, Message, MessageState, MessageStatusChange, ProviderRegistration, RegistrationState
from .timeline import ChangeSource


class HandlerForbidden(Exception):
    """Wrong secret or application token, or an installation that may not send."""


class ProviderNotRegistered(Exception):
    """The provider code is unknown, or not registered on this installation."""


def installation_by_handler_secret(*, secret: str) -> Installation:
    """The installation whose HANDLER/callback URL carries ``secret``; HandlerForbidden otherwise."""
    if not secret or len(secret) > 64:
        raise HandlerForbidden(_("Unknown handler."))
    installation = Installation.objects.filter(handler_secret=secret).first()
    # The index lookup finds the row; the decision is a constant-time compare of the whole secret.
    if installation is None or not hmac.compare_digest(installation.handler_secret.encode(), secret.encode()):
        raise HandlerForbidden(_("Unknown handler."))
    return installation


def _check_call(installation: Installation, *, secret: str, form: HandlerForm) -> None:
    """The whole secret (constant time), then the application token and portal when ``auth`` is present."""
    if not hmac.compare_digest(installation.handler_secret.encode(), secret.encode()):
        raise HandlerForbidden(_("Unknown handler."))
    if form.auth is not None:
        expected = installation.application_token.encode()
        if not expected or not hmac.compare_digest(expected, form.auth.application_token.encode()):
            raise HandlerForbidden(_("Wrong application token."))
        if form.auth.member_id and form.auth.member_id != installation.member_id:
            raise HandlerForbidden(_("The call comes from another portal."))
    if not installation.is_active:
        raise HandlerForbidden(_("The application is not installed on this portal."))


REGISTRATION_COLUMNS = (
    "id", "state", "provider_id", "installation_id", "provider__id", "provider__code", "provider__sender_name",
    "installation__id", "installation__handler_secret", "installation__application_token",
    "installation__member_id", "installation__state", "installation__default_region", "installation__domain",
)


def handler_authenticate(*, secret: str, form: HandlerForm) -> ProviderRegistration:
    """The registration of ``form.code`` on the installation whose HANDLER carries ``secret``.

    One query on the usual path. HandlerForbidden (403) for a wrong secret or token or an inactive
    installation; ProviderNotRegistered (404) for a code not registered there.
    """
    if not secret or len(secret) > 64:
        raise HandlerForbidden(_("Unknown handler."))
    # At most one row (unique secret, code, and provider per installation): no ORDER BY, few columns.
    registration = next(iter(
        ProviderRegistration.objects.select_related("installation", "provider")
        .filter(installation__handler_secret=secret, provider__code=form.code)
        .exclude(state=RegistrationState.REMOVED)
        .only(*REGISTRATION_COLUMNS)[:1]), None)
    if registration is not None:
        _check_call(registration.installation, secret=secret, form=form)
        return registration
    installation = installation_by_handler_secret(secret=secret)
    _check_call(installation, secret=secret, form=form)
    raise ProviderNotRegistered(_("Unknown provider code %(code)s.") % {"code": form.code})


def destination_normalise(*, message_to: str, region: str) -> str:
    """i-dgtl's destination form (digits, country code first) or '' when the number is not valid."""
    try:
        number = phonenumbers.parse(message_to, (region or "RU").upper())
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def message_receive(*, form: HandlerForm, installation: Installation | None = None,
                    registration: ProviderRegistration | None = None) -> tuple[Message, bool]:
    """Store the message once per (installation, message_id); ``created`` is False for a repeat.

    Give the ``registration`` found by :func:`handler_authenticate`, or the ``installation`` (the
    provider is then looked up: ProviderNotRegistered if ``form.code`` is not registered there).
    No pre-check: the unique constraint decides, also between two identical POSTs racing each other;
    the loser finds the winner's row. The send is enqueued after commit.
    """
    if registration is None:
        registration = (ProviderRegistration.objects.select_related("installation", "provider")
                        .filter(installation=installation, provider__code=form.code)
                        .exclude(state=RegistrationState.REMOVED).first())
        if registration is None:
            raise ProviderNotRegistered(_("Unknown provider code %(code)s.") % {"code": form.code})
    installation, provider = registration.installation, registration.provider
    message = Message(
        installation=installation, provider=provider, message_id=form.message_id, module_id=form.module_id,
        bindings=form.bindings, workflow_id=form.workflow_id, document_id=form.document_id,
        document_type=form.document_type, author_user_id=form.auth.user_id if form.auth else "",
        message_to=form.message_to, destination=destination_normalise(message_to=form.message_to, region=installation.default_region),
        text=form.message_body, sender_name=provider.sender_name, bitrix_sent_at=form.ts, state=MessageState.RECEIVED,
    )
    try:
        with transaction.atomic():
            message.save(force_insert=True)
            MessageStatusChange.objects.create(
                message=message, previous_state="", state=MessageState.RECEIVED, source=ChangeSource.HANDLER,
                detail="" if message.destination else str(_("Invalid phone number.")))
            transaction.on_commit(_schedule_send)
    except IntegrityError:
        existing = Message.objects.filter(installation=installation, message_id=form.message_id).first()
        if existing is None:
            raise
        return existing, False
    return message, True


def _schedule_send():
    from .sending import sending_schedule

    sending_schedule()
