"""SMS providers and their registration on portals (messageservice.sender.*, docs/contracts/bitrix24.md §2).

A provider is our record of a Bitrix24 SMS provider (CODE, NAME, DESCRIPTION, sender name). It is
registered on one or more installations; each ProviderRegistration has its own state
(pending → registered | failed, removing → removed). The remote calls run in tasks enqueued on
commit (providers/tasks/registration.py); every one of them is idempotent:
- register: ``sender.add``; ``ERROR_SENDER_ALREADY_INSTALLED`` → ``sender.update``;
- update: ``sender.update``; ``ERROR_SENDER_NOT_FOUND`` → ``sender.add``;
- remove: ``sender.delete``; ``ERROR_SENDER_NOT_FOUND`` counts as removed.
A portal that answers ``sender.update`` as an unknown method (before April 2026, on-premise) gets
``sender.delete`` + ``sender.add`` instead, and is remembered (``Installation.lacks_sender_update``).

The portal heals itself: Bitrix24 deletes every provider of the application when the application is
updated (ONAPPUPDATE, providers/services/installations.py) or reinstalled, and a provider can vanish
behind our back; the drift repair (beat) compares ``sender.list`` with our registrations and adds
back what is missing. A ``sender.add`` that re-creates a lost provider is recorded on the
registration (``repaired_at``, ``repair_reason``, ``repair_count``) and counted in /metrics.
"""

import logging
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Min, ProtectedError, Q
from django.utils import timezone
from django.utils.translation import gettext as _g
from django.utils.translation import gettext_lazy as _

from bitrix24 import contract
from bitrix24.client import Bitrix24Client, Bitrix24Error, Bitrix24TransientError, InstallationInactive
from common import metrics
from common.public_urls import public_url
from common.taskqueue import enqueue_on_commit
from idgtl.contract import SENDER_NAME_MAX_LENGTH, SENDER_NAME_MIN_LENGTH, SENDER_NAME_PATTERN_OTHERS, SenderNameStatus
from providers.models import (
    Installation,
    InstallationState,
    Provider,
    ProviderRegistration,
    RegistrationState,
    RepairReason,
)
from providers.services.portal_access import portal_client
from sendernames.models import SenderNameApplication
from sendernames.selectors import application_unusable_reason

logger = logging.getLogger(__name__)

LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")  # docs/contracts/bitrix24.md §2.6: 2-letter language ids

LIVE_STATES = (RegistrationState.PENDING, RegistrationState.REGISTERED, RegistrationState.FAILED)


def registration_handler_url(installation: Installation) -> str:
    """The HANDLER Bitrix24 posts SMS to: PUBLIC_BASE_URL + handler path with the installation's secret."""
    return public_url("b24-handler", secret=installation.handler_secret)


def approved_sender_name_applications():
    """Sender-name applications a provider may send with: APPROVED, and their start date has passed."""
    return SenderNameApplication.objects.filter(status=SenderNameStatus.APPROVED, date_from__lte=timezone.now())


# --- Validation -------------------------------------------------------------------------------


def _translations(value, field_name: str, max_length: int) -> dict:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError({field_name: _('Expected an object of language → text, e.g. {"ru": "…", "en": "…"}.')})
    cleaned = {}
    for language, text in value.items():
        key = str(language).strip().lower()
        if not LANGUAGE_PATTERN.match(key):
            raise ValidationError({field_name: _("“%(key)s” is not a two-letter language code.") % {"key": language}})
        if not isinstance(text, str) or not text.strip():
            raise ValidationError({field_name: _("The text for “%(key)s” is empty.") % {"key": key}})
        if "\x00" in text:  # PostgreSQL's jsonb cannot store it
            raise ValidationError({field_name: _("The text for “%(key)s” contains a null character.") % {"key": key}})
        if len(text.strip()) > max_length:
            raise ValidationError(
                {
                    field_name: _("The text for “%(key)s” is too long (at most %(n)d characters).")
                    % {"key": key, "n": max_length}
                }
            )
        cleaned[key] = text.strip()
    return cleaned


def provider_clean(
    *,
    code: str,
    name: str,
    name_translations=None,
    description: str = "",
    description_translations=None,
    sender_name: str = "",
    sender_name_application: SenderNameApplication | None = None,
) -> dict:
    """Validate provider fields; return the cleaned values or raise ValidationError naming the field."""
    code = (code or "").strip()
    if not code:
        raise ValidationError({"code": _("This field is required.")})
    if len(code) > contract.CODE_MAX_LENGTH:
        raise ValidationError({"code": _("At most %(n)d characters.") % {"n": contract.CODE_MAX_LENGTH}})
    if not contract.CODE_RE.match(code):
        raise ValidationError({"code": _("Only letters a-z, A-Z, digits, dot, hyphen and underscore are allowed.")})
    name_translations = _translations(name_translations, "name_translations", contract.NAME_MAX_LENGTH)
    name = (name or "").strip()
    if not name and name_translations:
        name = next(iter(name_translations.values()))
    if not name:
        raise ValidationError({"name": _("This field is required.")})
    if len(name) > contract.NAME_MAX_LENGTH:
        raise ValidationError({"name": _("At most %(n)d characters.") % {"n": contract.NAME_MAX_LENGTH}})
    description = (description or "").strip()
    if len(description) > contract.DESCRIPTION_MAX_LENGTH:
        raise ValidationError({"description": _("At most %(n)d characters.") % {"n": contract.DESCRIPTION_MAX_LENGTH}})
    description_translations = _translations(
        description_translations, "description_translations", contract.DESCRIPTION_MAX_LENGTH
    )

    sender_name = (sender_name or "").strip()
    if sender_name_application is not None:
        if not approved_sender_name_applications().filter(pk=sender_name_application.pk).exists():
            raise ValidationError(
                {
                    "sender_name_application": application_unusable_reason(sender_name_application)
                    or _("This sender-name application is not approved, or its start date has not come yet.")
                }
            )
        if sender_name and sender_name != sender_name_application.sender_name:
            raise ValidationError(
                {
                    "sender_name": _("Does not match the chosen sender-name application (%(name)s).")
                    % {"name": sender_name_application.sender_name}
                }
            )
        sender_name = sender_name_application.sender_name
    elif not sender_name:
        raise ValidationError({"sender_name": _("Choose an approved sender-name application or type a sender name.")})
    elif not (SENDER_NAME_MIN_LENGTH <= len(sender_name) <= SENDER_NAME_MAX_LENGTH) or not re.match(
        SENDER_NAME_PATTERN_OTHERS, sender_name
    ):
        raise ValidationError(
            {
                "sender_name": _("%(min)d to %(max)d Latin letters, digits or . * ! + - characters.")
                % {"min": SENDER_NAME_MIN_LENGTH, "max": SENDER_NAME_MAX_LENGTH}
            }
        )
    return {
        "code": code,
        "name": name,
        "name_translations": name_translations,
        "description": description,
        "description_translations": description_translations,
        "sender_name": sender_name,
        "sender_name_application": sender_name_application,
    }


def _distinct(installations) -> list[Installation]:
    """Each portal once, in the order given (a client may repeat an id)."""
    return list({installation.pk: installation for installation in installations}.values())


def _check_installations(installations) -> list[Installation]:
    installations = _distinct(installations)
    inactive = [str(i) for i in installations if i.state != InstallationState.ACTIVE]
    if inactive:
        raise ValidationError(
            {"installations": _("Not active (removed or needs reinstall): %(names)s.") % {"names": ", ".join(inactive)}}
        )
    return installations


# --- Provider CRUD ----------------------------------------------------------------------------


def _code_taken(code: str, *, exclude_pk: int | None = None) -> bool:
    return Provider.objects.filter(code=code).exclude(pk=exclude_pk).exists()


def _code_taken_error() -> ValidationError:
    return ValidationError({"code": _("A provider with this code already exists.")})


def provider_code_clean(*, provider: Provider | None, code: str) -> None:
    """A new code must be free, and cannot change while the provider is on a portal (Bitrix24 knows it by it)."""
    if provider is not None and provider.pk:
        if code == provider.code:
            return
        if provider.registrations.exclude(state=RegistrationState.REMOVED).exists():
            raise ValidationError({"code": _("The code cannot change while the provider is registered on a portal.")})
    if _code_taken(code, exclude_pk=provider.pk if provider is not None else None):
        raise _code_taken_error()


def _save_provider(provider: Provider) -> None:
    """Save; a concurrent request that took the same code in the meantime is the same 400, not a 500."""
    try:
        with transaction.atomic():
            provider.save()
    except IntegrityError:
        raise _code_taken_error() from None


@transaction.atomic
def provider_create(*, installations=None, **fields) -> Provider:
    """Create a provider; when installations are given, register it on them."""
    cleaned = provider_clean(**fields)
    provider_code_clean(provider=None, code=cleaned["code"])
    targets = _check_installations(installations or [])
    provider = Provider(**cleaned)
    _save_provider(provider)
    if targets:
        provider_register(provider=provider, installations=targets)
    return provider


@transaction.atomic
def provider_update(*, provider: Provider, installations=None, **fields) -> Provider:
    """Change a provider; the change is pushed (sender.update) to every portal it is on.

    ``installations`` adds registrations (removal is :func:`provider_unregister`). The CODE cannot
    change while the provider is on a portal: Bitrix24 knows it by that code.
    """
    provider = Provider.objects.select_for_update().get(pk=provider.pk)
    current = {
        "code": provider.code,
        "name": provider.name,
        "name_translations": provider.name_translations,
        "description": provider.description,
        "description_translations": provider.description_translations,
        "sender_name": provider.sender_name,
        "sender_name_application": provider.sender_name_application,
    }
    if "sender_name_application" in fields and "sender_name" not in fields:
        fields["sender_name"] = ""  # follow the newly chosen application
    cleaned = provider_clean(**{**current, **fields})
    provider_code_clean(provider=provider, code=cleaned["code"])
    targets = _check_installations(installations or [])
    remote_fields = ("name", "name_translations", "description", "description_translations")
    changed_remotely = any(cleaned[f] != current[f] for f in remote_fields)
    for key, value in cleaned.items():
        setattr(provider, key, value)
    _save_provider(provider)
    if changed_remotely:
        provider_push_update(provider=provider)
    new_targets = [
        i for i in targets if not provider.registrations.filter(installation=i, state__in=LIVE_STATES).exists()
    ]
    if new_targets:
        provider_register(provider=provider, installations=new_targets)
    return provider


@transaction.atomic
def provider_delete(*, provider: Provider) -> list[tuple[int, str]]:
    """Delete a provider and delete it (sender.delete) from every portal it is on.

    A provider that already carried messages cannot be deleted (their history needs it): remove
    it from the portals instead. Returns the (installation id, code) pairs being deleted remotely.
    """
    remote = [
        (r.installation_id, provider.code)
        for r in provider.registrations.select_related("installation").exclude(state=RegistrationState.REMOVED)
        if r.installation.is_active
    ]
    try:
        provider.delete()
    except ProtectedError:
        raise ValidationError(
            {
                "non_field_errors": _(
                    "This provider has messages and cannot be deleted; remove it from the portals instead."
                )
            }
        ) from None
    for installation_id, code in remote:
        enqueue_on_commit("providers.tasks.delete_sender", installation_id, code)
    return remote


# --- Registration requests (enqueue) -------------------------------------------------------------

# Enqueued on commit and robust (common/taskqueue.py): a broker outage is logged and leaves the registration
# pending (visible, can be asked again); the request that asked for it does not fail after its change was committed.
REGISTER_TASK = "providers.tasks.register_provider"
UPDATE_TASK = "providers.tasks.update_provider_registration"
REMOVE_TASK = "providers.tasks.remove_provider_registration"


@transaction.atomic
def provider_register(*, provider: Provider, installations=None) -> list[ProviderRegistration]:
    """Register (or re-register) the provider on the given installations; all active ones if None."""
    if installations is None:
        installations = Installation.objects.filter(state=InstallationState.ACTIVE)
    registrations = []
    for installation in _check_installations(installations):
        registration, _created = ProviderRegistration.objects.select_for_update().get_or_create(
            provider=provider, installation=installation
        )
        registration.state = RegistrationState.PENDING
        registration.last_error = ""
        registration.save(update_fields=["state", "last_error", "updated_at"])
        enqueue_on_commit(REGISTER_TASK, registration.pk)
        registrations.append(registration)
    return registrations


@transaction.atomic
def provider_push_update(*, provider: Provider) -> list[ProviderRegistration]:
    """Push the provider's current NAME/DESCRIPTION/HANDLER to every portal it is registered on."""
    registrations = list(
        provider.registrations.select_for_update().filter(
            state__in=(RegistrationState.REGISTERED, RegistrationState.FAILED),
            installation__state=InstallationState.ACTIVE,
        )
    )
    for registration in registrations:
        registration.state = RegistrationState.PENDING
        registration.save(update_fields=["state", "updated_at"])
        enqueue_on_commit(UPDATE_TASK, registration.pk)
    return registrations


@transaction.atomic
def provider_unregister(*, provider: Provider, installations=None) -> list[ProviderRegistration]:
    """Remove the provider from the given portals (all it is on if None): sender.delete in a task."""
    registrations = provider.registrations.select_for_update().exclude(state=RegistrationState.REMOVED)
    if installations is not None:
        registrations = registrations.filter(installation__in=list(installations))
    registrations = list(registrations.select_related("installation"))
    for registration in registrations:
        if not registration.installation.is_active:
            registration.state = RegistrationState.REMOVED
            registration.save(update_fields=["state", "updated_at"])
            continue
        registration.state = RegistrationState.REMOVING
        registration.save(update_fields=["state", "updated_at"])
        enqueue_on_commit(REMOVE_TASK, registration.pk)
    return registrations


def registrations_push_after_reinstall(*, installation: Installation, repair_reason: str = "") -> None:
    """After a reinstall or application update Bitrix24 has deleted our providers: add them again.

    Each ``sender.add`` that re-creates a provider is recorded as a repair with ``repair_reason``.
    Call inside a transaction.
    """
    for registration in installation.registrations.select_for_update().filter(state__in=LIVE_STATES):
        registration.state = RegistrationState.PENDING
        registration.save(update_fields=["state", "updated_at"])
        if repair_reason:
            enqueue_on_commit(REGISTER_TASK, registration.pk, repair_reason=repair_reason)
        else:  # the task's message as before the argument existed (a worker not yet upgraded takes it)
            enqueue_on_commit(REGISTER_TASK, registration.pk)


def registrations_resume_stuck(*, older_than: timedelta) -> dict:
    """Ask again for registrations left *pending* or *being removed* for longer than ``older_than``:
    their task could not be queued (broker down), or the queue lost it (a Redis restart without
    persistence). Both remote steps are idempotent, so asking twice is harmless; ``older_than``
    should outlast a task's own retries. Returns how many of each were asked for."""
    now = timezone.now()
    resumed = {"register": 0, "remove": 0}
    with transaction.atomic():
        stuck = list(
            ProviderRegistration.objects.select_for_update(skip_locked=True).filter(
                state__in=(RegistrationState.PENDING, RegistrationState.REMOVING), updated_at__lt=now - older_than
            )
        )
        for registration in stuck:
            # sender.add falls back to sender.update and back: "add" brings any pending request about
            if registration.state == RegistrationState.PENDING:
                enqueue_on_commit(REGISTER_TASK, registration.pk)
                resumed["register"] += 1
            else:
                enqueue_on_commit(REMOVE_TASK, registration.pk)
                resumed["remove"] += 1
        ProviderRegistration.objects.filter(pk__in=[r.pk for r in stuck]).update(updated_at=now)
    if stuck:
        logger.warning("registrations resumed after being stuck", extra=resumed)
    return resumed


# --- Remote work (run by tasks; idempotent) -------------------------------------------------------


def sender_fields(provider: Provider, installation: Installation) -> dict:
    """The sender.add / sender.update parameters of a provider on an installation."""
    fields = {
        "CODE": provider.code,
        "TYPE": contract.SENDER_TYPE_SMS,
        "HANDLER": registration_handler_url(installation),
        "NAME": provider.name_translations or provider.name,
    }
    if provider.description_translations:
        fields["DESCRIPTION"] = provider.description_translations
    elif provider.description:
        fields["DESCRIPTION"] = provider.description
    return fields


def _error_code(exc: Bitrix24Error) -> str:
    return str(getattr(exc, "error", "") or "").upper()


def error_text(exc: Exception) -> str:
    if isinstance(exc, Bitrix24Error):
        description = getattr(exc, "description", "") or ""
        code = getattr(exc, "error", "") or type(exc).__name__
        return f"{code}: {description}" if description else str(code)
    return str(exc) or type(exc).__name__


def _finish(
    registration_id: int, *, state: str, error: str = "", from_states=LIVE_STATES, repair_reason: str = ""
) -> bool:
    """Record the outcome unless the registration moved on meanwhile (e.g. a removal was requested).

    ``repair_reason``: the provider was re-created on a portal that had lost it; recorded and counted.
    """
    now = timezone.now()
    values = {"state": state, "last_error": error[:2000], "updated_at": now}
    if state == RegistrationState.REGISTERED:
        values["registered_at"] = now
    if repair_reason:
        values.update(repaired_at=now, repair_reason=repair_reason, repair_count=F("repair_count") + 1)
    done = bool(ProviderRegistration.objects.filter(pk=registration_id, state__in=from_states).update(**values))
    if done and repair_reason:
        metrics.record_provider_repair(repair_reason)
    return done


def _method_unknown(exc: Bitrix24Error) -> bool:
    """The portal does not know the method: 404 ERROR_METHOD_NOT_FOUND (docs/contracts/bitrix24.md §1.3)."""
    return (
        _error_code(exc) == contract.ERROR_METHOD_NOT_FOUND
        or "method not found" in str(getattr(exc, "description", "") or "").lower()
    )


def _sender_update(client: Bitrix24Client, installation: Installation, fields: dict) -> None:
    """sender.update, or sender.delete + sender.add on a portal without sender.update (learnt here once).

    The delete + add leaves the portal without the provider for the time of one call; ``sender.delete``
    answering "not found" goes on to the add.
    """
    if not installation.lacks_sender_update:
        try:
            client.call(contract.METHOD_SENDER_UPDATE, {k: v for k, v in fields.items() if k != "TYPE"})
            return
        except Bitrix24Error as exc:
            if not _method_unknown(exc):
                raise
        installation.lacks_sender_update = True
        Installation.objects.filter(pk=installation.pk).update(lacks_sender_update=True, updated_at=timezone.now())
        logger.info(
            "portal lacks messageservice.sender.update: changes go as delete + add",
            extra={"domain": installation.domain},
        )
    try:
        client.call(contract.METHOD_SENDER_DELETE, {"CODE": fields["CODE"]})
    except Bitrix24Error as exc:
        if _error_code(exc) != contract.MethodErrors.SENDER_NOT_FOUND:
            raise
    client.call(contract.METHOD_SENDER_ADD, fields)


def registration_sync(
    *, registration_id: int, first: str = "add", final_attempt: bool = True, repair_reason: str = ""
) -> str:
    """Make the provider exist on the portal with its current fields.

    ``first`` = "add" (register) or "update" (push an edit). Returns the resulting state. A
    transient error is re-raised unless ``final_attempt`` (then the registration fails with it).
    ``repair_reason``: the portal is expected to have lost the provider; when ``sender.add``
    re-creates it, the repair is recorded (a provider found in place is updated, not repaired).
    """
    registration = (
        ProviderRegistration.objects.select_related("provider", "installation").filter(pk=registration_id).first()
    )
    if registration is None or registration.state not in LIVE_STATES:
        return registration.state if registration else RegistrationState.REMOVED
    provider, installation = registration.provider, registration.installation
    fields = sender_fields(provider, installation)
    client = portal_client(installation)
    re_created = False
    try:
        if first == "update":
            try:
                _sender_update(client, installation, fields)
            except Bitrix24Error as exc:
                if _error_code(exc) != contract.MethodErrors.SENDER_NOT_FOUND:
                    raise
                client.call(contract.METHOD_SENDER_ADD, fields)
        else:
            try:
                client.call(contract.METHOD_SENDER_ADD, fields)
                re_created = True
            except Bitrix24Error as exc:
                if _error_code(exc) != contract.MethodErrors.SENDER_ALREADY_INSTALLED:
                    raise
                _sender_update(client, installation, fields)
    except Bitrix24Error as exc:  # InstallationInactive included
        if isinstance(exc, Bitrix24TransientError) and not final_attempt:
            raise
        logger.warning(
            "provider registration failed",
            extra={"provider": provider.code, "installation": installation.domain, "error": _error_code(exc)},
        )
        _finish(registration_id, state=RegistrationState.FAILED, error=error_text(exc))
        return RegistrationState.FAILED
    _finish(registration_id, state=RegistrationState.REGISTERED, repair_reason=repair_reason if re_created else "")
    return RegistrationState.REGISTERED


def registration_remove(*, registration_id: int, final_attempt: bool = True) -> str:
    """sender.delete for a registration being removed; not found / uninstalled portal = removed."""
    registration = (
        ProviderRegistration.objects.select_related("provider", "installation").filter(pk=registration_id).first()
    )
    if registration is None or registration.state != RegistrationState.REMOVING:
        return registration.state if registration else RegistrationState.REMOVED
    try:
        _sender_delete(registration.installation, registration.provider.code)
    except Bitrix24Error as exc:
        if isinstance(exc, Bitrix24TransientError) and not final_attempt:
            raise
        _finish(
            registration_id,
            state=RegistrationState.FAILED,
            error=error_text(exc),
            from_states=(RegistrationState.REMOVING,),
        )
        return RegistrationState.FAILED
    _finish(registration_id, state=RegistrationState.REMOVED, from_states=(RegistrationState.REMOVING,))
    return RegistrationState.REMOVED


def _sender_delete(installation: Installation, code: str) -> None:
    try:
        portal_client(installation).call(contract.METHOD_SENDER_DELETE, {"CODE": code})
    except InstallationInactive:
        return  # an uninstalled application's providers are gone already
    except Bitrix24Error as exc:
        if _error_code(exc) != contract.MethodErrors.SENDER_NOT_FOUND:
            raise


def sender_delete(*, installation_id: int, code: str) -> None:
    """Delete a code from a portal (for a provider deleted here). Idempotent."""
    installation = Installation.objects.filter(pk=installation_id).first()
    if installation is not None and installation.is_active:
        _sender_delete(installation, code)


# --- Check (drift between our records and the portal) -----------------------------------------------


@dataclass
class PortalCheck:
    installation_id: int
    domain: str
    error: str = ""
    on_portal: list[str] = field(default_factory=list)  # codes sender.list returned
    missing_on_portal: list[str] = field(default_factory=list)  # registered here, absent there
    unknown_on_portal: list[str] = field(default_factory=list)  # there, but not registered here

    def as_dict(self) -> dict:
        return asdict(self)


def _sender_list(installation: Installation) -> tuple[list[str] | None, str]:
    """(the codes sender.list shows on the portal, sorted, ""), or (None, why they could not be read)."""
    try:
        codes = portal_client(installation).call(contract.METHOD_SENDER_LIST) or []
        if isinstance(codes, dict):  # PHP serialises some lists as maps
            codes = list(codes.values())
    except (Bitrix24Error, InstallationInactive) as exc:
        return None, error_text(exc)
    if not isinstance(codes, list):
        return None, _g("Unexpected sender.list answer.")
    return sorted(str(c) for c in codes), ""


def installation_check(*, installation: Installation) -> PortalCheck:
    """Compare sender.list with our registrations on this portal; record the outcome on them."""
    result = PortalCheck(installation_id=installation.pk, domain=installation.domain)
    codes, result.error = _sender_list(installation)
    if codes is None:
        return result
    result.on_portal = codes
    on_portal = set(result.on_portal)
    now = timezone.now()
    expected = {}
    for registration in installation.registrations.select_related("provider").filter(
        state__in=(*LIVE_STATES, RegistrationState.REMOVING)
    ):
        expected[registration.provider.code] = registration
    for code, registration in sorted(expected.items()):
        if registration.state == RegistrationState.REGISTERED and code not in on_portal:
            result.missing_on_portal.append(code)
            _finish(
                registration.pk,
                state=RegistrationState.FAILED,
                error=_g("Not found on the portal at the last check; register it again."),
                from_states=(RegistrationState.REGISTERED,),
            )
    result.unknown_on_portal = sorted(on_portal - set(expected))
    installation.registrations.filter(state__in=LIVE_STATES).update(checked_at=now)
    return result


def provider_check(*, provider: Provider, installations=None) -> list[dict]:
    """Check the provider on the given portals (every active portal it is registered on if None).

    Each result says whether the provider is registered here and present there, plus the whole
    portal's drift (codes missing on the portal, codes on the portal we do not know).
    """
    if installations is None:
        installations = Installation.objects.filter(
            state=InstallationState.ACTIVE, registrations__provider=provider
        ).distinct()
    results = []
    for installation in _distinct(installations):
        check = installation_check(installation=installation)
        registration = provider.registrations.filter(installation=installation).first()
        row = check.as_dict()
        row["code"] = provider.code
        row["registration_state"] = registration.state if registration else None
        row["present_on_portal"] = provider.code in check.on_portal if not check.error else None
        if check.error:
            row["summary"] = _g("Check failed: %(error)s") % {"error": check.error}
        elif provider.code in check.missing_on_portal:
            row["summary"] = _g("Missing on the portal (marked failed; register again).")
        elif row["present_on_portal"] and registration and registration.state == RegistrationState.REGISTERED:
            row["summary"] = _g("Registered and present on the portal.")
        elif row["present_on_portal"]:
            row["summary"] = _g("Present on the portal but not registered here.")
        else:
            row["summary"] = _g("Not on the portal.")
        results.append(row)
    return results


# --- Drift repair (beat) ----------------------------------------------------------------------------


def installation_repair_drift(*, installation: Installation) -> PortalCheck:
    """Compare sender.list with our registrations and add back what Bitrix24 lost.

    Every registration *registered* here but absent there is registered again (sender.add in a
    task, with the same HANDLER; the re-add is recorded as a repair, reason ``drift``). Pending and
    failed registrations are left alone (being worked on, or waiting for an operator), and so are
    codes on the portal we do not know. When something was missing the application events are bound
    again as well: an application update we did not hear of removes them too. One sender.list call.
    """
    result = PortalCheck(installation_id=installation.pk, domain=installation.domain)
    codes, result.error = _sender_list(installation)
    if codes is None:
        logger.warning("drift check failed", extra={"domain": installation.domain, "error": result.error})
        return result
    result.on_portal = codes
    on_portal = set(codes)
    with transaction.atomic():
        registrations = list(
            installation.registrations.select_for_update()
            .select_related("provider")
            .filter(state__in=(*LIVE_STATES, RegistrationState.REMOVING))
        )
        for registration in sorted(registrations, key=lambda r: r.provider.code):
            if registration.state == RegistrationState.REGISTERED and registration.provider.code not in on_portal:
                result.missing_on_portal.append(registration.provider.code)
                registration.state = RegistrationState.PENDING
                registration.save(update_fields=["state", "updated_at"])
                enqueue_on_commit(REGISTER_TASK, registration.pk, repair_reason=RepairReason.DRIFT)
        result.unknown_on_portal = sorted(on_portal - {r.provider.code for r in registrations})
        installation.registrations.filter(state__in=LIVE_STATES).update(checked_at=timezone.now())
        if result.missing_on_portal:
            Installation.objects.filter(pk=installation.pk).update(bound_events="", updated_at=timezone.now())
            enqueue_on_commit("providers.tasks.bind_event_handlers", installation.pk)
    if result.missing_on_portal:
        logger.warning(
            "providers missing on the portal are registered again",
            extra={"domain": installation.domain, "codes": result.missing_on_portal},
        )
    return result


def installations_drift_due(*, interval: timedelta, period: timedelta) -> list[int]:
    """Beat (every ``period``): queue the drift repair of the installations due for it.

    Each active installation with live registrations is visited about once per ``interval``, the
    oldest checked first, and a run takes only its share (installations × period / interval), so
    the sender.list calls are spread over the interval instead of hitting every portal at once.
    Returns the installation ids queued.
    """
    now = timezone.now()
    live = Q(registrations__state__in=LIVE_STATES)
    candidates = (
        Installation.objects.filter(state=InstallationState.ACTIVE)
        .annotate(
            live_registrations=Count("registrations", filter=live),
            last_checked=Min("registrations__checked_at", filter=live),
        )
        .filter(live_registrations__gt=0)
    )
    total = candidates.count()
    if not total:
        return []
    share = max(1, math.ceil(total * period.total_seconds() / interval.total_seconds()))
    with transaction.atomic():
        due = list(
            candidates.filter(Q(last_checked__isnull=True) | Q(last_checked__lte=now - interval))
            .order_by(F("last_checked").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)[:share]
        )
        # Claimed: the next run does not queue them again while their task waits.
        ProviderRegistration.objects.filter(installation_id__in=due, state__in=LIVE_STATES).update(checked_at=now)
        for installation_id in due:
            enqueue_on_commit("providers.tasks.repair_installation_drift", installation_id)
    return due
