"""Business rules for sender-name applications: filing, submission, status sync."""
from .applications import SubmitRequest, application_create, application_submit, application_update
from .status import RefreshResult, SyncReport, application_refresh_status, applications_sync_open
from .submission import SubmitOutcome, SubmitResult, application_submit_perform, applications_resume_stalled

__all__ = [
    "RefreshResult", "SubmitOutcome", "SubmitRequest", "SubmitResult", "SyncReport",
    "application_create", "application_refresh_status", "application_submit", "application_submit_perform",
    "application_update", "applications_resume_stalled", "applications_sync_open",
]
