"""Business rules for sender-name applications: filing, submission, status sync."""

from sendernames.services.applications import SubmitRequest, application_create, application_submit, application_update
from sendernames.services.groups import BrandFiling, GroupFiling, group_add_brand, group_create
from sendernames.services.manual import ManualStatusResult, application_set_status
from sendernames.services.status import (
    RefreshResult,
    SyncReport,
    accounts_recheck_readability,
    application_refresh_status,
    applications_sync_open,
)
from sendernames.services.submission import (
    SubmitOutcome,
    SubmitResult,
    application_submit_perform,
    applications_resume_stalled,
)

__all__ = [
    "BrandFiling",
    "GroupFiling",
    "ManualStatusResult",
    "RefreshResult",
    "SubmitOutcome",
    "SubmitRequest",
    "SubmitResult",
    "SyncReport",
    "accounts_recheck_readability",
    "application_create",
    "application_refresh_status",
    "application_set_status",
    "application_submit",
    "application_submit_perform",
    "application_update",
    "applications_resume_stalled",
    "applications_sync_open",
    "group_add_brand",
    "group_create",
]
