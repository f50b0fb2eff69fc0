"""One audit table: auditlog's log entry (created, changed, deleted) with the operator actions added."""

from auditlog.models import AbstractLogEntry
from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditLogEntry(AbstractLogEntry):
    """Who did what to which object, when, from which address (settings.AUDITLOG_LOGENTRY_MODEL).

    ``actor`` empty: done by b24sms itself (a task, beat, Bitrix24 installing the application), not by
    an operator. ``changes`` holds the changed fields of an edit, a secret only as ``••••`` (that it
    changed, never its value); ``changes_text`` the outcome of an action as the operator was told it;
    ``additional_data`` the action's details (portals, message id, status set)."""

    class Action(AbstractLogEntry.Action):
        # auditlog's own: CREATE = 0, UPDATE = 1, DELETE = 2, ACCESS = 3 (not used). Ours from 10 on.
        SUBMIT = 10
        REFRESH_STATUS = 11
        SET_STATUS = 12
        ADD_OPERATOR = 13
        RECHECK_READABILITY = 14
        REGISTER = 20
        PUSH_UPDATE = 21
        REMOVE = 22
        CHECK = 23
        TEST_SMS = 24
        CHECK_KEYS = 30
        READ_BALANCE = 31

        choices = (
            (AbstractLogEntry.Action.CREATE, _("created")),
            (AbstractLogEntry.Action.UPDATE, _("changed")),
            (AbstractLogEntry.Action.DELETE, _("deleted")),
            (AbstractLogEntry.Action.ACCESS, _("viewed")),
            (SUBMIT, _("submitted to i-dgtl")),
            (REFRESH_STATUS, _("asked i-dgtl for the status")),
            (SET_STATUS, _("set the status by hand")),
            (ADD_OPERATOR, _("filed with one more operator")),
            (RECHECK_READABILITY, _("checked status reading again")),
            (REGISTER, _("registered on portals")),
            (PUSH_UPDATE, _("pushed changes to portals")),
            (REMOVE, _("removed from portals")),
            (CHECK, _("checked against the portals")),
            (TEST_SMS, _("sent a test SMS")),
            (CHECK_KEYS, _("checked the keys with i-dgtl")),
            (READ_BALANCE, _("read the balance from i-dgtl")),
        )

    action = models.PositiveSmallIntegerField(_("action"), choices=Action.choices, db_index=True)

    class Meta(AbstractLogEntry.Meta):
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit trail")
        indexes = [models.Index(fields=["content_type", "object_id"], name="audit_entry_object_idx")]

    def __str__(self):
        return f"{self.get_action_display()}: {self.object_repr}"
