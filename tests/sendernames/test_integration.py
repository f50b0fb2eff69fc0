"""End to end: the API, a real Celery worker on Redis and PostgreSQL, and the fake i-dgtl over HTTP."""

import hashlib

import pytest
from django.utils import timezone

from idgtl.client import IdgtlClient
from sendernames.models import SenderNameApplication, SubmissionState
from sendernames.tasks import submit_application, sync_open_applications
from sendernames.validation import date_from_for_idgtl, normalise_date_from
from tests.concurrency import run_together
from tests.sendernames.conftest import PDF_BYTES, PNG_BYTES, VALID_INN, VALID_INN_12, application_fields, pdf, png
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
# Generous waits (they end as soon as the condition holds): on a loaded 2-CPU machine the shared
# session worker may still be busy with tasks other integration tests left behind.
URL = "/api/sender-names/"


def posts(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/sender-names")]


def create_through_api(api_client, files=None, **overrides):
    data = application_fields(**overrides)
    data["date_from"] = str(data["date_from"])
    if files:
        data.update(files)
        response = api_client.post(URL, data, format="multipart")
    else:
        response = api_client.post(URL, data, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def state_of(application_id):
    return SenderNameApplication.objects.get(pk=application_id)


def wait_for_state(application_id, *states, timeout=60):
    return wait_until(
        lambda: state_of(application_id).submission_state in states and state_of(application_id),
        timeout=timeout,
        message=f"application {application_id} to reach {states}",
    )


def test_created_with_two_files_submitted_once_then_approved_by_the_periodic_sync(live_worker, idgtl, api_client):
    created = create_through_api(
        api_client, common_type="PROMO", files={"file1": pdf("charter.pdf"), "file2": png("logo.png")}
    )
    application_id = created["id"]
    # A double click, a repeated API call and a redelivered task.
    assert api_client.post(f"{URL}{application_id}/submit/").status_code == 202
    assert api_client.post(f"{URL}{application_id}/submit/").status_code == 200
    submit_application.delay(application_id)
    application = wait_for_state(application_id, SubmissionState.SUBMITTED)
    submit_application.delay(application_id)

    def finished():
        return sum("submit_application[" in line and "succeeded" in line for line in live_worker.logs().splitlines())

    wait_until(lambda: finished() >= 3, timeout=60, message="the worker to finish every submit task")

    assert len(posts(idgtl)) == 1 and len(idgtl.sender_names) == 1
    request = posts(idgtl)[0]
    assert request.body_part == {
        "channelType": "SMS",
        "commonType": "PROMO",
        "brand": "MTS",
        "dateFrom": date_from_for_idgtl(normalise_date_from(application_fields()["date_from"])),
        "senderName": "MyShop",
        "counteragentName": "Shop, LLC",
        "counteragentInn": VALID_INN,
    }
    assert request.body_part["dateFrom"].endswith("T21:00:00Z")
    assert [(f["name"], f["filename"], f["size"], f["sha256"]) for f in request.files] == [
        ("file1", "charter.pdf", len(PDF_BYTES), hashlib.sha256(PDF_BYTES).hexdigest()),
        ("file2", "logo.png", len(PNG_BYTES), hashlib.sha256(PNG_BYTES).hexdigest()),
    ]
    assert request.headers["Authorization"] == f"Basic {idgtl.sender_names_key}"
    assert application.status == "PRE_REVIEW" and application.remote_id in idgtl.sender_names
    assert application.fee is not None

    # The operator approves the name at i-dgtl; the beat job notices once the application is due.
    idgtl.set_sender_name_status(application.remote_id, "APPROVED")
    sync_open_applications.delay()  # not due yet: nothing is asked
    SenderNameApplication.objects.filter(pk=application_id).update(next_status_check_at=timezone.now())
    sync_open_applications.delay()
    wait_until(lambda: state_of(application_id).status == "APPROVED", timeout=60, message="the sync to see APPROVED")
    body = api_client.get(f"{URL}{application_id}/").json()
    assert [(h["previous_status"], h["status"], h["cause"]) for h in body["history"]] == [
        ("", "PRE_REVIEW", "submission"),
        ("PRE_REVIEW", "APPROVED", "periodic_sync"),
    ]
    assert state_of(application_id).next_status_check_at is None
    gets = [
        r for r in idgtl.requests if r.method == "GET" and r.path.endswith(f"/sender-names/{application.remote_id}")
    ]
    assert len(gets) == 1


def test_bad_key_is_stored_as_a_configuration_error(live_worker, idgtl, api_client):
    from idgtl.services import account_get_default

    account = account_get_default()
    account.sender_names_key = "d3Jvbmc6a2V5"  # a key i-dgtl does not know
    account.save()
    application_id = create_through_api(api_client)["id"]
    api_client.post(f"{URL}{application_id}/submit/")
    application = wait_for_state(application_id, SubmissionState.FAILED)
    assert (application.last_error_kind, application.last_error_code) == ("configuration", 4012)
    assert "configuration problem" in application.last_error_message
    assert "d3Jvbmc6a2V5" not in live_worker.logs()
    assert idgtl.sender_names == {}


def test_duplicate_is_stored_with_idgtl_message_as_is(live_worker, idgtl, api_client):
    from idgtl.services import account_get_default

    # Somebody else already filed MyShop for MTS with this account (e.g. in i-dgtl's cabinet).
    body = {
        "channelType": "SMS",
        "commonType": "SERVICE",
        "brand": "MTS",
        "senderName": "myshop",
        "dateFrom": date_from_for_idgtl(normalise_date_from(application_fields()["date_from"])),
        "counteragentName": "Other, LLC",
        "counteragentInn": VALID_INN_12,
    }
    existing = IdgtlClient.for_sender_names(account_get_default()).create_sender_name(body, [])
    application_id = create_through_api(api_client)["id"]
    api_client.post(f"{URL}{application_id}/submit/")
    application = wait_for_state(application_id, SubmissionState.FAILED)
    assert application.last_error_kind == "rejected" and application.last_error_code == 4220
    assert application.last_error_message == f"Duplicates with existing name (id = {existing['id']})"
    detail = api_client.get(f"{URL}{application_id}/").json()
    assert detail["last_error"]["message"] == application.last_error_message


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_then_success_creates_one_remote_application(live_worker, idgtl, api_client, status):
    application_id = create_through_api(api_client)["id"]
    idgtl.fail_next(1, status, path_prefix="/sender-names")
    api_client.post(f"{URL}{application_id}/submit/")
    application = wait_for_state(application_id, SubmissionState.SUBMITTED)
    assert len(idgtl.sender_names) == 1 and application.remote_id in idgtl.sender_names
    assert [r.status for r in posts(idgtl)] == [status, 200]
    assert application.last_error_kind == "" and application.status == "PRE_REVIEW"


def test_concurrent_submissions_reach_idgtl_once(transactional_db, idgtl):
    from unittest import mock

    from sendernames.services import application_create, application_submit, application_submit_perform

    application = application_create(**application_fields())
    with mock.patch("sendernames.tasks.submit_application.delay") as delay:
        requests_ = run_together(lambda: application_submit(application_id=application.pk), 4, timeout=60)
    assert sum(r.queued for r in requests_) == 1 and delay.call_count == 1
    outcomes = run_together(
        lambda: application_submit_perform(application_id=application.pk).outcome.value, 4, timeout=60
    )
    assert sorted(outcomes) == ["skipped", "skipped", "skipped", "submitted"]
    assert len(posts(idgtl)) == 1 and len(idgtl.sender_names) == 1


def test_concurrent_identical_creates_file_one_application(transactional_db, idgtl):
    from django.core.exceptions import ValidationError

    from sendernames.services import application_create

    def create():
        try:
            return application_create(**application_fields(common_type="PROMO"), documents=[pdf()]).pk
        except ValidationError as exc:
            return exc.message_dict["sender_name"][0]

    results = run_together(create, 4, timeout=60)
    created = [r for r in results if isinstance(r, int)]
    assert len(created) == 1 and SenderNameApplication.objects.count() == 1
    assert all(f"#{created[0]}" in r for r in results if isinstance(r, str))
