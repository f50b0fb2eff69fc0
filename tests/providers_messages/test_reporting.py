"""Reporting statuses to Bitrix24: batching, order per message, permanent errors, uninstalled portals."""

from datetime import timedelta

import pytest
from django.utils import timezone

from bitrix24.client import (
    BatchResult,
    Bitrix24MethodError,
    Bitrix24OperationTimeLimit,
    Bitrix24TransientError,
    InstallationInactive,
)
from providers.models import InstallationState, StatusReport, StatusReportState
from providers.services.reporting import reports_schedule_due, reports_send_pending
from tests.providers_messages.conftest import make_message


class RecordingBitrix24:
    """Bitrix24Client stand-in at its boundary: records batch calls, answers what the test queued."""

    def __init__(self):
        self.batches: list[dict] = []
        self.answers: list = []  # exceptions to raise, or callables(commands) -> BatchResult
        self.inactive_for: set[int] = set()

    def __call__(self, installation, **kwargs):
        self.installation = installation
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def batch(self, commands, *, halt=False):
        assert len(commands) <= 50
        if not self.installation.is_active:
            raise InstallationInactive("INSTALLATION_INACTIVE", "removed")
        self.batches.append(commands)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(commands)
        return BatchResult(results=dict.fromkeys(commands, True))


@pytest.fixture
def bitrix24_api(monkeypatch):
    fake = RecordingBitrix24()
    monkeypatch.setattr("providers.services.reporting.portal_client", fake)
    return fake


def report(message, status, **fields):
    return StatusReport.objects.create(message=message, status=status, **fields)


def sent_statuses(fake):
    return [(params["MESSAGE_ID"], params["STATUS"]) for batch in fake.batches for _m, params in batch.values()]


def test_reports_go_in_batches_of_at_most_50(installation, provider, bitrix24_api):
    messages = [make_message(installation, provider, n) for n in range(120)]
    for message in messages:
        report(message, "sent")
    assert reports_send_pending(installation_id=installation.pk) == 120
    assert [len(batch) for batch in bitrix24_api.batches] == [50, 50, 20]
    method, params = next(iter(bitrix24_api.batches[0].values()))
    assert method == "messageservice.message.status.update"
    assert params == {"CODE": "provider1", "MESSAGE_ID": messages[0].message_id, "STATUS": "sent"}
    assert set(StatusReport.objects.values_list("state", flat=True)) == {StatusReportState.ACCEPTED}
    assert not StatusReport.objects.filter(reported_at__isnull=True).exists()


def test_only_the_highest_pending_status_is_sent_and_lower_ones_are_skipped(installation, provider, bitrix24_api):
    message = make_message(installation, provider, 1)
    sent, delivered = report(message, "sent"), report(message, "delivered")
    reports_send_pending(installation_id=installation.pk)
    assert sent_statuses(bitrix24_api) == [(message.message_id, "delivered")]
    sent.refresh_from_db(), delivered.refresh_from_db()
    assert (sent.state, delivered.state) == (StatusReportState.SKIPPED, StatusReportState.ACCEPTED)


def test_a_lower_status_is_never_reported_after_a_higher_one(installation, provider, bitrix24_api):
    message = make_message(installation, provider, 1)
    report(message, "delivered", state=StatusReportState.ACCEPTED, reported_at=timezone.now())
    late = report(message, "sent")
    reports_send_pending(installation_id=installation.pk)
    assert bitrix24_api.batches == []
    late.refresh_from_db()
    assert late.state == StatusReportState.SKIPPED


def test_a_postponed_lower_status_is_skipped_when_a_higher_one_is_due(installation, provider, bitrix24_api):
    message = make_message(installation, provider, 1)
    waiting = report(message, "sent", next_attempt_at=timezone.now() + timedelta(minutes=5), attempts=1)
    report(message, "failed")
    reports_send_pending(installation_id=installation.pk)
    assert sent_statuses(bitrix24_api) == [(message.message_id, "failed")]
    waiting.refresh_from_db()
    assert waiting.state == StatusReportState.SKIPPED


def test_permanent_error_is_recorded_as_rejected_and_the_rest_accepted(installation, provider, bitrix24_api):
    good, gone = make_message(installation, provider, 1), make_message(installation, provider, 2)
    good_report, gone_report = report(good, "sent"), report(gone, "sent")

    def answer(commands):
        return BatchResult(
            results={f"r{good_report.pk}": True},
            errors={f"r{gone_report.pk}": Bitrix24MethodError("ERROR_MESSAGE_NOT_FOUND", "Message not found!")},
        )

    bitrix24_api.answers.append(answer)
    reports_send_pending(installation_id=installation.pk)
    good_report.refresh_from_db(), gone_report.refresh_from_db()
    assert good_report.state == StatusReportState.ACCEPTED
    assert gone_report.state == StatusReportState.REJECTED
    assert "ERROR_MESSAGE_NOT_FOUND" in gone_report.last_error
    assert len(bitrix24_api.batches) == 1  # a rejected report is not retried


def test_transient_failure_is_retried_with_backoff_until_accepted(settings, installation, provider, bitrix24_api):
    # A backoff far longer than the test: the test settings' 0.2 s ran out between two calls on a loaded machine.
    settings.MESSAGES_REPORT_RETRY_BACKOFF = 60
    item = report(make_message(installation, provider, 1), "delivered")
    bitrix24_api.answers.append(Bitrix24TransientError("QUERY_LIMIT_EXCEEDED", "Too many requests", http_status=503))
    reports_send_pending(installation_id=installation.pk)
    item.refresh_from_db()
    assert item.state == StatusReportState.PENDING and item.attempts == 1
    assert "QUERY_LIMIT_EXCEEDED" in item.last_error and item.next_attempt_at > timezone.now()
    reports_send_pending(installation_id=installation.pk)
    assert len(bitrix24_api.batches) == 1  # not before its backoff
    StatusReport.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    reports_send_pending(installation_id=installation.pk)
    item.refresh_from_db()
    assert item.state == StatusReportState.ACCEPTED and item.attempts == 2


def test_retries_are_bounded(settings, installation, provider, bitrix24_api):
    settings.MESSAGES_REPORT_MAX_ATTEMPTS = 2
    item = report(make_message(installation, provider, 1), "delivered")
    for _attempt in range(2):
        bitrix24_api.answers.append(Bitrix24TransientError("INTERNAL_SERVER_ERROR", http_status=500))
        StatusReport.objects.update(next_attempt_at=None)
        reports_send_pending(installation_id=installation.pk)
    item.refresh_from_db()
    assert item.state == StatusReportState.REJECTED and "INTERNAL_SERVER_ERROR" in item.last_error


def test_operation_time_limit_waits_until_reset(installation, provider, bitrix24_api):
    reset_at = timezone.now() + timedelta(minutes=7)
    item = report(make_message(installation, provider, 1), "delivered")
    bitrix24_api.answers.append(Bitrix24OperationTimeLimit("OPERATION_TIME_LIMIT", reset_at=reset_at))
    reports_send_pending(installation_id=installation.pk)
    item.refresh_from_db()
    assert item.next_attempt_at == reset_at


def test_uninstalled_portal_is_not_called_and_its_reports_are_closed(installation, provider, bitrix24_api):
    item = report(make_message(installation, provider, 1), "delivered")
    installation.state = InstallationState.REMOVED
    installation.save()
    reports_send_pending(installation_id=installation.pk)
    assert bitrix24_api.batches == []
    item.refresh_from_db()
    assert item.state == StatusReportState.REJECTED and "uninstalled" in item.last_error


def test_portal_needing_reinstall_keeps_its_reports_pending(installation, provider, bitrix24_api):
    item = report(make_message(installation, provider, 1), "delivered")
    installation.state = InstallationState.NEEDS_REINSTALL
    installation.save()
    reports_send_pending(installation_id=installation.pk)
    item.refresh_from_db()
    assert item.state == StatusReportState.PENDING and "reinstall" in item.last_error


def test_beat_sweep_runs_every_installation_with_reports_due(installation, provider, bitrix24_api):
    report(make_message(installation, provider, 1), "sent")
    assert reports_schedule_due() == 1  # eager in unit tests: the run happens here
    assert StatusReport.objects.get().state == StatusReportState.ACCEPTED


def test_flow_from_handler_to_report(
    client, installation, provider, idgtl_api, bitrix24_api, django_capture_on_commit_callbacks
):
    """Unit-level wiring: handler -> send -> callback -> reports, with both remote APIs stubbed."""
    from tests.providers_messages.conftest import crm_fields, encode

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/b24/handler/{installation.handler_secret}/",
            data=encode(crm_fields()),
            content_type="application/x-www-form-urlencoded",
        )
    assert response.status_code == 200
    uuid = idgtl_api.sent and f"uuid-{idgtl_api.sent[0][0]['externalMessageId']}"
    assert uuid
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/idgtl/callback/{installation.callback_secret}/",
            content_type="application/json",
            data=[
                {
                    "message_uuid": uuid,
                    "channel_type": "SMS",
                    "callback_event": "delivered",
                    "status": "delivered",
                    "status_time": "2026-01-01T10:00:00Z",
                }
            ],
        )
    # Only the final status is reported: Bitrix24 marked the SMS sent itself when it called us.
    assert sent_statuses(bitrix24_api) == [("65575980fa531ac284c2ee68f81ebebd", "delivered")]


def test_a_run_that_finds_the_portal_busy_leaves_its_reports_to_the_lock_holder(installation, provider, bitrix24_api):
    """The lock holder's follow-up must be able to schedule a run for reports queued meanwhile."""
    from django.core.cache import cache

    from providers.services.reporting import LOCK_KEY, SCHEDULED_KEY

    item = report(make_message(installation, provider, 1), "sent")
    cache.set(LOCK_KEY.format(installation.pk), "someone-else", timeout=60)
    cache.set(SCHEDULED_KEY.format(installation.pk), 1, timeout=60)
    try:
        assert reports_send_pending(installation_id=installation.pk) == 0
        assert cache.get(SCHEDULED_KEY.format(installation.pk)) is None
    finally:
        cache.delete(LOCK_KEY.format(installation.pk))
    item.refresh_from_db()
    assert item.state == StatusReportState.PENDING


def test_reports_are_retried_for_longer_than_a_message_lives(settings):
    """A portal that is down for a day still gets every status it is owed when it comes back."""
    from b24sms.settings import base  # the production defaults (tests retry faster)
    from providers.services.reporting import _backoff

    settings.MESSAGES_REPORT_RETRY_BACKOFF = base.MESSAGES_REPORT_RETRY_BACKOFF
    settings.MESSAGES_REPORT_MAX_ATTEMPTS = base.MESSAGES_REPORT_MAX_ATTEMPTS
    tried_for = sum(_backoff(attempt) for attempt in range(1, settings.MESSAGES_REPORT_MAX_ATTEMPTS))
    assert tried_for >= settings.MESSAGES_LIFETIME_HOURS * 3600 + settings.MESSAGES_LIFETIME_MARGIN


def test_a_worker_killed_while_reporting_blocks_its_portal_for_one_lease_only(
    settings, installation, provider, bitrix24_api
):
    """The lock is a lease renewed per batch, not held for a task's whole time limit."""
    import time

    from django.core.cache import cache

    from providers.services.reporting import LOCK_KEY

    settings.MESSAGES_REPORT_LOCK_LEASE = 1
    item = report(make_message(installation, provider, 1), "delivered")
    # What a worker killed mid-report leaves behind: its lock, taken for one lease.
    assert cache.add(LOCK_KEY.format(installation.pk), "dead-worker", timeout=settings.MESSAGES_REPORT_LOCK_LEASE)
    assert reports_send_pending(installation_id=installation.pk) == 0

    time.sleep(2.1)  # the database cache keeps whole seconds
    assert reports_send_pending(installation_id=installation.pk) == 1
    item.refresh_from_db()
    assert item.state == StatusReportState.ACCEPTED


def test_a_long_run_renews_its_lease_before_every_batch(settings, installation, provider, bitrix24_api, monkeypatch):
    from providers.services import reporting

    renewals = []
    monkeypatch.setattr(reporting, "_lease_renew", lambda key, token: renewals.append(key))
    for n in range(1, 121):
        report(make_message(installation, provider, n), "delivered")

    assert reports_send_pending(installation_id=installation.pk) == 120

    assert len(bitrix24_api.batches) == 3 and len(renewals) >= 3
