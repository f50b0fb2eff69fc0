"""Sender-name applications filed with i-dgtl, their documents and their status history."""

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.http import FileResponse, Http404
from django.utils.translation import gettext_lazy as _

from idgtl.contract import SENDER_NAME_FINAL_STATUSES, Brand, ChannelType, CommonType, SenderNameStatus


def status_label(value: str) -> str:
    """The readable label of a known i-dgtl status; an unknown status string as it is."""
    return str(SenderNameStatus(value).label) if value in SenderNameStatus.values else value


class SubmissionState(models.TextChoices):
    """Where our side of the submission is. The i-dgtl review status is a separate field."""

    DRAFT = "draft", _("Draft")  # saved, not yet sent to i-dgtl
    QUEUED = "queued", _("Queued for submission")  # a submit was requested; a task is on its way
    SUBMITTING = "submitting", _("Submitting")  # a worker is calling i-dgtl; outcome may be unknown
    SUBMITTED = "submitted", _("Submitted")  # i-dgtl answered with an id
    FAILED = "failed", _("Submission failed")  # i-dgtl refused it or configuration is wrong


class ErrorKind(models.TextChoices):
    CONFIGURATION = "configuration", _("Configuration error")  # 401/403: the key, not the operator
    REJECTED = "rejected", _("Rejected by i-dgtl")  # 422: the operator's input
    TRANSIENT = "transient", _("Temporary failure")  # 429/5xx/timeouts after retries
    NOT_FOUND = "not_found", _("Not found at i-dgtl")


class StatusChangeCause(models.TextChoices):
    SUBMISSION = "submission", _("Submission")
    PERIODIC_SYNC = "periodic_sync", _("Periodic sync")
    MANUAL_REFRESH = "manual_refresh", _("Manual refresh")
    MANUAL_STATUS = "manual", _("Set by hand")  # an operator read it in i-dgtl's cabinet and typed it in


class SenderNameGroup(models.Model):
    """One request for a name with several operators: the same fields and documents, one application per brand."""

    account = models.ForeignKey(
        "idgtl.IdgtlAccount",
        on_delete=models.PROTECT,
        related_name="sender_name_groups",
        verbose_name=_("i-dgtl account"),
    )
    channel_type = models.CharField(_("channel"), max_length=16, choices=ChannelType.choices, default=ChannelType.SMS)
    common_type = models.CharField(_("type"), max_length=16, choices=CommonType.choices)
    date_from = models.DateTimeField(_("start date"))
    sender_name = models.CharField(_("sender name"), max_length=11, db_index=True)
    counteragent_name = models.CharField(_("legal entity"), max_length=255)
    counteragent_inn = models.CharField(_("INN"), max_length=12)
    # The request as it was filed (fields, brands, documents' digests): the same request again soon after
    # (a double submit) finds this group instead of filing anything.
    request_fingerprint = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("sender name for several operators")
        verbose_name_plural = _("sender names for several operators")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.sender_name} (#{self.pk})"


class SenderNameApplication(models.Model):
    account = models.ForeignKey(
        "idgtl.IdgtlAccount",
        on_delete=models.PROTECT,
        related_name="sender_name_applications",
        verbose_name=_("i-dgtl account"),
    )
    channel_type = models.CharField(_("channel"), max_length=16, choices=ChannelType.choices, default=ChannelType.SMS)
    common_type = models.CharField(_("type"), max_length=16, choices=CommonType.choices)
    brand = models.CharField(_("operator"), max_length=16, choices=Brand.choices)
    date_from = models.DateTimeField(_("start date"))
    sender_name = models.CharField(_("sender name"), max_length=11)
    counteragent_name = models.CharField(_("legal entity"), max_length=255)
    counteragent_inn = models.CharField(_("INN"), max_length=12)

    submission_state = models.CharField(
        _("submission"), max_length=16, choices=SubmissionState.choices, default=SubmissionState.DRAFT, db_index=True
    )
    remote_id = models.BigIntegerField(_("i-dgtl id"), null=True, blank=True)
    # Stored exactly as i-dgtl sent it; known values have labels, unknown ones are shown as they are.
    status = models.CharField(_("status"), max_length=64, blank=True, db_index=True, choices=SenderNameStatus.choices)
    status_comment = models.TextField(_("status comment"), blank=True)
    fee = models.DecimalField(_("fee, RUB"), max_digits=12, decimal_places=2, null=True, blank=True)

    last_error_kind = models.CharField(_("error kind"), max_length=16, choices=ErrorKind.choices, blank=True)
    last_error_code = models.IntegerField(_("i-dgtl error code"), null=True, blank=True)
    last_error_message = models.TextField(_("last error"), blank=True)

    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    status_checked_at = models.DateTimeField(_("status checked"), null=True, blank=True)
    next_status_check_at = models.DateTimeField(_("next status check"), null=True, blank=True, db_index=True)
    # Where the current status came from: i-dgtl (read or answered) or an operator (set by hand), and since when.
    status_manual = models.BooleanField(_("set by hand"), default=False)
    status_date = models.DateField(_("status date"), null=True, blank=True)
    status_changed_at = models.DateTimeField(_("status recorded"), null=True, blank=True)
    group = models.ForeignKey(
        SenderNameGroup,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="applications",
        verbose_name=_("filed with several operators"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("sender-name application")
        verbose_name_plural = _("sender-name applications")
        # Actions beyond add/change/delete (b24sms/permissions.py); submitting is what i-dgtl charges for.
        permissions = [
            ("submit_application", "Can submit sender-name applications to i-dgtl"),
            ("refresh_application_status", "Can ask i-dgtl for the status of sender-name applications"),
            ("set_application_status", "Can set the status of sender-name applications by hand"),
        ]
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "remote_id"], name="sendernames_unique_remote_id_per_account"),
        ]
        indexes = [models.Index(fields=["status", "next_status_check_at"], name="sendernames_open_idx")]

    def __str__(self):
        return f"{self.sender_name} ({self.get_brand_display()})"

    @property
    def is_final(self) -> bool:
        return self.status in SENDER_NAME_FINAL_STATUSES

    @property
    def is_editable(self) -> bool:
        """Only a draft (or an application i-dgtl refused) may be changed; a submitted one is read-only."""
        return self.submission_state in (SubmissionState.DRAFT, SubmissionState.FAILED)

    @property
    def status_label(self) -> str:
        return status_label(self.status)

    @property
    def is_polled(self) -> bool:
        """Submitted and not final: its status is (or would be) read from i-dgtl."""
        return self.submission_state == SubmissionState.SUBMITTED and self.remote_id is not None and not self.is_final

    @property
    def status_not_readable(self) -> bool:
        """Its status cannot be read from i-dgtl: the account has no read endpoint (see StatusReadability).

        Querysets of ``selectors.with_status_readability`` carry it as an annotation (no query per row)."""
        if not self.is_polled:
            return False
        annotated = getattr(self, "account_status_unreadable", None)
        if annotated is not None:
            return annotated
        return StatusReadability.objects.filter(account_id=self.account_id, readable=False).exists()


def document_upload_to(instance, filename):
    return f"sender-names/{instance.application_id or 'new'}/{filename}"


class SenderNameDocument(models.Model):
    application = models.ForeignKey(
        SenderNameApplication, on_delete=models.CASCADE, related_name="documents", verbose_name=_("application")
    )
    file = models.FileField(_("file"), upload_to=document_upload_to, max_length=255)
    original_name = models.CharField(_("original name"), max_length=255)
    size = models.PositiveBigIntegerField(_("size, bytes"))
    content_type = models.CharField(_("detected type"), max_length=64)
    position = models.PositiveSmallIntegerField(_("position"), default=0)  # file1, file2, ... order
    created_at = models.DateTimeField(_("uploaded"), auto_now_add=True)

    class Meta:
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        ordering = ["position", "id"]

    def __str__(self):
        return self.original_name

    def download_response(self) -> FileResponse:
        """The file as an attachment under its original name (admin and API downloads); 404 if it is gone."""
        try:
            handle = self.file.open("rb")
        except OSError:
            raise Http404(_("The file of this document is missing from storage.")) from None
        return FileResponse(handle, as_attachment=True, filename=self.original_name, content_type=self.content_type)


class SenderNameStatusChange(models.Model):
    application = models.ForeignKey(
        SenderNameApplication, on_delete=models.CASCADE, related_name="history", verbose_name=_("application")
    )
    previous_status = models.CharField(_("previous status"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=64)
    comment = models.TextField(_("comment"), blank=True)
    cause = models.CharField(_("cause"), max_length=16, choices=StatusChangeCause.choices)
    status_date = models.DateField(_("status date"), null=True, blank=True)  # set by hand: the date the operator gave
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    created_at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        verbose_name = _("status change")
        verbose_name_plural = _("status history")
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{status_label(self.previous_status) if self.previous_status else '—'} → {status_label(self.status)}"


class StatusReadability(models.Model):
    """Whether i-dgtl's sender-name read endpoint (GET /sender-names/{id}, an assumption of the contract)
    answers for an account. While it does not, the account's applications are not polled: an operator
    sets their status by hand from i-dgtl's cabinet, and b24sms asks again once a day."""

    account = models.OneToOneField(
        "idgtl.IdgtlAccount",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="sender_name_readability",
        verbose_name=_("i-dgtl account"),
    )
    readable = models.BooleanField(_("readable"), default=True, db_index=True)
    unreadable_since = models.DateTimeField(_("not readable since"), null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(_("i-dgtl answered (HTTP)"), null=True, blank=True)
    detail = models.TextField(_("i-dgtl's answer"), blank=True)
    checked_at = models.DateTimeField(_("last checked"), null=True, blank=True)
    next_check_at = models.DateTimeField(_("next check"), null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = _("status reading from i-dgtl")
        verbose_name_plural = _("status reading from i-dgtl")
        ordering = ["account__name"]

    def __str__(self):
        return str(self.account)


@receiver(post_delete, sender=SenderNameDocument)
def document_file_delete(sender, instance: SenderNameDocument, **kwargs):
    """A deleted document (or a deleted draft's documents) leaves no file behind, once the delete is committed."""
    name, storage = instance.file.name, instance.file.storage
    if name:
        transaction.on_commit(lambda: storage.delete(name), robust=True)
