"""Bitrix24 side: applications, their installations on portals, SMS providers, messages.

Models hold state and state transitions; business rules live in providers/services/.
"""

import json
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from bitrix24.contract import MessageStatus as Bitrix24Status
from common.encryption import EncryptedCharField, KeyedHashField, keyed_hash, keyed_hash_matches
from idgtl.contract import MessageStatus as IdgtlMessageStatus
from idgtl.models import mask_secret
from providers import sms_parts


def new_handler_secret() -> str:
    return secrets.token_urlsafe(32)


def new_callback_secret() -> str:
    return secrets.token_urlsafe(32)


# Keyed-hash purposes (common/encryption.py). The HANDLER and callback secrets share one: a legacy callback
# URL carries the HANDLER secret, and one hash then finds it in either column.
URL_SECRET_PURPOSE = "url-secret"
APPLICATION_TOKEN_PURPOSE = "application-token"


def url_secret_index(secret: str) -> str:
    """The blind index of a HANDLER or callback URL secret (handler_secret_index, callback_secret_index)."""
    return keyed_hash(secret, purpose=URL_SECRET_PURPOSE)


class BitrixApplication(models.Model):
    """A Bitrix24 application (local app per portal, or one market app for many portals)."""

    name = models.CharField(_("name"), max_length=100)
    client_id = models.CharField(_("client_id"), max_length=128, unique=True)
    client_secret = EncryptedCharField(_("client_secret"), max_length=256)
    is_default = models.BooleanField(_("default application"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("Bitrix24 application")
        verbose_name_plural = _("Bitrix24 applications")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="providers_one_default_application"
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def client_secret_masked(self) -> str:
        return mask_secret(self.client_secret)


class InstallationState(models.TextChoices):
    ACTIVE = "active", _("Active")
    NEEDS_REINSTALL = "needs_reinstall", _("Needs reinstall")
    REMOVED = "removed", _("Removed")


class InstallationQuerySet(models.QuerySet):
    """The URL secrets are stored encrypted: a secret is found by its keyed hash (one indexed equality)."""

    def by_handler_secret(self, secret: str):
        return self.filter(handler_secret_index=url_secret_index(secret))

    def by_callback_secret(self, secret: str):
        return self.filter(callback_secret_index=url_secret_index(secret))


class Installation(models.Model):
    """b24sms installed on one portal (one per application and member_id).

    Secrets at rest (common/encryption.py): the OAuth tokens and the URL secrets are encrypted; the URL
    secrets are found through their keyed hashes (``*_index``, unique); the application token, which is
    only ever compared, is kept as its keyed hash alone (set ``application_token``, ask
    :meth:`application_token_matches`).
    """

    application = models.ForeignKey(
        BitrixApplication, on_delete=models.PROTECT, related_name="installations", verbose_name=_("application")
    )
    account = models.ForeignKey(
        "idgtl.IdgtlAccount",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="installations",
        verbose_name=_("i-dgtl account"),
        help_text=_("Empty means the default account."),
    )
    member_id = models.CharField(_("member_id"), max_length=64)
    domain = models.CharField(_("portal domain"), max_length=255)
    client_endpoint = models.URLField(_("client endpoint"), max_length=500)
    server_endpoint = models.URLField(_("server endpoint"), max_length=500, blank=True)
    access_token = EncryptedCharField(_("access token"), max_length=512, blank=True)
    refresh_token = EncryptedCharField(_("refresh token"), max_length=512, blank=True)
    access_token_expires_at = models.DateTimeField(_("access token expires"), null=True, blank=True)
    # Bitrix24's application_token (at most 128 characters), which events and HANDLER calls carry: only compared.
    application_token_hash = models.CharField(
        _("application token (keyed hash)"), max_length=64, blank=True, editable=False
    )
    scope = models.CharField(_("scope"), max_length=500, blank=True)
    portal_status = models.CharField(_("portal licence status"), max_length=4, blank=True)
    installed_by_user_id = models.CharField(_("installing user"), max_length=32, blank=True)
    # The long random secret in this installation's HANDLER (and uninstall) URLs: only Bitrix24 stores it.
    handler_secret = EncryptedCharField(_("handler secret"), max_length=64, default=new_handler_secret, editable=False)
    handler_secret_index = KeyedHashField(
        _("handler secret (keyed hash)"), source="handler_secret", purpose=URL_SECRET_PURPOSE, unique=True
    )
    # Another secret for the i-dgtl callback URL, which passes through i-dgtl and proxy logs: it can
    # only update statuses of this installation's messages, never send an SMS (the HANDLER refuses it).
    callback_secret = EncryptedCharField(
        _("callback secret"), max_length=64, default=new_callback_secret, editable=False
    )
    callback_secret_index = KeyedHashField(
        _("callback secret (keyed hash)"), source="callback_secret", purpose=URL_SECRET_PURPOSE, unique=True
    )
    default_region = models.CharField(
        _("default phone region"),
        max_length=2,
        default="RU",
        help_text=_("ISO country code used for numbers written without a country code."),
    )
    rate_limit_burst = models.PositiveIntegerField(_("rate limit: burst"), default=50)
    rate_limit_drain_per_second = models.FloatField(_("rate limit: requests per second"), default=2.0)
    # Quotas (providers/services/quotas.py), checked when a message is claimed for sending: empty = no limit.
    quota_monthly_parts = models.PositiveIntegerField(
        _("quota: SMS parts per month"),
        null=True,
        blank=True,
        help_text=_("SMS parts this portal may send per calendar month (USAGE_TIME_ZONE). Empty means no limit."),
    )
    quota_recipient_per_hour = models.PositiveIntegerField(
        _("quota: messages per number per hour"),
        null=True,
        blank=True,
        help_text=_("Messages to one phone number within any 60 minutes. Empty means no limit."),
    )
    quota_warning_percent = models.PositiveSmallIntegerField(
        _("quota: warning threshold, %"),
        default=80,
        help_text=_('The portal is shown under "Needs attention" once this share of the monthly limit is used.'),
    )
    state = models.CharField(
        _("state"), max_length=16, choices=InstallationState.choices, default=InstallationState.ACTIVE, db_index=True
    )
    last_error = models.TextField(_("last error"), blank=True)
    # The portal answered messageservice.sender.update as an unknown method (portals before April 2026,
    # on-premise): provider changes go as sender.delete + sender.add. Learnt again at a reinstall.
    lacks_sender_update = models.BooleanField(
        _("lacks sender.update"),
        default=False,
        help_text=_("The portal does not know messageservice.sender.update: changes are pushed as delete + add."),
    )
    # Application events confirmed bound with event.bind (comma-separated); beat binds what is missing.
    bound_events = models.CharField(_("bound events"), max_length=200, blank=True)
    events_bind_attempted_at = models.DateTimeField(_("events last bound"), null=True, blank=True)
    installed_at = models.DateTimeField(_("installed"), null=True, blank=True)
    uninstalled_at = models.DateTimeField(_("uninstalled"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = InstallationQuerySet.as_manager()

    SECRET_INDEXES = {"handler_secret": "handler_secret_index", "callback_secret": "callback_secret_index"}

    class Meta:
        verbose_name = _("installation")
        verbose_name_plural = _("installations (portals)")
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["application", "member_id"], name="providers_one_installation_per_portal"),
        ]

    def __str__(self):
        return self.domain

    def save(self, *args, **kwargs):
        """A save that names a URL secret in ``update_fields`` writes its keyed hash too."""
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            indexes = {index for source, index in self.SECRET_INDEXES.items() if source in update_fields}
            kwargs["update_fields"] = [*update_fields, *(indexes - set(update_fields))]
        super().save(*args, **kwargs)

    def _application_token_refused(self):
        raise AttributeError(
            "Installation.application_token is stored as a keyed hash only: compare with application_token_matches()."
        )

    def _application_token_set(self, token: str):
        self.application_token_hash = keyed_hash(token or "", purpose=APPLICATION_TOKEN_PURPOSE)

    # Write-only: Installation(application_token=...), installation.application_token = ... store the hash.
    application_token = property(_application_token_refused, _application_token_set)

    def application_token_matches(self, token: str) -> bool:
        """Whether ``token`` is the application token stored at install (constant time); never for an empty one."""
        return keyed_hash_matches(self.application_token_hash, token or "", purpose=APPLICATION_TOKEN_PURPOSE)

    @property
    def has_application_token(self) -> bool:
        return bool(self.application_token_hash)

    @property
    def is_active(self) -> bool:
        return self.state == InstallationState.ACTIVE

    @property
    def bound_event_names(self) -> set[str]:
        return {event for event in self.bound_events.split(",") if event}

    def mark_needs_reinstall(self, error: str):
        self.state = InstallationState.NEEDS_REINSTALL
        self.last_error = error
        self.save(update_fields=["state", "last_error", "updated_at"])

    def mark_removed(self, when):
        self.state = InstallationState.REMOVED
        self.uninstalled_at = when
        self.access_token = ""
        self.refresh_token = ""
        self.save(update_fields=["state", "uninstalled_at", "access_token", "refresh_token", "updated_at"])


class Provider(models.Model):
    """An SMS provider as Bitrix24 sees it (messageservice.sender.add), sending with one i-dgtl sender name."""

    code = models.CharField(
        _("code"),
        max_length=128,
        unique=True,
        help_text=_("Letters a-z, A-Z, digits, dot, hyphen and underscore (Bitrix24 CODE)."),
    )
    type = models.CharField(_("type"), max_length=16, default="SMS", editable=False)
    name = models.CharField(_("name"), max_length=500)
    name_translations = models.JSONField(
        _("name per language"), default=dict, blank=True, help_text=_('Optional, e.g. {"ru": "…", "en": "…"}.')
    )
    description = models.CharField(_("description"), max_length=1000, blank=True)
    description_translations = models.JSONField(_("description per language"), default=dict, blank=True)
    sender_name = models.CharField(_("i-dgtl sender name"), max_length=11)
    sender_name_application = models.ForeignKey(
        "sendernames.SenderNameApplication",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="providers",
        verbose_name=_("sender-name application"),
        help_text=_("Empty for a name registered outside b24sms."),
    )
    installations = models.ManyToManyField(
        Installation, through="ProviderRegistration", related_name="providers", blank=True
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        ordering = ["code"]
        # Actions beyond add/change/delete (b24sms/permissions.py); stored as plain names, like Django's own.
        permissions = [
            ("register_provider", "Can register providers on portals, push changes to them and remove them there"),
            ("check_provider", "Can check providers against the portals (sender.list)"),
            ("send_test_sms", "Can send a test SMS through a provider"),
        ]

    def __str__(self):
        return self.code


class RegistrationState(models.TextChoices):
    PENDING = "pending", _("Pending")
    REGISTERED = "registered", _("Registered")
    FAILED = "failed", _("Failed")
    REMOVING = "removing", _("Being removed")
    REMOVED = "removed", _("Removed")


class RepairReason(models.TextChoices):
    """Why b24sms re-added a provider that Bitrix24 had lost on a portal."""

    APP_UPDATE = "app_update", _("Application updated (ONAPPUPDATE)")
    REINSTALL = "reinstall", _("Application reinstalled")
    DRIFT = "drift", _("Missing on the portal (drift repair)")


class ProviderRegistration(models.Model):
    """A provider registered on one installation (portal)."""

    provider = models.ForeignKey(
        Provider, on_delete=models.CASCADE, related_name="registrations", verbose_name=_("provider")
    )
    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="registrations", verbose_name=_("installation")
    )
    state = models.CharField(
        _("state"), max_length=16, choices=RegistrationState.choices, default=RegistrationState.PENDING, db_index=True
    )
    last_error = models.TextField(_("last error"), blank=True)
    registered_at = models.DateTimeField(_("registered"), null=True, blank=True)
    checked_at = models.DateTimeField(_("checked"), null=True, blank=True)
    # Set when a sender.add re-created the provider after Bitrix24 had lost it (not for a first registration).
    repaired_at = models.DateTimeField(_("repaired"), null=True, blank=True)
    repair_reason = models.CharField(_("repair reason"), max_length=16, choices=RepairReason.choices, blank=True)
    repair_count = models.PositiveIntegerField(_("repairs"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("registration")
        verbose_name_plural = _("registrations")
        constraints = [
            models.UniqueConstraint(fields=["provider", "installation"], name="providers_one_registration_per_portal"),
        ]

    def __str__(self):
        return f"{self.provider} @ {self.installation}"


class MessageState(models.TextChoices):
    """Our pipeline state of an SMS. Final: delivered, undelivered, failed."""

    RECEIVED = "received", _("Received")  # stored from the handler, waiting to be sent
    SENDING = "sending", _("Sending")  # handed to i-dgtl; if the answer was lost the outcome is unknown
    SENT = "sent", _("Sent")  # i-dgtl accepted it (has a message UUID)
    DELIVERED = "delivered", _("Delivered")
    UNDELIVERED = "undelivered", _("Undelivered")
    FAILED = "failed", _("Failed")


MESSAGE_FINAL_STATES = {MessageState.DELIVERED, MessageState.UNDELIVERED, MessageState.FAILED}


def state_label(value: str) -> str:
    """The label of one of our states; an unknown value as it is."""
    return str(MessageState(value).label) if value in MessageState.values else value


def idgtl_status_label(value: str) -> str:
    """The label of a message status as i-dgtl sends it (delivered, undelivered, ...); an unknown one as it is."""
    return str(IdgtlMessageStatus(value).label) if value in IdgtlMessageStatus.values else value


def bitrix24_status_label(value: str) -> str:
    """The label of a status as Bitrix24 is told it (queued, sent, delivered, ...); an unknown one as it is."""
    return str(Bitrix24Status(value).label) if value in Bitrix24Status.values else value


# Retention's queue (providers/services/retention.py): final messages whose text and numbers are still there.
# The same Q is the partial index's condition and the job's filter, so PostgreSQL sees that the index applies.
MESSAGE_RETENTION_PENDING = Q(anonymised_at__isnull=True, state__in=sorted(MESSAGE_FINAL_STATES))
# When a final message starts to age: its final status, or its receipt for a row that has none.
MESSAGE_RETAINED_SINCE = Coalesce("final_at", "created_at")


class SmsEncoding(models.TextChoices):
    GSM7 = sms_parts.GSM7, "GSM-7"
    UCS2 = sms_parts.UCS2, "UCS-2"


class Message(models.Model):
    """One SMS Bitrix24 posted to our HANDLER. Stored exactly once per (installation, message_id)."""

    # No index of its own: the unique (installation, message_id) constraint serves installation lookups. Every
    # index here is written by each HANDLER call, whose throughput is measured (bench/handler_intake.py).
    installation = models.ForeignKey(
        Installation, on_delete=models.PROTECT, related_name="messages", verbose_name=_("portal"), db_index=False
    )
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, related_name="messages", verbose_name=_("provider")
    )
    message_id = models.CharField(_("Bitrix24 message_id"), max_length=128)
    module_id = models.CharField(
        _("origin"), max_length=32, help_text=_("crm (CRM card) or bizproc (workflow or robot).")
    )
    bindings = models.JSONField(_("CRM bindings"), default=list, blank=True)
    workflow_id = models.CharField(_("workflow id"), max_length=64, blank=True)
    document_id = models.JSONField(_("document id"), default=list, blank=True)
    document_type = models.JSONField(_("document type"), default=list, blank=True)
    author_user_id = models.CharField(_("author user id"), max_length=32, blank=True)
    message_to = models.CharField(_("recipient as entered"), max_length=64)
    destination = models.CharField(_("destination"), max_length=20, blank=True)  # searched exactly: index in Meta
    text = models.TextField(_("text"))
    # What the text costs (providers/sms_parts.py): computed once, at intake, and kept (retention keeps them too).
    encoding = models.CharField(_("encoding"), max_length=8, choices=SmsEncoding.choices, blank=True)
    parts = models.PositiveSmallIntegerField(_("SMS parts"), default=0)
    sender_name = models.CharField(_("sender name"), max_length=11)
    bitrix_sent_at = models.DateTimeField(_("sent by Bitrix24 at"), null=True, blank=True)

    state = models.CharField(
        _("state"), max_length=16, choices=MessageState.choices, default=MessageState.RECEIVED
    )  # (state, created_at) index
    idgtl_message_uuid = models.CharField(_("i-dgtl message UUID"), max_length=64, blank=True)  # index in Meta
    idgtl_status = models.CharField(_("i-dgtl status"), max_length=32, blank=True)
    idgtl_status_at = models.DateTimeField(_("i-dgtl status time"), null=True, blank=True)
    error_code = models.IntegerField(_("error code"), null=True, blank=True)
    error_message = models.TextField(_("error"), blank=True)
    send_attempts = models.PositiveIntegerField(_("send attempts"), default=0)
    sending_started_at = models.DateTimeField(_("sending started"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    final_at = models.DateTimeField(_("final status at"), null=True, blank=True)
    next_check_at = models.DateTimeField(_("next status check"), null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    # Set by retention (MESSAGES_RETENTION_DAYS) when the text and phone numbers were removed.
    anonymised_at = models.DateTimeField(_("anonymised"), null=True, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["installation", "message_id"], name="providers_message_once_per_portal"),
        ]
        indexes = [
            models.Index(fields=["state", "created_at"], name="providers_message_state_idx"),
            models.Index(fields=["idgtl_message_uuid"], name="providers_message_uuid_idx"),  # no LIKE twin
            # The per-recipient quota: messages to one number of a portal claimed within the last hour.
            # Partial: a message the HANDLER inserts (not claimed yet) is not in it.
            models.Index(
                fields=["installation", "destination", "sending_started_at"],
                name="providers_msg_recipient_idx",
                condition=models.Q(sending_started_at__isnull=False),
            ),
            # The admin's search by number (an exact match). Partial: the HANDLER inserts messages without a
            # destination (the send step writes it), so its inserts do not write this index.
            models.Index(
                fields=["destination"], name="providers_msg_destination_idx", condition=~models.Q(destination="")
            ),
            # Retention's queue, oldest first. Partial: a message the HANDLER inserts (received) is not in it.
            models.Index(
                MESSAGE_RETAINED_SINCE, "id", condition=MESSAGE_RETENTION_PENDING, name="providers_msg_retention_idx"
            ),
        ]

    def __str__(self):
        return self.message_id

    def save(self, *args, **kwargs):
        if not self.parts:  # the HANDLER sets them; a message stored any other way gets them here
            self.sms_parts_set()
        super().save(*args, **kwargs)

    @property
    def is_final(self) -> bool:
        return self.state in MESSAGE_FINAL_STATES

    @property
    def is_anonymised(self) -> bool:
        return self.anonymised_at is not None

    def sms_parts_set(self) -> None:
        counted = sms_parts.sms_parts(self.text)
        self.encoding, self.parts = counted.encoding, counted.parts

    @staticmethod
    def reconcile_due_at(*, sent_at, now):
        """When a sent message still without a final status is next looked up at i-dgtl.

        MESSAGES_RECONCILE_SCHEDULE (2, 5, 15, 60 minutes after it was sent by default), then every
        MESSAGES_RECONCILE_INTERVAL: the first steps catch a lost callback within minutes, the
        later ones cost little for messages that stay undelivered for hours.
        """
        for seconds in settings.MESSAGES_RECONCILE_SCHEDULE:
            due = sent_at + timedelta(seconds=seconds)
            if due > now:
                return due
        return now + timedelta(seconds=settings.MESSAGES_RECONCILE_INTERVAL)


class MessageStatusChange(models.Model):
    """Timeline: every change of a message's state, and what caused it."""

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="status_changes", verbose_name=_("message")
    )
    previous_state = models.CharField(_("previous state"), max_length=16, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=MessageState.choices)
    idgtl_status = models.CharField(_("i-dgtl status"), max_length=32, blank=True)
    source = models.CharField(_("source"), max_length=32, help_text=_("handler, send, callback, reconciler, …"))
    detail = models.TextField(_("detail"), blank=True)
    created_at = models.DateTimeField(_("time"), auto_now_add=True)

    class Meta:
        verbose_name = _("status change")
        verbose_name_plural = _("timeline")
        ordering = ["created_at", "id"]

    def __str__(self):
        return f"{state_label(self.previous_state) or '—'} → {state_label(self.state)}"


class StatusReportState(models.TextChoices):
    PENDING = "pending", _("Waiting to be reported")
    ACCEPTED = "accepted", _("Accepted by Bitrix24")
    REJECTED = "rejected", _("Rejected by Bitrix24")  # permanent error, recorded
    SKIPPED = "skipped", _("Skipped")  # superseded: a later status was already reported


class StatusReport(models.Model):
    """One messageservice.message.status.update owed to Bitrix24, reported in order per message."""

    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="status_reports", verbose_name=_("message")
    )
    status = models.CharField(_("Bitrix24 status"), max_length=16)  # queued, sent, delivered, undelivered, failed
    state = models.CharField(
        _("state"), max_length=16, choices=StatusReportState.choices, default=StatusReportState.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    reported_at = models.DateTimeField(_("reported"), null=True, blank=True)

    class Meta:
        verbose_name = _("status report")
        verbose_name_plural = _("status reports to Bitrix24")
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "status"], name="providers_report_status_once"),
        ]

    def __str__(self):
        return f"{bitrix24_status_label(self.status)}: {self.get_state_display()}"


class UnmatchedCallbackEventQuerySet(models.QuerySet):
    def expired(self, now):
        """Events kept longer than a message lives: their message can no longer be sent (nor matched)."""
        return self.filter(received_at__lt=now - UnmatchedCallbackEvent.lifetime())


class UnmatchedCallbackEvent(models.Model):
    """An i-dgtl status event for a message uuid not recorded yet: the callback beat the send's answer.

    Kept (acknowledged to i-dgtl only once stored) until the transaction that records the uuid applies
    it and deletes it (services/delivery.py), or until it is older than a message lives; beat's sweep
    then drops it, counting it in /metrics. One row per (portal, uuid, status, status time).
    """

    RAW_EVENT_MAX_CHARS = 2000

    installation = models.ForeignKey(
        Installation, on_delete=models.CASCADE, related_name="unmatched_callback_events", verbose_name=_("portal")
    )
    # Looked up by (installation, message_uuid): the unique constraint's index serves it.
    message_uuid = models.CharField(_("i-dgtl message UUID"), max_length=64)
    status = models.CharField(_("i-dgtl status"), max_length=32)
    status_time = models.DateTimeField(_("i-dgtl status time"), null=True, blank=True)
    error_code = models.IntegerField(_("error code"), null=True, blank=True)
    raw_event = models.TextField(
        _("event as received"), blank=True, help_text=_("The event's JSON, cut at 2000 characters.")
    )
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)

    objects = UnmatchedCallbackEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("unmatched callback event")
        verbose_name_plural = _("unmatched callback events")
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["installation", "message_uuid", "status", "status_time"], name="providers_unmatched_event_once"
            ),
        ]

    def __str__(self):
        return f"{self.message_uuid}: {idgtl_status_label(self.status)}"

    @staticmethod
    def lifetime() -> timedelta:
        """How long an event waits for its uuid: the message lifetime at i-dgtl and its margin."""
        return timedelta(hours=settings.MESSAGES_LIFETIME_HOURS, seconds=settings.MESSAGES_LIFETIME_MARGIN)

    @property
    def expires_at(self):
        return self.received_at + self.lifetime()

    def is_expired(self, now) -> bool:
        return self.expires_at <= now

    @property
    def dedupe_key(self) -> tuple:
        return self.message_uuid, self.status, self.status_time

    @classmethod
    def raw_event_text(cls, item) -> str:
        """The event as JSON text, ASCII only (a NUL or a lone surrogate stays an escape), cut to the column."""
        try:
            text = json.dumps(item, ensure_ascii=True, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError):
            return ""
        return text if len(text) <= cls.RAW_EVENT_MAX_CHARS else text[: cls.RAW_EVENT_MAX_CHARS - 1] + "\u2026"


# --- Usage and billing (issue 9: usage per portal, tariffs, monthly statements) ---------------------
USAGE_STATES = (
    MessageState.SENDING,
    MessageState.SENT,
    MessageState.DELIVERED,
    MessageState.UNDELIVERED,
    MessageState.FAILED,
)  # every state but received (waiting): see UsageDay


class UsageDay(models.Model):
    """Usage rollup: how many messages (and SMS parts) of a portal, provider and sender name, created on
    ``day`` (in USAGE_TIME_ZONE, Moscow by default), are now in ``state``.

    Kept by ``providers.services.usage`` in the transaction of every state change
    (``timeline.messages_change_state``): the previous state's row loses the message, the new state's
    row gains it, so a day shows where its messages are now, and its rows add up to the messages of
    that day that have left ``received``. Messages still waiting (received) are not counted here: the
    HANDLER's one statement stays free of a counter row every call of a portal would queue on.
    """

    installation = models.ForeignKey(
        Installation, on_delete=models.PROTECT, related_name="usage_days", verbose_name=_("portal"), db_index=False
    )  # the unique constraint's index leads with it
    day = models.DateField(_("day"))
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, related_name="usage_days", verbose_name=_("provider")
    )
    sender_name = models.CharField(_("sender name"), max_length=11)
    state = models.CharField(_("state"), max_length=16, choices=MessageState.choices)
    messages = models.BigIntegerField(_("messages"), default=0)
    parts = models.BigIntegerField(_("SMS parts"), default=0)

    class Meta:
        verbose_name = _("usage")
        verbose_name_plural = _("usage")
        ordering = ["-day", "installation", "provider", "sender_name", "state"]
        constraints = [
            models.UniqueConstraint(
                fields=["installation", "day", "provider", "sender_name", "state"], name="providers_usage_once_per_key"
            ),
        ]
        indexes = [models.Index(fields=["day"], name="providers_usage_day_idx")]  # every portal's usage by dates

    def __str__(self):
        return f"{self.installation_id} {self.day} {self.state}: {self.messages}"


def default_billable_states() -> list[str]:
    """Every message i-dgtl accepted: sent (no final status yet), delivered, undelivered."""
    return [MessageState.SENT.value, MessageState.DELIVERED.value, MessageState.UNDELIVERED.value]


class Tariff(models.Model):
    """A price per SMS part from a day on: the default tariff (no portal) or a portal's own.

    For each day, a portal's own tariff in force that day wins over the default one. Tariffs of the same
    portal (or default ones) never overlap (``providers.services.tariffs.tariff_clean``).
    """

    installation = models.ForeignKey(
        Installation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="tariffs",
        verbose_name=_("portal"),
        help_text=_("Empty: the default tariff, for every portal without a tariff of its own on that day."),
    )
    price_per_part = models.DecimalField(_("price per SMS part, RUB"), max_digits=12, decimal_places=4)
    billable_states = models.JSONField(
        _("billable states"),
        default=default_billable_states,
        help_text=_(
            "Messages in these states are billed. Default: every message i-dgtl accepted (sent, delivered, "
            "undelivered)."
        ),
    )
    valid_from = models.DateField(_("valid from"))
    valid_until = models.DateField(
        _("valid until"),
        null=True,
        blank=True,
        help_text=_("The last day it applies (included). Empty: until further notice."),
    )
    comment = models.CharField(_("comment"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("tariff")
        verbose_name_plural = _("tariffs")
        ordering = ["installation_id", "-valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(price_per_part__gte=0), name="providers_tariff_price_not_negative"),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gte=models.F("valid_from")),
                name="providers_tariff_period_ordered",
            ),
            models.UniqueConstraint(
                fields=["installation", "valid_from"], name="providers_tariff_one_start_per_portal"
            ),
        ]

    def __str__(self):
        scope = self.installation.domain if self.installation_id else _("default")
        return f"{scope}: {self.price_per_part} RUB ({self.valid_from})"

    def covers(self, day) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)
