"""The audit trail: who did what and when, for every operator action in the admin and the API.

django-auditlog records creating, changing and deleting the tracked models (``registry.py``: which
models, which fields, secrets masked); the actions that are not plain edits (submit to i-dgtl, register
on portals, send a test SMS, ...) are written by the admin and the API with ``services.action_record``.
Both land in one table (``models.AuditLogEntry``, auditlog's swappable log entry model with these
actions added), shown read-only in the admin to superusers and to whom an administrator grants
``audit.view_auditlogentry``.
"""
