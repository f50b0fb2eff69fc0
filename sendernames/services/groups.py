"""One name for several operators: one request, one application per brand, each filed exactly once.

i-dgtl takes one ``brand`` per application, so a name meant for every subscriber is filed several
times with the same fields and documents. ``group_create`` checks the request against every chosen
operator's rules before anything is stored or sent (MegaFon's alphabet is stricter: the message names
the operators that refuse and the characters they refuse), then stores the group and one application
per brand with a copy of the documents, and queues each for submission (the submit task's claim makes
a redelivered task harmless). The same request again within ``REPEAT_WINDOW`` (a double submit)
returns the group already filed and sends nothing. ``group_add_brand`` files one more operator later.
"""

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _

from idgtl.contract import SENDER_NAME_DEAD_STATUSES, Brand
from idgtl.models import IdgtlAccount
from idgtl.services import account_get_default
from sendernames.models import SenderNameApplication, SenderNameDocument, SenderNameGroup
from sendernames.services.applications import _delete_files, _documents_store, account_key_error, queue_submission
from sendernames.validation import (
    brand_label,
    earliest_date_from,
    group_validate,
    normalise_date_from,
    validate_brands,
    validate_brands_accept,
    validate_choice,
    validate_documents,
    validate_documents_required,
    validate_not_duplicate,
)

logger = logging.getLogger(__name__)

REPEAT_WINDOW = dt.timedelta(minutes=10)


@dataclasses.dataclass
class GroupFiling:
    group: SenderNameGroup
    created: bool  # False: the same request was filed moments ago; nothing was sent again
    message: str


@dataclasses.dataclass
class BrandFiling:
    application: SenderNameApplication
    filed: bool  # False: the brand is already in the group; nothing was filed
    message: str


def _brands_text(brands) -> str:
    return ", ".join(brand_label(brand) for brand in brands)


def request_fingerprint(
    *,
    account_id,
    brands,
    channel_type,
    common_type,
    date_from,
    sender_name,
    counteragent_name,
    counteragent_inn,
    documents: Sequence = (),
) -> str:
    """The request as filed: its fields (as they will be stored), its brands and its documents' content."""
    try:
        day = normalise_date_from(date_from).isoformat()
    except ValidationError:
        day = str(date_from)
    try:
        brands = validate_brands(brands)
    except ValidationError:
        brands = sorted(str(brand) for brand in (brands or []))
    digests = []
    for upload in documents:
        upload.seek(0)
        digest = hashlib.sha256()
        for chunk in iter(lambda: upload.read(1 << 16), b""):  # noqa: B023 (consumed in this iteration)
            digest.update(chunk)
        upload.seek(0)
        digests.append(digest.hexdigest())
    payload = [
        account_id,
        brands,
        channel_type,
        common_type,
        day,
        (sender_name or "").strip().casefold(),
        (counteragent_name or "").strip(),
        (counteragent_inn or "").strip(),
        digests,
    ]
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()


def group_find_repeat(account_id: int, fingerprint: str, now: dt.datetime) -> SenderNameGroup | None:
    return (
        SenderNameGroup.objects.filter(
            account_id=account_id, request_fingerprint=fingerprint, created_at__gte=now - REPEAT_WINDOW
        )
        .order_by("-pk")
        .first()
    )


def _repeat_filing(group: SenderNameGroup, now: dt.datetime) -> GroupFiling:
    return GroupFiling(
        group,
        False,
        _("The same request was filed %(ago)s ago (#%(id)s); nothing was sent again.")
        % {"ago": timesince(group.created_at, now), "id": group.pk},
    )


def group_create(
    *,
    brands,
    channel_type: str = "SMS",
    common_type: str,
    date_from,
    sender_name: str,
    counteragent_name: str,
    counteragent_inn: str,
    documents: Sequence = (),
    account: IdgtlAccount | None = None,
    created_by=None,
    now: dt.datetime | None = None,
) -> GroupFiling:
    """File one name with several operators; on any error nothing is stored and nothing is sent."""
    account = account or account_get_default()
    documents = list(documents)
    now = now or timezone.now()
    values = {
        "channel_type": channel_type,
        "common_type": common_type,
        "date_from": date_from,
        "sender_name": sender_name,
        "counteragent_name": counteragent_name,
        "counteragent_inn": counteragent_inn,
    }
    fingerprint = request_fingerprint(account_id=account.pk, brands=brands, documents=documents, **values)
    repeat = group_find_repeat(account.pk, fingerprint, now)
    if repeat is not None:  # a double submit: the first one is filed (its brands are now duplicates)
        return _repeat_filing(repeat, now)
    errors, cleaned, chosen, types = {}, None, [], []
    try:
        cleaned, chosen = group_validate(account_id=account.pk, brands=brands, document_count=len(documents), **values)
    except ValidationError as exc:
        errors = dict(exc.error_dict)
    try:
        types = validate_documents(documents)
    except ValidationError as exc:
        errors.setdefault("documents", []).extend(exc.error_list)
    key_error = account_key_error(account)
    if key_error is not None:
        errors["account"] = [key_error]
    if errors:
        raise ValidationError(errors)
    stored = []
    try:
        filing = _group_store(
            account=account,
            cleaned=cleaned,
            brands=chosen,
            documents=documents,
            types=types,
            created_by=created_by,
            fingerprint=fingerprint,
            stored=stored,
            now=now,
        )
    except BaseException:
        _delete_files(stored)  # the rows were rolled back; their files go too
        raise
    if filing.created:
        logger.info("Sender-name group filed", extra={"group_id": filing.group.pk, "brands": chosen})
    return filing


@transaction.atomic
def _group_store(*, account, cleaned, brands, documents, types, created_by, fingerprint, stored, now) -> GroupFiling:
    # One filer at a time per account: a concurrent identical request finds this group, not a duplicate error.
    IdgtlAccount.objects.select_for_update().filter(pk=account.pk).first()
    repeat = group_find_repeat(account.pk, fingerprint, now)
    if repeat is not None:
        return _repeat_filing(repeat, now)
    duplicates = []
    for brand in brands:
        try:
            validate_not_duplicate(
                account_id=account.pk,
                sender_name=cleaned["sender_name"],
                brand=brand,
                channel_type=cleaned["channel_type"],
            )
        except ValidationError as exc:
            duplicates.extend(exc.error_list)
    if duplicates:
        raise ValidationError({"sender_name": duplicates})
    group = SenderNameGroup.objects.create(
        account=account, created_by=created_by, request_fingerprint=fingerprint, **cleaned
    )
    for brand in brands:
        application = SenderNameApplication.objects.create(
            account=account, group=group, brand=brand, created_by=created_by, **cleaned
        )
        _documents_store(application=application, files=documents, types=types, stored=stored)
        queue_submission(application)
    return GroupFiling(
        group,
        True,
        _("Filed for %(brands)s: one application per operator, each queued for submission to i-dgtl.")
        % {"brands": _brands_text(brands)},
    )


# --- One more operator ----------------------------------------------------------------------------
def _documents_copy(*, source: SenderNameApplication | None, target: SenderNameApplication, stored: list) -> None:
    """The group's documents (those of its first application that has any) for one more application."""
    if source is None:
        return
    for document in source.documents.all():
        try:
            with document.file.open("rb") as handle:
                content = handle.read()
        except OSError:
            raise ValidationError(
                {
                    "documents": [
                        ValidationError(
                            _("The document “%(name)s” of this group cannot be read from storage; nothing was filed."),
                            code="missing",
                            params={"name": document.original_name},
                        )
                    ]
                }
            ) from None
        copy = SenderNameDocument(
            application=target,
            original_name=document.original_name,
            size=len(content),
            content_type=document.content_type,
            position=document.position,
        )
        copy.file.save(document.original_name, ContentFile(content, name=document.original_name), save=False)
        stored.append(copy)
        copy.save()


def group_add_brand(*, group_id: int, brand: str, created_by=None, now: dt.datetime | None = None) -> BrandFiling:
    """File the group's name with one more operator (just that one); a brand already in the group is left alone.

    The start date is the group's, or the next Moscow day when the group's has passed (i-dgtl wants a
    future dateFrom)."""
    now = now or timezone.now()
    group = SenderNameGroup.objects.select_related("account").get(pk=group_id)
    errors = {}
    try:
        validate_choice(brand, Brand, _("operator"))
        validate_brands_accept(group.sender_name, [brand])
    except ValidationError as exc:
        errors["brand"] = exc.error_list
    key_error = account_key_error(group.account)
    if key_error is not None:
        errors["account"] = [key_error]
    if errors:
        raise ValidationError(errors)
    stored = []
    try:
        filing = _brand_store(group=group, brand=brand, created_by=created_by, stored=stored, now=now)
    except BaseException:
        _delete_files(stored)
        raise
    if filing.filed:
        logger.info(
            "Sender-name group: an operator added",
            extra={"group_id": group.pk, "brand": brand, "application_id": filing.application.pk},
        )
    return filing


@transaction.atomic
def _brand_store(*, group, brand, created_by, stored, now) -> BrandFiling:
    IdgtlAccount.objects.select_for_update().filter(pk=group.account_id).first()
    present = (
        group.applications.filter(brand=brand).exclude(status__in=SENDER_NAME_DEAD_STATUSES).order_by("-pk").first()
    )
    if present is not None:
        return BrandFiling(
            present,
            False,
            _("%(brand)s is already in this group (application #%(id)s, %(state)s); nothing was filed.")
            % {
                "brand": brand_label(brand),
                "id": present.pk,
                "state": present.status_label or present.get_submission_state_display(),
            },
        )
    try:
        validate_not_duplicate(
            account_id=group.account_id, sender_name=group.sender_name, brand=brand, channel_type=group.channel_type
        )
    except ValidationError as exc:
        raise ValidationError({"brand": exc.error_list}) from exc
    source = group.applications.filter(documents__isnull=False).order_by("pk").first()
    try:
        validate_documents_required(group.common_type, source.documents.count() if source else 0)
    except ValidationError as exc:
        raise ValidationError({"documents": exc.error_list}) from exc
    application = SenderNameApplication.objects.create(
        account_id=group.account_id,
        group=group,
        brand=brand,
        created_by=created_by,
        channel_type=group.channel_type,
        common_type=group.common_type,
        sender_name=group.sender_name,
        date_from=max(group.date_from, earliest_date_from(now)),
        counteragent_name=group.counteragent_name,
        counteragent_inn=group.counteragent_inn,
    )
    _documents_copy(source=source, target=application, stored=stored)
    queue_submission(application)
    return BrandFiling(
        application,
        True,
        _("%(brand)s added: its application #%(id)s is queued for submission to i-dgtl.")
        % {"brand": brand_label(brand), "id": application.pk},
    )
