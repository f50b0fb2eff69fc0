"""Tasks: register, update, remove and check providers on installations; bind the application events;
beat's drift repair.

Thin: each takes ids, calls one service, and retries transient Bitrix24 errors with backoff.
Every service they call is idempotent, so a redelivered task (acks_late) is harmless.
"""

from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from bitrix24.client import Bitrix24TransientError
from common.taskqueue import broker_messages_lost_at
from providers.models import Installation
from providers.services import installations as installation_services
from providers.services import registration as registration_services

__all__ = [
    "register_provider",
    "update_provider_registration",
    "remove_provider_registration",
    "delete_sender",
    "bind_event_handlers",
    "bind_uninstall_handler",
    "bind_missing_events",
    "resume_stuck_registrations",
    "repair_provider_drift",
    "repair_installation_drift",
]

MAX_RETRIES = 5
RETRY_BASE_SECONDS = 10


def _countdown(task, exc) -> float:
    reset_at = getattr(exc, "reset_at", None)
    if isinstance(reset_at, datetime):
        return max(1.0, (reset_at - timezone.now()).total_seconds())
    return RETRY_BASE_SECONDS * (2**task.request.retries)


def _final(task) -> bool:
    return task.request.retries >= MAX_RETRIES


def _run_retrying(task, service, **kwargs):
    """Call a registration service; a transient Bitrix24 error retries the task (the last try records it)."""
    try:
        return service(**kwargs, final_attempt=_final(task))
    except Bitrix24TransientError as exc:
        raise task.retry(exc=exc, countdown=_countdown(task, exc)) from exc


@shared_task(bind=True, name="providers.tasks.register_provider", max_retries=MAX_RETRIES)
def register_provider(self, registration_id: int, repair_reason: str = ""):
    """sender.add; ``repair_reason`` when the portal lost the provider (app update, reinstall, drift)."""
    return _run_retrying(
        self,
        registration_services.registration_sync,
        registration_id=registration_id,
        first="add",
        repair_reason=repair_reason,
    )


@shared_task(bind=True, name="providers.tasks.update_provider_registration", max_retries=MAX_RETRIES)
def update_provider_registration(self, registration_id: int):
    return _run_retrying(self, registration_services.registration_sync, registration_id=registration_id, first="update")


@shared_task(bind=True, name="providers.tasks.remove_provider_registration", max_retries=MAX_RETRIES)
def remove_provider_registration(self, registration_id: int):
    return _run_retrying(self, registration_services.registration_remove, registration_id=registration_id)


@shared_task(bind=True, name="providers.tasks.delete_sender", max_retries=MAX_RETRIES)
def delete_sender(self, installation_id: int, code: str):
    """sender.delete for a provider that was deleted here."""
    try:
        registration_services.sender_delete(installation_id=installation_id, code=code)
    except Bitrix24TransientError as exc:
        if _final(self):
            raise
        raise self.retry(exc=exc, countdown=_countdown(self, exc)) from exc


def _bind_events(task, installation_id: int):
    installation = Installation.objects.filter(pk=installation_id).first()
    if installation is None or not installation.is_active:
        return "skipped"
    outcome = installation_services.installation_bind_events_recorded(
        installation=installation, final_attempt=_final(task)
    )
    if outcome == "retry":
        raise task.retry(countdown=_countdown(task, None))
    return outcome


@shared_task(bind=True, name="providers.tasks.bind_event_handlers", max_retries=MAX_RETRIES)
def bind_event_handlers(self, installation_id: int):
    """event.bind ONAPPUNINSTALL and ONAPPUPDATE: after a transient failure at install, after an
    application update, or for an installation that lacks them (beat)."""
    return _bind_events(self, installation_id)


@shared_task(bind=True, name="providers.tasks.bind_uninstall_handler", max_retries=MAX_RETRIES)
def bind_uninstall_handler(self, installation_id: int):
    """The former name of :func:`bind_event_handlers`, for tasks queued before it was renamed."""
    return _bind_events(self, installation_id)


@shared_task(name="providers.tasks.bind_missing_events")
def bind_missing_events():
    """Beat: installations without every application event bound get them bound (a task each)."""
    return installation_services.installations_bind_missing_events(
        retry_after=timedelta(seconds=settings.B24_EVENTS_BIND_RETRY_AFTER)
    )


@shared_task(name="providers.tasks.repair_provider_drift")
def repair_provider_drift(period: float = 60.0):
    """Beat (every ``period`` seconds): queue the drift repair of this run's share of installations."""
    return registration_services.installations_drift_due(
        interval=timedelta(seconds=settings.REGISTRATION_DRIFT_REPAIR_INTERVAL), period=timedelta(seconds=period)
    )


@shared_task(name="providers.tasks.repair_installation_drift")
def repair_installation_drift(installation_id: int):
    """Compare sender.list with our registrations on one portal; add back what Bitrix24 lost."""
    installation = Installation.objects.filter(pk=installation_id).first()
    if installation is None or not installation.is_active:
        return None
    return registration_services.installation_repair_drift(installation=installation).as_dict()


@shared_task(name="providers.tasks.resume_stuck_registrations")
def resume_stuck_registrations():
    """Beat: registrations whose task was never queued or was lost are asked for again.

    Normally after REGISTRATION_RESUME_AFTER, longer than a task's own retries, so a task waiting
    for its next try is not doubled. When the broker lost its messages (a Redis restarted empty),
    every retry it held is gone too: everything pending since before then is asked for at once.
    """
    older_than = timedelta(seconds=settings.REGISTRATION_RESUME_AFTER)
    lost_at = broker_messages_lost_at("registrations")
    if lost_at is not None:
        older_than = min(older_than, timezone.now() - lost_at)
    return registration_services.registrations_resume_stuck(older_than=older_than)
