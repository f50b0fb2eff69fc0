"""Filing sender-name applications and asking for their submission."""

import dataclasses
import logging
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.utils.translation import gettext as _

from common.taskqueue import enqueue_on_commit
from idgtl.models import IdgtlAccount
from idgtl.services import account_get_default
from sendernames.models import SenderNameApplication, SenderNameDocument, SubmissionState
from sendernames.services.submission import SUBMIT_TASK
from sendernames.validation import (
    application_validate,
    normalise_date_from,
    validate_document_count,
    validate_documents,
    validate_documents_required,
    validate_not_duplicate,
)

logger = logging.getLogger(__name__)


def _documents_store(
    *, application: SenderNameApplication, files: Sequence, types: Sequence[str], stored: list, start: int = 0
) -> None:
    """Save the files and their rows; ``stored`` collects them so a caller can delete the files on rollback."""
    for position, (upload, content_type) in enumerate(zip(files, types, strict=False), start=start + 1):
        upload.seek(0)
        original_name = (getattr(upload, "name", "") or f"document{position}").replace("\\", "/").rsplit("/", 1)[-1]
        document = SenderNameDocument(
            application=application,
            original_name=original_name,
            size=upload.size,
            content_type=content_type,
            position=position,
        )
        document.file.save(original_name, File(upload, name=original_name), save=False)
        stored.append(document)
        document.save()


def _delete_files(documents) -> None:
    for document in documents:
        try:
            document.file.delete(save=False)
        except OSError:
            logger.warning("Could not delete an unsaved document file", extra={"path": document.file.name})


def _validate(*, account_id, values: dict, documents: list, existing: int = 0, exclude_id=None) -> tuple[dict, list]:
    """Every rule on the fields and the new documents at once; the cleaned values and the documents' types."""
    errors, cleaned, types = {}, None, []
    try:
        cleaned = application_validate(
            account_id=account_id, document_count=existing + len(documents), exclude_id=exclude_id, **values
        )
    except ValidationError as exc:
        errors = dict(exc.error_dict)
    try:
        types = validate_documents(documents)
        if documents and existing:
            validate_document_count(existing + len(documents))
    except ValidationError as exc:
        errors.setdefault("documents", []).extend(exc.error_list)
    if errors:
        raise ValidationError(errors)
    return cleaned, types


@transaction.atomic
def _create(*, account, cleaned, documents, types, created_by, stored):
    # One creator at a time per account, so two concurrent requests cannot both pass the duplicate check.
    IdgtlAccount.objects.select_for_update().filter(pk=account.pk).first()
    try:
        validate_not_duplicate(
            account_id=account.pk,
            sender_name=cleaned["sender_name"],
            brand=cleaned["brand"],
            channel_type=cleaned["channel_type"],
        )
    except ValidationError as exc:
        raise ValidationError({"sender_name": exc.error_list}) from exc
    application = SenderNameApplication.objects.create(account=account, created_by=created_by, **cleaned)
    _documents_store(application=application, files=documents, types=types, stored=stored)
    return application


def application_create(
    *,
    channel_type: str = "SMS",
    common_type: str,
    brand: str,
    date_from,
    sender_name: str,
    counteragent_name: str,
    counteragent_inn: str,
    documents: Sequence = (),
    account: IdgtlAccount | None = None,
    created_by=None,
) -> SenderNameApplication:
    """File a draft application with its documents; on any error nothing is stored."""
    account = account or account_get_default()
    documents = list(documents)
    cleaned, types = _validate(
        account_id=account.pk,
        documents=documents,
        values={
            "channel_type": channel_type,
            "common_type": common_type,
            "brand": brand,
            "date_from": date_from,
            "sender_name": sender_name,
            "counteragent_name": counteragent_name,
            "counteragent_inn": counteragent_inn,
        },
    )
    stored = []
    try:
        application = _create(
            account=account, cleaned=cleaned, documents=documents, types=types, created_by=created_by, stored=stored
        )
    except BaseException:
        _delete_files(stored)  # the rows were rolled back; their files go too
        raise
    logger.info("Sender-name application created", extra={"application_id": application.pk})
    return application


def application_update(
    *, application: SenderNameApplication, documents: Sequence = (), **fields
) -> SenderNameApplication:
    """Change a draft (or an application i-dgtl refused) and add documents to it."""
    stored = []
    try:
        return _update(application=application, documents=list(documents), fields=fields, stored=stored)
    except BaseException:
        _delete_files(stored)
        raise


@transaction.atomic
def _update(*, application, documents, fields, stored):
    application = SenderNameApplication.objects.select_for_update().get(pk=application.pk)
    if not application.is_editable:
        raise ValidationError(_("A submitted application cannot be changed."), code="read_only")
    values = {
        name: getattr(application, name)
        for name in (
            "channel_type",
            "common_type",
            "brand",
            "date_from",
            "sender_name",
            "counteragent_name",
            "counteragent_inn",
        )
    }
    values.update(fields)
    existing = application.documents.count()
    cleaned, types = _validate(
        account_id=application.account_id,
        values=values,
        documents=documents,
        existing=existing,
        exclude_id=application.pk,
    )
    for name, value in cleaned.items():
        setattr(application, name, value)
    application.save()
    _documents_store(application=application, files=documents, types=types, stored=stored, start=existing)
    return application


@dataclasses.dataclass
class SubmitRequest:
    application: SenderNameApplication
    queued: bool  # False: it was already queued, being submitted, or submitted
    message: str


def application_submit(*, application_id: int) -> SubmitRequest:
    """Ask for submission: a draft (or failed) application is queued and a task is enqueued on commit.

    A second request while queued, submitting or submitted changes nothing and enqueues nothing, so
    a double click or a repeated API call cannot produce a second remote application.
    """
    with transaction.atomic():
        application = SenderNameApplication.objects.select_for_update().select_related("account").get(pk=application_id)
        if application.submission_state not in (SubmissionState.DRAFT, SubmissionState.FAILED):
            return SubmitRequest(application, False, _already_message(application))
        # Rules that can become false while a draft waits: the start date, and documents.
        errors = {}
        try:
            application.date_from = normalise_date_from(application.date_from)
        except ValidationError as exc:
            errors["date_from"] = exc.error_list
        try:
            validate_documents_required(application.common_type, application.documents.count())
        except ValidationError as exc:
            errors["documents"] = exc.error_list
        try:
            validate_not_duplicate(
                account_id=application.account_id,
                sender_name=application.sender_name,
                brand=application.brand,
                channel_type=application.channel_type,
                exclude_id=application.pk,
            )
        except ValidationError as exc:
            errors["sender_name"] = exc.error_list
        key_error = account_key_error(application.account)
        if key_error is not None:
            errors["account"] = [key_error]
        if errors:
            raise ValidationError(errors)
        queue_submission(application)
    return SubmitRequest(application, True, _("Queued for submission to i-dgtl."))


def queue_submission(application: SenderNameApplication) -> None:
    """QUEUED, and the submit task enqueued once the caller's transaction commits (call it inside one)."""
    application.submission_state = SubmissionState.QUEUED
    application.save(update_fields=["submission_state", "date_from", "updated_at"])
    # robust: if the broker is down the request still succeeds; the stalled-submission sweep enqueues it later
    enqueue_on_commit(SUBMIT_TASK, application.pk)


def account_key_error(account: IdgtlAccount) -> ValidationError | None:
    if account.sender_names_key:
        return None
    return ValidationError(
        _(
            "The i-dgtl account “%(account)s” has no sender-names key (TOKEN_2): this is a configuration "
            "problem; save the key in the account first."
        )
        % {"account": account.name}
    )


def _already_message(application: SenderNameApplication) -> str:
    if application.submission_state == SubmissionState.SUBMITTED:
        return _("Already submitted (i-dgtl id %(id)s); nothing was sent again.") % {"id": application.remote_id}
    return _("Already queued for submission; nothing was sent again.")
