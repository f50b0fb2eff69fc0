"""Send a test SMS: post a message to our own HANDLER exactly as Bitrix24 would.

The form is the one Bitrix24 POSTs for a message without an author (PHP-style keys, no ``auth[...]``:
b24sms keeps only a keyed hash of the installation's application_token, so it cannot sign as the portal;
the HANDLER URL's secret authenticates the call), sent over HTTP to the installation's HANDLER URL
(PUBLIC_BASE_URL + the handler path), so the message travels the whole pipeline: handler, intake, sending through the
installation's i-dgtl account, delivery, and the status reports to Bitrix24. In production that is
the real gateway: a real SMS is sent. Bitrix24 does not know the message id of a test SMS, so it
rejects the status reports for it (recorded on the message's timeline as rejected).

In the sandbox, on the sandbox portal, the fake Bitrix24 itself sends the SMS to our HANDLER (its
`/__fake__/portals/{member_id}/send_sms` control), so it knows the message and the statuses reach it.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.translation import gettext as _

from common import sandbox
from common.errors import error_text
from common.logging import log_context
from common.public_urls import public_url
from providers.handler_form import HandlerFormError, handler_form_parse, line_control_character
from providers.models import Installation, Message, Provider, ProviderRegistration, RegistrationState
from providers.services.sending import destination_normalise

logger = logging.getLogger(__name__)

TEST_MESSAGE_PREFIX = "test-"
TEXT_MAX_LENGTH = 1000
HANDLER_TIMEOUT = (5.0, 30.0)


@dataclass
class SmsTestResult:
    installation: Installation
    message_id: str
    handler_status: int
    handler_answer: dict
    message: Message | None
    via: str  # "handler" (posted by b24sms) or "fake-bitrix24" (posted by the sandbox portal)

    @property
    def accepted(self) -> bool:
        return self.message is not None and 200 <= self.handler_status < 300


class SmsTestError(Exception):
    """The handler could not be reached, or answered something else than an accepted message."""


def handler_url(installation: Installation) -> str:
    """The HANDLER URL registered on Bitrix24 for this installation."""
    return public_url("b24-handler", secret=installation.handler_secret)


def bitrix24_form(
    *, installation: Installation, provider: Provider, message_id: str, phone: str, text: str
) -> list[tuple[str, str]]:
    """The form body Bitrix24 POSTs to a HANDLER for an SMS sent from a CRM card (docs/contracts/bitrix24.md §3),
    without ``auth[...]`` (as for a message without an author): the application_token is not kept in clear."""
    return [
        ("module_id", "crm"),
        ("properties[phone_number]", phone),
        ("properties[message_text]", text),
        ("type", "SMS"),
        ("code", provider.code),
        ("message_id", message_id),
        ("message_to", phone),
        ("message_body", text),
        ("ts", str(int(time.time()))),
    ]


def _choose_installation(provider: Provider, installation_id) -> Installation:
    registered = ProviderRegistration.objects.filter(
        provider=provider, state=RegistrationState.REGISTERED
    ).select_related("installation")
    if installation_id not in (None, ""):
        registration = registered.filter(installation_id=installation_id).first()
        if registration is None:
            raise ValidationError({"installation": _("The provider is not registered on this portal.")})
        return registration.installation
    registrations = list(registered[:2])
    if not registrations:
        raise ValidationError(
            {"installation": _("The provider is not registered on any portal yet: register it first.")}
        )
    if len(registrations) > 1:
        raise ValidationError({"installation": _("The provider is registered on several portals: choose one.")})
    return registrations[0].installation


def _validate(phone: str, text: str) -> tuple[str, str]:
    phone, text = (phone or "").strip(), (text or "").strip()
    errors = {}
    if not phone:
        errors["phone"] = _("Enter the phone number to send the test SMS to.")
    elif len(phone) > 64:
        errors["phone"] = _("A phone number has at most 64 characters.")
    if not text:
        errors["text"] = _("Enter the text of the test SMS.")
    elif len(text) > TEXT_MAX_LENGTH:
        errors["text"] = _("The text has at most %(limit)s characters.") % {"limit": TEXT_MAX_LENGTH}
    if errors:
        raise ValidationError(errors)
    return phone, text


# Which field of the test SMS a HANDLER field comes from.
_FORM_TO_INPUT = {"message_to": "phone", "message_body": "text", "properties": "text"}


def _handler_check(*, installation: Installation, provider: Provider, message_id: str, phone: str, text: str) -> str:
    """The form the HANDLER will get, checked as the HANDLER checks it (handler_form_parse: a control
    character, too long, too many SMS parts), and the number as the sender will read it (phonenumbers, in the
    portal's default region): ValidationError naming ``phone`` or ``text`` rather than a refusal by the HANDLER
    (a 502) or a message that fails later. The form-encoded body to post."""
    if line_control_character(phone):  # (the form has it twice: message_to and properties[phone_number])
        raise ValidationError({"phone": _("The phone number contains a control character.")})
    body = urlencode(
        bitrix24_form(installation=installation, provider=provider, message_id=message_id, phone=phone, text=text)
    )
    try:
        handler_form_parse(body)
    except HandlerFormError as exc:
        raise ValidationError({_FORM_TO_INPUT.get(exc.field, NON_FIELD_ERRORS): str(exc.message)}) from None
    if not destination_normalise(message_to=phone, region=installation.default_region):
        raise ValidationError(
            {
                "phone": _("%(phone)s is not a valid phone number (region %(region)s).")
                % {"phone": phone, "region": installation.default_region or "RU"}
            }
        )
    return body


def _is_sandbox_portal(installation: Installation) -> bool:
    return bool(settings.SANDBOX) and installation.member_id == sandbox.SANDBOX_MEMBER_ID


def _via_fake_bitrix24(installation, provider, phone, text):
    url = f"{sandbox.bitrix24_url()}/__fake__/portals/{installation.member_id}/send_sms"
    response = requests.post(
        url, json={"code": provider.code, "message_to": phone, "text": text}, timeout=HANDLER_TIMEOUT
    )
    response.raise_for_status()
    answer = response.json()
    return answer["message_id"], int(answer["handler_status"])


def provider_send_test_sms(*, provider: Provider, phone: str, text: str, installation_id=None) -> SmsTestResult:
    """Post a test SMS for ``provider`` to the HANDLER of one installation it is registered on.

    Raises ValidationError (bad input, provider not registered) or SmsTestError (handler unreachable
    or refusing). Not atomic on purpose: the handler stores the message in its own request.
    """
    phone, text = _validate(phone, text)
    installation = _choose_installation(provider, installation_id)
    if not installation.is_active:
        raise ValidationError({"installation": _("The application is not installed on this portal.")})
    message_id = TEST_MESSAGE_PREFIX + uuid.uuid4().hex
    body = _handler_check(installation=installation, provider=provider, message_id=message_id, phone=phone, text=text)
    via, answer = "handler", {}
    with log_context(installation=installation.domain, provider=provider.code):
        try:
            if _is_sandbox_portal(installation):
                try:
                    message_id, status = _via_fake_bitrix24(installation, provider, phone, text)
                    via = "fake-bitrix24"
                except (requests.RequestException, KeyError, ValueError) as exc:
                    logger.warning("the sandbox portal could not send the test SMS (%s); posting to the handler", exc)
            if via == "handler":
                response = requests.post(
                    handler_url(installation),
                    data=body.encode(),
                    timeout=HANDLER_TIMEOUT,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    allow_redirects=False,
                )
                status = response.status_code
                try:
                    answer = response.json()
                except ValueError:
                    answer = {"detail": " ".join(response.text[:200].split())}
        except requests.RequestException as exc:
            logger.warning("test SMS: the handler is unreachable: %s", type(exc).__name__)
            raise SmsTestError(
                _("Our handler at %(url)s could not be reached (%(error)s): check PUBLIC_BASE_URL.")
                % {"url": settings.PUBLIC_BASE_URL, "error": type(exc).__name__}
            ) from exc
        message = Message.objects.filter(installation=installation, message_id=message_id).first()
        with log_context(message_id=message_id):
            logger.info("test SMS posted via %s: handler answered %s", via, status)
    if not (200 <= status < 300) or message is None:
        raise SmsTestError(
            _("The handler answered HTTP %(status)s: %(answer)s")
            % {"status": status, "answer": error_text(answer) or answer or "—"}
        )
    return SmsTestResult(
        installation=installation,
        message_id=message_id,
        handler_status=status,
        handler_answer=answer,
        message=message,
        via=via,
    )
