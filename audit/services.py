"""Writing the operator actions that are not plain edits (those auditlog records by itself)."""

from audit.models import AuditLogEntry

Action = AuditLogEntry.Action


def action_record(*, instance, action: int, result: str = "", actor=None, **details) -> AuditLogEntry:
    """One entry: ``action`` (an ``Action``) done to ``instance``, what the operator was told (``result``)
    and the details (JSON-serialisable: portals, message ids, the status set). The actor and address
    are the request's (middleware.py) unless ``actor`` is given; outside a request, the entry has no actor."""
    return AuditLogEntry.objects.log_create(
        instance,
        force_log=True,
        action=action,
        changes_text=str(result)[:2000],
        actor=actor,
        additional_data={key: value for key, value in details.items() if value not in (None, "", [], {})} or None,
    )
