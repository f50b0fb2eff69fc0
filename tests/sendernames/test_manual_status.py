"""When i-dgtl cannot be read: the absent read endpoint stops polling, the start page and each application
say so, the account is asked again daily; a status set by hand is recorded with who and never replaced
by an older one."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from idgtl.client import IdgtlError, IdgtlNotFound, IdgtlTransientError
from sendernames.models import SenderNameApplication, SenderNameStatusChange, StatusReadability, SubmissionState
from sendernames.services import (
    accounts_recheck_readability,
    application_refresh_status,
    application_set_status,
    applications_sync_open,
)
from sendernames.services.remote import ReadRouteAbsent, remote_read
from sendernames.tasks import sync_open_applications
from tests.sendernames.conftest import remote_record

URL = "/api/sender-names/"


class ReadStub:
    """The read side of i-dgtl: ``get`` and ``listing`` are answers (dict) or errors to raise."""

    def __init__(self, get=None, listing=None):
        self.get, self.listing, self.calls = get, listing, []

    @staticmethod
    def _answer(value):
        if isinstance(value, Exception):
            raise value
        return value

    def get_sender_name(self, remote_id):
        self.calls.append(("get", remote_id))
        answer = self.get(remote_id) if callable(self.get) else self.get
        return self._answer(answer)

    def list_sender_names(self, *, sender_name=None, status=None, brand=None, page=1, per_page=100):
        self.calls.append(("list", sender_name))
        return self._answer(self.listing)


ROUTE_404 = IdgtlNotFound("Not Found", http_status=404, code=4040)
ROUTE_405 = IdgtlError("Method Not Allowed", http_status=405, code=4050)


@pytest.fixture
def submitted(make_application):
    """Applications as a worker leaves them after i-dgtl answered the POST."""

    def make(remote_id=101, status="PRE_REVIEW", **overrides):
        application = make_application(**overrides)
        now = timezone.now()
        SenderNameApplication.objects.filter(pk=application.pk).update(
            submission_state=SubmissionState.SUBMITTED,
            remote_id=remote_id,
            status=status,
            submitted_at=now,
            status_changed_at=now,
            next_status_check_at=now - dt.timedelta(seconds=1),
        )
        application.refresh_from_db()
        return application

    return make


@pytest.fixture
def stub(monkeypatch):
    holder = {"client": ReadStub()}
    monkeypatch.setattr("sendernames.services.remote.client_for", lambda account: holder["client"])
    return holder


# --- telling an absent route from an unknown id ----------------------------------------------------
def test_405_on_the_read_is_the_route(submitted):
    with pytest.raises(ReadRouteAbsent) as info:
        remote_read(ReadStub(get=ROUTE_405), submitted())
    assert info.value.http_status == 405


@pytest.mark.parametrize("listing", [ROUTE_404, ROUTE_405])
def test_404_with_the_list_route_absent_too_is_the_route(submitted, listing):
    client = ReadStub(get=ROUTE_404, listing=listing)
    with pytest.raises(ReadRouteAbsent) as info:
        remote_read(client, submitted())
    assert info.value.http_status == 404 and [c[0] for c in client.calls] == ["get", "list"]


def test_404_with_a_list_that_answers_is_one_unknown_id(submitted):
    with pytest.raises(IdgtlNotFound):
        remote_read(ReadStub(get=ROUTE_404, listing={"total": 0, "items": []}), submitted())


def test_a_record_the_list_has_is_read_from_the_list(submitted):
    application = submitted(remote_id=7)
    record = remote_record(application, remote_id=7, status="APPROVED")
    assert remote_read(ReadStub(get=ROUTE_404, listing={"total": 1, "items": [record]}), application) == record


def test_a_transient_error_of_the_list_stays_transient(submitted):
    with pytest.raises(IdgtlTransientError):
        remote_read(ReadStub(get=ROUTE_404, listing=IdgtlTransientError("down", http_status=503)), submitted())


# --- the sync stops polling the account; the daily check resumes it -----------------------------------
def test_sync_stops_polling_an_account_without_a_read_endpoint(submitted, stub, account):
    first, second = submitted(remote_id=1), submitted(remote_id=2, sender_name="Other")
    stub["client"] = ReadStub(get=ROUTE_404, listing=ROUTE_405)
    report = applications_sync_open()
    assert report.skipped == 2 and report.errors == 0
    assert [c[0] for c in stub["client"].calls] == ["get", "list"]  # the second is not asked
    state = StatusReadability.objects.get(account=account)
    assert not state.readable and state.http_status == 404
    assert state.next_check_at - state.checked_at == dt.timedelta(days=1)
    for application in (first, second):
        application.refresh_from_db()
        assert application.status == "PRE_REVIEW" and application.last_error_kind == ""
        assert application.status_not_readable
    SenderNameApplication.objects.update(next_status_check_at=timezone.now() - dt.timedelta(seconds=1))
    stub["client"].calls.clear()
    assert applications_sync_open().checked == 0 and stub["client"].calls == []  # polling stopped


def test_the_daily_check_resumes_polling_when_i_dgtl_answers_again(submitted, stub, account):
    application = submitted(remote_id=1)
    stub["client"] = ReadStub(get=ROUTE_405)
    applications_sync_open()
    assert accounts_recheck_readability() == {}  # not due before a day has passed
    later = timezone.now() + dt.timedelta(days=1, minutes=1)
    assert accounts_recheck_readability(now=later) == {account.pk: False}  # still absent: again tomorrow
    state = StatusReadability.objects.get(account=account)
    assert state.next_check_at == later + dt.timedelta(days=1)

    stub["client"] = ReadStub(get=lambda remote_id: remote_record(application, remote_id=remote_id, status="REVIEW"))
    assert accounts_recheck_readability(now=later + dt.timedelta(days=1)) == {account.pk: True}
    state.refresh_from_db()
    application.refresh_from_db()
    assert state.readable and state.unreadable_since is None
    assert application.status == "REVIEW" and not application.status_not_readable


def test_the_beat_task_runs_the_daily_check(submitted, stub, account):
    submitted(remote_id=1)
    stub["client"] = ReadStub(get=ROUTE_405)
    sync_open_applications()
    StatusReadability.objects.update(next_check_at=timezone.now() - dt.timedelta(seconds=1))
    stub["client"] = ReadStub(get=lambda remote_id: {"id": remote_id, "status": "PRE_REVIEW"})
    assert sync_open_applications()["accounts_readable_again"] == 1


def test_a_manual_refresh_says_so_and_a_successful_one_resumes(submitted, stub, account):
    application = submitted(remote_id=1)
    stub["client"] = ReadStub(get=ROUTE_405)
    result = application_refresh_status(application_id=application.pk)
    assert result.error_kind == "unreadable" and "set it from the cabinet" in result.summary
    assert not StatusReadability.objects.get(account=account).readable
    stub["client"] = ReadStub(get=lambda remote_id: remote_record(application, remote_id=remote_id))
    assert application_refresh_status(application_id=application.pk).error_kind == ""
    assert StatusReadability.objects.get(account=account).readable


def test_the_start_page_and_the_application_say_so(submitted, stub, account, client, staff_user):
    application = submitted(remote_id=1)
    stub["client"] = ReadStub(get=ROUTE_405)
    applications_sync_open()
    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    page = client.get("/admin/").content.decode()
    assert f'id="dash-sender-name-reads-{account.pk}"' in page
    assert "Status not readable from i-dgtl for the account" in page and "1 open application is not polled" in page
    change = client.get(
        reverse("admin:sendernames_sendernameapplication_change", args=[application.pk])
    ).content.decode()
    assert "Status not readable from i-dgtl — set it from the cabinet." in change and 'id="b24-set-status"' in change
    listing = client.get(reverse("admin:sendernames_sendernameapplication_changelist")).content.decode()
    assert "b24-unreadable" in listing


def test_the_api_says_so_on_each_affected_application(submitted, stub, api_client, account):
    application = submitted(remote_id=1)
    final = submitted(remote_id=2, sender_name="Done", status="APPROVED")
    stub["client"] = ReadStub(get=ROUTE_405)
    applications_sync_open()
    body = api_client.get(f"{URL}{application.pk}/").json()
    assert body["status_readable"] is False and "set it from the cabinet" in body["status_note"]
    listed = {row["id"]: row for row in api_client.get(URL).json()["results"]}
    assert listed[application.pk]["status_readable"] is False
    assert listed[final.pk]["status_readable"] is True  # final: not polled anyway, so not affected


# --- setting a status by hand ----------------------------------------------------------------------------------
def test_set_by_hand_is_recorded_with_who_and_marked_manual(submitted, staff_user):
    application = submitted()
    today = timezone.localdate()
    result = application_set_status(
        application_id=application.pk, status="APPROVED", status_date=today, note="seen in the cabinet", user=staff_user
    )
    assert result.changed and "Pre-review → Approved" in result.summary
    application.refresh_from_db()
    assert (application.status, application.status_manual, application.status_date) == ("APPROVED", True, today)
    assert application.next_status_check_at is None  # final: not polled
    change = application.history.last()
    assert (
        change.previous_status,
        change.status,
        change.cause,
        change.changed_by,
        change.status_date,
        change.comment,
    ) == ("PRE_REVIEW", "APPROVED", "manual", staff_user, today, "seen in the cabinet")
    again = application_set_status(
        application_id=application.pk, status="APPROVED", status_date=today, note="seen in the cabinet", user=staff_user
    )
    assert not again.changed and application.history.count() == 1


@pytest.mark.parametrize(
    "status, date, field",
    [
        ("DONE", None, "status"),
        ("", None, "status"),
        ("approved", None, "status"),
        ("APPROVED", "tomorrow", "date"),
        ("APPROVED", "not a date", "date"),
        ("APPROVED", "before", "date"),
    ],
)
def test_set_by_hand_bad_input_names_the_field_and_changes_nothing(submitted, status, date, field):
    application = submitted()
    today = timezone.localtime(timezone.now(), dt.timezone(dt.timedelta(hours=3))).date()
    date = {None: today, "tomorrow": today + dt.timedelta(days=1), "before": today - dt.timedelta(days=1)}.get(
        date, date
    )
    with pytest.raises(ValidationError) as info:
        application_set_status(application_id=application.pk, status=status, status_date=date)
    assert field in info.value.message_dict
    application.refresh_from_db()
    assert application.status == "PRE_REVIEW" and not SenderNameStatusChange.objects.exists()


def test_set_by_hand_on_a_draft_is_refused(make_application):
    application = make_application()
    with pytest.raises(ValidationError) as info:
        application_set_status(application_id=application.pk, status="APPROVED", status_date=timezone.localdate())
    assert "not been submitted" in info.value.messages[0]


@pytest.mark.parametrize(
    "manual, read, kept",
    [
        ("REVIEW", "PRE_REVIEW", True),  # older: kept
        ("APPROVED", "REVIEW", True),
        ("APPROVED", "REJECTED", True),  # the same stage, a conflict: the operator's stays
        ("REVIEW", "SOMETHING_NEW", True),  # unknown: never replaces it
        ("REVIEW", "APPROVED", False),  # further along: i-dgtl's wins
        ("APPROVED", "CANCELED", False),
    ],
)
def test_a_read_replaces_a_status_set_by_hand_only_when_further_along(submitted, stub, manual, read, kept):
    application = submitted()
    application_set_status(application_id=application.pk, status=manual, status_date=timezone.localdate())
    SenderNameApplication.objects.filter(pk=application.pk).update(
        next_status_check_at=timezone.now() - dt.timedelta(seconds=1)
    )
    stub["client"] = ReadStub(get=lambda remote_id: remote_record(application, remote_id=remote_id, status=read))
    applications_sync_open()
    application_refresh_status(application_id=application.pk)  # an operator's refresh follows the same rule
    application.refresh_from_db()
    if kept:
        assert (application.status, application.status_manual) == (manual, True)
        assert application.history.count() == 1
    else:
        assert (application.status, application.status_manual) == (read, False)
        history = [(h.cause, h.status) for h in application.history.all()]
        assert history[0] == ("manual", manual) and history[1][1] == read and len(history) == 2


def test_a_read_confirming_the_status_set_by_hand_makes_it_i_dgtls(submitted, stub):
    application = submitted()
    application_set_status(application_id=application.pk, status="REVIEW", status_date=timezone.localdate())
    stub["client"] = ReadStub(get=lambda remote_id: remote_record(application, remote_id=remote_id, status="REVIEW"))
    application_refresh_status(application_id=application.pk)
    application.refresh_from_db()
    assert (application.status, application.status_manual, application.history.count()) == ("REVIEW", False, 1)


def test_a_status_set_by_hand_during_a_sync_cycle_is_not_overwritten(submitted, stub, staff_user):
    application = submitted()

    def read(remote_id):  # the operator saves while the cycle waits for i-dgtl
        application_set_status(
            application_id=application.pk, status="REVIEW", status_date=timezone.localdate(), user=staff_user
        )
        return remote_record(application, remote_id=remote_id, status="PRE_REVIEW", fee=1)

    stub["client"] = ReadStub(get=read)
    applications_sync_open()
    application.refresh_from_db()
    assert (application.status, application.status_manual) == ("REVIEW", True)


# --- API and admin -------------------------------------------------------------------------------------
def test_api_set_status(submitted, api_client, staff_user):
    application = submitted()
    today = timezone.localdate().isoformat()
    response = api_client.post(
        f"{URL}{application.pk}/set-status/",
        {"status": "REJECTED", "date": today, "note": "cabinet says so"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()["application"]
    assert body["status"] == "REJECTED" and body["status_manual"] is True and body["status_date"] == today
    assert body["history"][-1] | {"created_at": None} == {
        "previous_status": "PRE_REVIEW",
        "status": "REJECTED",
        "comment": "cabinet says so",
        "cause": "manual",
        "manual": True,
        "status_date": today,
        "changed_by": staff_user.username,
        "created_at": None,
    }


@pytest.mark.parametrize(
    "data, field",
    [
        ({"status": "DONE", "date": "2020-01-01"}, "status"),
        ({"status": "APPROVED", "date": "2999-01-01"}, "date"),
        ({"status": "APPROVED", "date": "31.01.2030"}, "date"),
        ({"status": "APPROVED"}, "date"),
        ({"date": "2020-01-01"}, "status"),
    ],
)
def test_api_set_status_bad_input_is_400_naming_the_field(submitted, api_client, data, field):
    application = submitted()
    response = api_client.post(f"{URL}{application.pk}/set-status/", data, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not SenderNameStatusChange.objects.exists()


def test_api_set_status_needs_its_permission(submitted, django_user_model):
    from django.contrib.auth.models import Group
    from rest_framework.test import APIClient

    application = submitted()
    body = {"status": "APPROVED", "date": timezone.localdate().isoformat()}
    for role, code in (("Viewer", 403), ("Operator", 200)):
        user = django_user_model.objects.create_user(username=role, password="x-pass-12345", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        api = APIClient()
        api.force_authenticate(user)
        assert api.post(f"{URL}{application.pk}/set-status/", body, format="json").status_code == code, role


def test_admin_set_status_page_and_action(submitted, client, staff_user):
    first, second = submitted(remote_id=1), submitted(remote_id=2, sender_name="Other")
    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    url = reverse("admin:sendernames_set_status", args=[first.pk])
    assert client.get(url).status_code == 200
    tomorrow = (timezone.localdate() + dt.timedelta(days=2)).isoformat()
    response = client.post(url, {"apply": "1", "status": "APPROVED", "date": tomorrow, "note": ""})
    assert response.status_code == 200 and "cannot be in the future" in response.content.decode()
    response = client.post(
        url, {"apply": "1", "status": "APPROVED", "date": timezone.localdate().isoformat(), "note": "x"}
    )
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.status == "APPROVED" and first.history.get().changed_by == staff_user

    changelist = reverse("admin:sendernames_sendernameapplication_changelist")
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    page = client.post(changelist, {"action": "set_status_by_hand", ACTION_CHECKBOX_NAME: [second.pk]})
    assert page.status_code == 200 and 'id="b24-set-status-form"' in page.content.decode()
    response = client.post(
        changelist,
        {
            "action": "set_status_by_hand",
            ACTION_CHECKBOX_NAME: [second.pk],
            "apply": "1",
            "status": "REVIEW",
            "date": timezone.localdate().isoformat(),
            "note": "",
        },
    )
    assert response.status_code == 302
    second.refresh_from_db()
    assert (second.status, second.status_manual) == ("REVIEW", True)
