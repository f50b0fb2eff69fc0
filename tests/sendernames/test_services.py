"""Services with the i-dgtl client replaced at its boundary (IdgtlClient)."""

import datetime as dt
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from idgtl.client import (
    IdgtlConfigurationError,
    IdgtlNotFound,
    IdgtlOutcomeUnknown,
    IdgtlTransientError,
    IdgtlValidationError,
)
from sendernames.models import ErrorKind, SenderNameApplication, SenderNameDocument, SubmissionState
from sendernames.services import (
    SubmitOutcome,
    application_create,
    application_refresh_status,
    application_submit,
    application_submit_perform,
    applications_resume_stalled,
    applications_sync_open,
)
from sendernames.services.status import sync_interval
from sendernames.tasks import sync_open_applications
from tests.sendernames.conftest import ZIP_BYTES, application_fields, pdf, png, remote_record


class StubClient:
    """Stands in for IdgtlClient: answers from queues, records calls."""

    def __init__(self, *, create=(), get=None, listing=None):
        self.create_answers = list(create)
        self.get_answers = get or {}
        self.listing = listing or []
        self.calls = []

    @staticmethod
    def _answer(value):
        if isinstance(value, Exception):
            raise value
        return value

    def create_sender_name(self, body, files):
        self.calls.append(("create", body, files))
        return self._answer(self.create_answers.pop(0))

    def get_sender_name(self, remote_id):
        self.calls.append(("get", remote_id))
        return self._answer(self.get_answers[remote_id])

    def list_sender_names(self, *, sender_name=None, status=None, brand=None, page=1, per_page=100):
        self.calls.append(("list", sender_name))
        items = [i for i in self.listing if i["senderName"].lower() == (sender_name or "").lower()]
        return {"total": len(items), "items": items}

    def count(self, kind):
        return sum(1 for c in self.calls if c[0] == kind)


@pytest.fixture
def stub(monkeypatch):
    holder = {"client": StubClient()}
    monkeypatch.setattr("sendernames.services.remote.client_for", lambda account: holder["client"])
    return holder


# --- create -----------------------------------------------------------------------------------
def test_create_stores_the_application_and_documents(make_application):
    application = make_application(common_type="PROMO", documents=[pdf("a.pdf"), png("b.png")])
    assert application.submission_state == SubmissionState.DRAFT
    assert (
        application.date_from.tzinfo is not None
        and timezone.localtime(application.date_from, dt.timezone(dt.timedelta(hours=3))).hour == 0
    )
    documents = list(application.documents.all())
    assert [(d.original_name, d.content_type, d.position) for d in documents] == [
        ("a.pdf", "application/pdf", 1),
        ("b.png", "image/png", 2),
    ]
    assert documents[0].file.read().startswith(b"%PDF")


def test_create_with_a_bad_file_stores_nothing(account, settings, tmp_path):
    bad = SimpleUploadedFile("contract.pdf", ZIP_BYTES)
    with pytest.raises(ValidationError) as exc_info:
        application_create(account=account, documents=[pdf(), bad], **application_fields(common_type="PROMO"))
    assert "contract.pdf" in exc_info.value.message_dict["documents"][0]
    assert not SenderNameApplication.objects.exists() and not SenderNameDocument.objects.exists()


def test_create_failing_midway_leaves_no_rows_and_no_files(account, settings, monkeypatch):
    from sendernames.services import applications

    original = applications.SenderNameDocument.save
    calls = {"n": 0}

    def failing_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(applications.SenderNameDocument, "save", failing_save)
    with pytest.raises(RuntimeError):
        application_create(account=account, documents=[pdf(), png()], **application_fields(common_type="PROMO"))
    assert not SenderNameApplication.objects.exists()
    media = settings.MEDIA_ROOT
    assert not any(p.is_file() for p in media.rglob("*")) if media.exists() else True


def test_create_refuses_a_duplicate(make_application):
    existing = make_application()
    with pytest.raises(ValidationError) as exc_info:
        make_application(sender_name=existing.sender_name.upper())
    assert f"#{existing.pk}" in exc_info.value.message_dict["sender_name"][0]


# --- submit request ------------------------------------------------------------------------------
def test_submit_queues_once_and_enqueues_on_commit(make_application, django_capture_on_commit_callbacks):
    application = make_application()
    with mock.patch("sendernames.tasks.submit_application.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            first = application_submit(application_id=application.pk)
            second = application_submit(application_id=application.pk)
    assert first.queued and not second.queued
    assert "Already queued" in second.message
    delay.assert_called_once_with(application.pk)
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.QUEUED


def test_submit_rechecks_the_start_date(make_application):
    application = make_application()
    SenderNameApplication.objects.filter(pk=application.pk).update(date_from=timezone.now() - dt.timedelta(days=1))
    with pytest.raises(ValidationError) as exc_info:
        application_submit(application_id=application.pk)
    assert "date_from" in exc_info.value.message_dict
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.DRAFT


def test_submit_without_a_key_is_a_configuration_problem(make_application, account):
    application = make_application()
    account.sender_names_key = ""
    account.save()
    with pytest.raises(ValidationError) as exc_info:
        application_submit(application_id=application.pk)
    assert "configuration problem" in exc_info.value.message_dict["account"][0]


# --- submit perform ---------------------------------------------------------------------------------
def queued(application):
    SenderNameApplication.objects.filter(pk=application.pk).update(submission_state=SubmissionState.QUEUED)
    return application


def test_perform_sends_body_and_files_and_records_the_answer(make_application, stub):
    application = queued(make_application(common_type="PROMO", documents=[pdf("a.pdf"), png("b.png")]))
    stub["client"] = StubClient(create=[remote_record(application, remote_id=77)])
    result = application_submit_perform(application_id=application.pk)
    assert result.outcome is SubmitOutcome.SUBMITTED
    _, body, files = stub["client"].calls[0]
    assert body["dateFrom"].endswith("T21:00:00Z") and body["counteragentInn"] == "7707083893"
    assert set(body) == {
        "channelType",
        "commonType",
        "brand",
        "dateFrom",
        "senderName",
        "counteragentName",
        "counteragentInn",
    }
    assert [(f[0], f[2]) for f in files] == [("a.pdf", "application/pdf"), ("b.png", "image/png")]
    application.refresh_from_db()
    assert (application.submission_state, application.remote_id, application.status, application.fee) == (
        SubmissionState.SUBMITTED,
        77,
        "PRE_REVIEW",
        2000,
    )
    assert application.next_status_check_at is not None
    assert [(h.previous_status, h.status, h.cause) for h in application.history.all()] == [
        ("", "PRE_REVIEW", "submission")
    ]


def test_perform_twice_sends_once(make_application, stub):
    application = queued(make_application())
    stub["client"] = StubClient(create=[remote_record(application)])
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SUBMITTED
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SKIPPED
    assert stub["client"].count("create") == 1


def test_perform_leaves_a_fresh_claim_of_another_worker_alone(make_application, stub):
    application = make_application()
    SenderNameApplication.objects.filter(pk=application.pk).update(submission_state=SubmissionState.SUBMITTING)
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SKIPPED
    assert stub["client"].calls == []


def test_perform_resumes_an_abandoned_claim_by_looking_up_first(make_application, stub):
    application = make_application()
    SenderNameApplication.objects.filter(pk=application.pk).update(
        submission_state=SubmissionState.SUBMITTING, updated_at=timezone.now() - dt.timedelta(hours=1)
    )
    stub["client"] = StubClient(listing=[remote_record(application, remote_id=5)])
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SUBMITTED
    assert stub["client"].count("create") == 0
    application.refresh_from_db()
    assert application.remote_id == 5


def test_outcome_unknown_is_looked_up_and_found(make_application, stub):
    application = queued(make_application())
    stub["client"] = StubClient(
        create=[IdgtlOutcomeUnknown("read timeout")],
        listing=[remote_record(application, remote_id=9, senderName="MYSHOP")],
    )
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SUBMITTED
    assert stub["client"].count("create") == 1
    application.refresh_from_db()
    assert application.remote_id == 9


def test_outcome_unknown_not_found_is_sent_again_after_the_lookup(make_application, stub):
    application = queued(make_application())
    other = remote_record(application, remote_id=3, counteragentInn="500100732259")  # someone else's record
    stub["client"] = StubClient(
        create=[IdgtlOutcomeUnknown("502"), remote_record(application, remote_id=10)], listing=[other]
    )
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SUBMITTED
    assert [c[0] for c in stub["client"].calls] == ["create", "list", "create"]
    application.refresh_from_db()
    assert application.remote_id == 10


def test_duplicate_after_an_unknown_outcome_is_adopted_when_it_is_ours(make_application, stub):
    application = queued(make_application())
    stub["client"] = StubClient(
        create=[
            IdgtlOutcomeUnknown("timeout"),
            IdgtlValidationError("Duplicates with existing name (id = 44)", http_status=422, code=4220),
        ],
        get={44: remote_record(application, remote_id=44)},
    )
    stub["client"].list_sender_names = lambda **kw: {"total": 0, "items": []}  # the list lags behind
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SUBMITTED
    application.refresh_from_db()
    assert application.remote_id == 44


def test_rejected_submission_stores_idgtl_message_as_is(make_application, stub):
    application = queued(make_application())
    stub["client"] = StubClient(
        create=[IdgtlValidationError("Duplicates with existing name (id = 1161)", http_status=422, code=4220)]
    )
    result = application_submit_perform(application_id=application.pk)
    assert result.outcome is SubmitOutcome.FAILED
    application.refresh_from_db()
    assert (
        application.submission_state,
        application.last_error_kind,
        application.last_error_code,
        application.last_error_message,
    ) == (SubmissionState.FAILED, ErrorKind.REJECTED, 4220, "Duplicates with existing name (id = 1161)")
    assert stub["client"].count("get") == 0  # a first attempt never adopts somebody's record


def test_bad_key_is_a_configuration_error(make_application, stub):
    application = queued(make_application())
    stub["client"] = StubClient(create=[IdgtlConfigurationError("Bad credentials", http_status=401, code=4012)])
    application_submit_perform(application_id=application.pk)
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.FAILED
    assert application.last_error_kind == ErrorKind.CONFIGURATION and application.last_error_code == 4012
    assert "configuration problem" in application.last_error_message
    assert "c2VuZGVy" not in application.last_error_message


def test_transient_error_requeues_then_gives_up_and_resubmission_looks_up(
    make_application, stub, django_capture_on_commit_callbacks
):
    application = queued(make_application())
    stub["client"] = StubClient(create=[IdgtlTransientError("503 Service Unavailable", http_status=503)])
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.RETRY
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.QUEUED and application.last_error_kind == ErrorKind.TRANSIENT
    stub["client"] = StubClient(create=[IdgtlTransientError("503")])
    assert application_submit_perform(application_id=application.pk, final_attempt=True).outcome is SubmitOutcome.FAILED
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.FAILED
    with mock.patch("sendernames.tasks.submit_application.delay"), django_capture_on_commit_callbacks(execute=True):
        assert application_submit(application_id=application.pk).queued
    stub["client"] = StubClient(create=[remote_record(application, remote_id=12)])
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SUBMITTED
    assert [c[0] for c in stub["client"].calls] == ["list", "create"]


def test_submit_task_runs_the_service(make_application, stub, django_capture_on_commit_callbacks):
    application = make_application()
    stub["client"] = StubClient(create=[remote_record(application, remote_id=31)])
    with django_capture_on_commit_callbacks(execute=True):
        application_submit(application_id=application.pk)
        application_submit(application_id=application.pk)
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.SUBMITTED and application.remote_id == 31
    assert stub["client"].count("create") == 1


def test_stalled_submissions_are_enqueued_again(make_application, django_capture_on_commit_callbacks):
    _fresh, stalled = queued(make_application(sender_name="Fresh")), queued(make_application(sender_name="Stale"))
    SenderNameApplication.objects.filter(pk=stalled.pk).update(updated_at=timezone.now() - dt.timedelta(hours=2))
    with (
        mock.patch("sendernames.tasks.submit_application.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert applications_resume_stalled() == [stalled.pk]
    delay.assert_called_once_with(stalled.pk)


# --- status ----------------------------------------------------------------------------------------
def submitted(application, *, remote_id, status="PRE_REVIEW", due=True, submitted_at=None):
    now = timezone.now()
    SenderNameApplication.objects.filter(pk=application.pk).update(
        submission_state=SubmissionState.SUBMITTED,
        remote_id=remote_id,
        status=status,
        submitted_at=submitted_at or now,
        next_status_check_at=now - dt.timedelta(seconds=1) if due else now + dt.timedelta(hours=1),
    )
    application.refresh_from_db()
    return application


def test_refresh_records_a_history_row_per_change(make_application, stub):
    application = submitted(make_application(), remote_id=7)
    stub["client"] = StubClient(
        get={7: remote_record(application, remote_id=7, status="REJECTED", comment="No documents")}
    )
    result = application_refresh_status(application_id=application.pk)
    assert result.changed and result.previous_status == "PRE_REVIEW"
    result = application_refresh_status(application_id=application.pk)
    assert not result.changed
    application.refresh_from_db()
    assert application.status == "REJECTED" and application.status_comment == "No documents"
    assert application.next_status_check_at is None
    assert [(h.previous_status, h.status, h.comment, h.cause) for h in application.history.all()] == [
        ("PRE_REVIEW", "REJECTED", "No documents", "manual_refresh")
    ]


def test_refresh_of_a_draft_is_refused(make_application):
    with pytest.raises(ValidationError, match="not been submitted"):
        application_refresh_status(application_id=make_application().pk)


def test_refresh_stores_errors_by_kind(make_application, stub):
    application = submitted(make_application(), remote_id=7)
    for error, kind in [
        (IdgtlConfigurationError("Access Denied", http_status=403, code=4030), ErrorKind.CONFIGURATION),
        (IdgtlNotFound("Not Found", http_status=404, code=4040), ErrorKind.NOT_FOUND),
        (IdgtlTransientError("timeout"), ErrorKind.TRANSIENT),
    ]:
        stub["client"] = StubClient(get={7: error})
        result = application_refresh_status(application_id=application.pk)
        assert result.error_kind == kind
        application.refresh_from_db()
        assert application.last_error_kind == kind and application.status == "PRE_REVIEW"


def test_sync_polls_due_open_applications_only(make_application, stub, django_assert_max_num_queries):
    due = [submitted(make_application(sender_name=f"Due{i}"), remote_id=i) for i in range(1, 6)]
    not_due = submitted(make_application(sender_name="Later"), remote_id=50, due=False)
    final = submitted(make_application(sender_name="Done"), remote_id=51, status="APPROVED")
    draft = make_application(sender_name="Draft")
    answers = {a.remote_id: remote_record(a, remote_id=a.remote_id, status="REVIEW") for a in due}
    answers[5]["status"] = "APPROVED"
    stub["client"] = StubClient(get=answers)
    with django_assert_max_num_queries(14):  # per batch and distinct outcome, not per application
        report = applications_sync_open()
    assert (report.checked, report.changed, report.errors) == (5, 5, 0)
    assert sorted(c[1] for c in stub["client"].calls) == [1, 2, 3, 4, 5]
    for application in due:
        application.refresh_from_db()
        assert application.history.get().cause == "periodic_sync"
    assert due[4].status == "APPROVED" and due[4].next_status_check_at is None
    assert due[0].status == "REVIEW" and due[0].next_status_check_at > timezone.now()
    assert not_due.history.count() == final.history.count() == draft.history.count() == 0


def test_sync_keeps_polling_unknown_status_and_warns_once(make_application, stub, caplog):
    application = submitted(make_application(), remote_id=8)
    stub["client"] = StubClient(get={8: remote_record(application, remote_id=8, status="ON_HOLD_BY_OPERATOR")})
    applications_sync_open()
    SenderNameApplication.objects.filter(pk=application.pk).update(next_status_check_at=timezone.now())
    applications_sync_open()
    application.refresh_from_db()
    assert application.status == "ON_HOLD_BY_OPERATOR" and application.status_label == "ON_HOLD_BY_OPERATOR"
    assert application.next_status_check_at is not None
    assert stub["client"].count("get") == 2
    assert sum("unknown sender-name status" in r.getMessage() for r in caplog.records) == 1
    assert application.history.count() == 1


def test_sync_pauses_an_account_with_a_bad_key(make_application, stub):
    apps = [submitted(make_application(sender_name=f"Name{i}"), remote_id=i) for i in range(1, 4)]
    stub["client"] = StubClient(
        get={a.remote_id: IdgtlConfigurationError("Bad credentials", http_status=401, code=4012) for a in apps}
    )
    report = applications_sync_open()
    assert (report.errors, report.skipped) == (1, 2)
    assert stub["client"].count("get") == 1
    apps[0].refresh_from_db()
    assert apps[0].last_error_kind == ErrorKind.CONFIGURATION
    for application in apps:
        application.refresh_from_db()
        assert application.next_status_check_at > timezone.now()


def test_sync_interval_backs_off_for_applications_long_in_review(settings):
    settings.SENDER_NAME_SYNC_INTERVAL = 900
    now = timezone.now()
    assert sync_interval(now, now) == dt.timedelta(minutes=15)
    assert sync_interval(now - dt.timedelta(days=1, hours=1), now) == dt.timedelta(minutes=30)
    assert sync_interval(now - dt.timedelta(days=3), now) == dt.timedelta(hours=2)
    assert sync_interval(now - dt.timedelta(days=60), now) == dt.timedelta(hours=6)


def test_sync_task_is_registered_under_the_beat_name():
    from b24sms.celery import BEAT_SCHEDULE, app
    from sendernames import tasks  # noqa: F401

    assert BEAT_SCHEDULE["sender-names-sync-statuses"]["task"] in app.tasks


def test_sync_writes_rows_with_distinct_outcomes(make_application, stub, monkeypatch):
    monkeypatch.setattr("sendernames.services.status.MAX_UPDATE_GROUPS", 1)  # the rest go through bulk_update
    apps = [submitted(make_application(sender_name=f"Name{i}"), remote_id=i) for i in range(1, 4)]
    stub["client"] = StubClient(
        get={
            a.remote_id: remote_record(a, remote_id=a.remote_id, status="REJECTED", comment=f"Reason {a.remote_id}")
            for a in apps
        }
    )
    assert applications_sync_open().changed == 3
    for application in apps:
        application.refresh_from_db()
        assert (application.status, application.status_comment) == ("REJECTED", f"Reason {application.remote_id}")


def test_submit_task_after_a_transient_failure_is_retried_by_the_stalled_sweep(
    make_application, stub, django_capture_on_commit_callbacks
):
    application = make_application()
    stub["client"] = StubClient(
        create=[IdgtlTransientError("503", http_status=503), remote_record(application, remote_id=41)]
    )
    with django_capture_on_commit_callbacks(execute=True):
        application_submit(application_id=application.pk)  # eager: no broker to retry through
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.QUEUED and application.last_error_kind == ErrorKind.TRANSIENT
    SenderNameApplication.objects.filter(pk=application.pk).update(updated_at=timezone.now() - dt.timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        sync_open_applications.delay()
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.SUBMITTED and application.remote_id == 41
    assert [c[0] for c in stub["client"].calls] == ["create", "list", "create"]
    assert application.last_error_kind == ""


def test_an_answer_without_an_id_is_looked_up_not_trusted(make_application, stub):
    application = queued(make_application())
    stub["client"] = StubClient(create=[{"status": "PRE_REVIEW"}], listing=[remote_record(application, remote_id=61)])
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.SUBMITTED
    assert [c[0] for c in stub["client"].calls] == ["create", "list"]
    application.refresh_from_db()
    assert application.remote_id == 61


def test_sync_stores_an_odd_status_and_fee_without_failing_the_batch(make_application, stub):
    odd = submitted(make_application(sender_name="Odd"), remote_id=1)
    fine = submitted(make_application(sender_name="Fine"), remote_id=2)
    long_status = "WAITING_FOR_" + "X" * 100
    stub["client"] = StubClient(
        get={
            1: remote_record(odd, remote_id=1, status=long_status, fee="NaN"),
            2: remote_record(fine, remote_id=2, status="REVIEW", fee=10**15),
        }
    )
    report = applications_sync_open()
    assert (report.checked, report.changed, report.errors) == (2, 2, 0)
    odd.refresh_from_db()
    fine.refresh_from_db()
    assert odd.status == long_status[:64] and odd.status_label == long_status[:64]
    assert odd.next_status_check_at is not None  # unknown: polled on
    assert odd.fee is None and fine.fee is None and fine.status == "REVIEW"
    assert odd.history.get().status == long_status[:64]


def test_a_final_status_is_never_polled_again(make_application, stub):
    application = submitted(make_application(), remote_id=4)
    stub["client"] = StubClient(get={4: remote_record(application, remote_id=4, status="CANCELED")})
    applications_sync_open()
    SenderNameApplication.objects.filter(pk=application.pk).update(next_status_check_at=timezone.now())
    applications_sync_open(now=timezone.now() + dt.timedelta(days=30))
    assert stub["client"].count("get") == 1
    application.refresh_from_db()
    assert application.status == "CANCELED"
    assert [(h.previous_status, h.status, h.cause) for h in application.history.all()] == [
        ("PRE_REVIEW", "CANCELED", "periodic_sync")
    ]


def test_sync_backs_off_for_an_application_long_in_review(make_application, stub, settings):
    settings.SENDER_NAME_SYNC_INTERVAL = 900
    now = timezone.now()
    fresh = submitted(make_application(sender_name="Fresh"), remote_id=1)
    old = submitted(make_application(sender_name="Old"), remote_id=2, submitted_at=now - dt.timedelta(days=3))
    stub["client"] = StubClient(get={1: remote_record(fresh, remote_id=1), 2: remote_record(old, remote_id=2)})
    applications_sync_open(now=now)
    fresh.refresh_from_db()
    old.refresh_from_db()
    assert fresh.next_status_check_at == now + dt.timedelta(minutes=15)
    assert old.next_status_check_at == now + dt.timedelta(hours=2)
    assert fresh.history.count() == old.history.count() == 0  # no change, no history row


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "12abc", "status": "PRE_REVIEW"},
        {"id": 2**70, "status": "PRE_REVIEW"},
        {"id": True},
        ["not", "an", "object"],
    ],
)
def test_an_answer_with_an_unusable_id_is_not_stored(make_application, stub, answer):
    application = queued(make_application())
    stub["client"] = StubClient(create=[answer, answer])
    assert application_submit_perform(application_id=application.pk).outcome is SubmitOutcome.RETRY
    application.refresh_from_db()
    assert application.remote_id is None and application.submission_state == SubmissionState.QUEUED
    assert application.last_error_kind == ErrorKind.TRANSIENT


def test_a_refresh_during_a_sync_cycle_is_neither_overwritten_nor_recorded_twice(make_application, stub):
    application = submitted(make_application(), remote_id=6)

    class RefreshingMeanwhile(StubClient):
        def get_sender_name(self, remote_id):
            record = super().get_sender_name(remote_id)
            if self.count("get") == 1:  # the operator clicks "Refresh status" while the sync waits for i-dgtl
                application_refresh_status(application_id=application.pk)
            return record

    stub["client"] = RefreshingMeanwhile(get={6: remote_record(application, remote_id=6, status="REVIEW")})
    report = applications_sync_open()
    assert report.changed == 0
    application.refresh_from_db()
    assert application.status == "REVIEW"
    assert [(h.previous_status, h.status, h.cause) for h in application.history.all()] == [
        ("PRE_REVIEW", "REVIEW", "manual_refresh")
    ]


def test_a_cycle_out_of_time_stops_mid_batch_and_leaves_the_rest_due(make_application, stub, monkeypatch):
    apps = [submitted(make_application(sender_name=f"Name{i}"), remote_id=i) for i in range(1, 6)]
    stub["client"] = StubClient(
        get={a.remote_id: remote_record(a, remote_id=a.remote_id, status="REVIEW") for a in apps}
    )
    ticks = iter(range(100))
    monkeypatch.setattr("sendernames.services.status.time", type("Clock", (), {"monotonic": lambda: next(ticks)}))
    report = applications_sync_open(time_budget=4)  # room for two calls (the clock ticks once per check)
    assert (report.checked, report.skipped) == (2, 3)
    assert stub["client"].count("get") == 2
    now = timezone.now()
    for application in apps:
        application.refresh_from_db()
    assert [a.status for a in apps] == ["REVIEW", "REVIEW", "PRE_REVIEW", "PRE_REVIEW", "PRE_REVIEW"]
    assert all(a.next_status_check_at <= now for a in apps[2:])  # asked by the next cycle, not after the lease
    assert all(a.history.count() == 0 for a in apps[2:])


def test_a_document_missing_from_storage_fails_visibly_and_sends_nothing(make_application, stub):
    application = queued(make_application(common_type="PROMO", documents=[pdf("charter.pdf")]))
    application.documents.get().file.storage.delete(application.documents.get().file.name)
    result = application_submit_perform(application_id=application.pk)
    assert result.outcome is SubmitOutcome.FAILED
    assert stub["client"].count("create") == 0
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.FAILED
    assert "“charter.pdf” cannot be read from storage" in application.last_error_message


def test_after_the_broker_lost_its_messages_queued_submissions_are_enqueued_at_once(
    make_application, django_capture_on_commit_callbacks
):
    """A Redis restarted empty dropped their tasks: they do not wait for the claim lease (minutes)."""
    now = timezone.now()
    before = queued(make_application(sender_name="Before"))
    queued(make_application(sender_name="After"))
    claimed = queued(make_application(sender_name="Claimed"))
    SenderNameApplication.objects.filter(pk=before.pk).update(updated_at=now - dt.timedelta(seconds=20))
    SenderNameApplication.objects.filter(pk=claimed.pk).update(
        updated_at=now - dt.timedelta(seconds=20), submission_state=SubmissionState.SUBMITTING
    )
    lost_at = now - dt.timedelta(seconds=10)  # the broker restarted 10 s ago; "after" was queued since
    with (
        mock.patch("sendernames.tasks.submit_application.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert applications_resume_stalled(now=now) == []  # without a loss: the lease is not over
        assert applications_resume_stalled(now=now, broker_lost_at=lost_at) == [before.pk]
    delay.assert_called_once_with(before.pk)
