"""End to end with a real Celery worker, PostgreSQL, Redis and the fake i-dgtl over HTTP: one name filed with four
operators (each POSTed once whatever is repeated), reviewed; and an i-dgtl without the read endpoint."""

import pytest
from django.utils import timezone

from sendernames.models import SenderNameApplication, StatusReadability, SubmissionState
from sendernames.selectors import sender_name_choices
from sendernames.tasks import submit_application, sync_open_applications
from tests.sendernames.conftest import PDF_BYTES, application_fields, pdf
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
URL = "/api/sender-name-groups/"
FOUR = ["MTS", "MEGAFON", "BEELINE", "TELE2"]


def payload(**overrides):
    data = application_fields(**overrides)
    data.pop("brand")
    data["date_from"] = str(data["date_from"])
    return data


def posts(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/sender-names")]


def reads(fake):
    return [r for r in fake.requests if r.method == "GET" and "/sender-names" in r.path]


def finished(worker, task: str) -> int:
    return sum(f"{task}[" in line and "succeeded" in line for line in worker.logs().splitlines())


def wait_submitted(group_id, n, timeout=90):
    wait_until(
        lambda: (
            SenderNameApplication.objects.filter(group_id=group_id, submission_state=SubmissionState.SUBMITTED).count()
            == n
        ),
        timeout=timeout,
        message=f"{n} applications of group {group_id} to be submitted",
    )


def run_sync(worker):
    """The beat job once, on the worker; returns when it has finished."""
    before = finished(worker, "sendernames.tasks.sync_open_applications")
    sync_open_applications.delay()
    wait_until(
        lambda: finished(worker, "sendernames.tasks.sync_open_applications") > before,
        timeout=90,
        message="the sync task to finish",
    )


def make_due(**filters):
    SenderNameApplication.objects.filter(**filters).exclude(next_status_check_at=None).update(
        next_status_check_at=timezone.now()
    )


def test_one_name_four_operators_each_filed_once_then_two_approved_one_rejected(live_worker, idgtl, api_client):
    submits_before = finished(live_worker, "sendernames.tasks.submit_application")
    body = {**payload(common_type="PROMO", sender_name="ACMESHOP"), "brands": FOUR}
    first = api_client.post(URL, {**body, "file1": pdf("charter.pdf")}, format="multipart")
    assert first.status_code == 201, first.content
    second = api_client.post(URL, {**body, "file1": pdf("charter.pdf")}, format="multipart")  # a double submit
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    group_id = first.json()["id"]
    wait_submitted(group_id, 4)
    for application_id in SenderNameApplication.objects.filter(group_id=group_id).values_list("pk", flat=True):
        submit_application.delay(application_id)  # a redelivered task
    wait_until(
        lambda: finished(live_worker, "sendernames.tasks.submit_application") >= submits_before + 8,
        timeout=90,
        message="every submit task, the redelivered ones too, to finish",
    )

    assert sorted(r.body_part["brand"] for r in posts(idgtl)) == sorted(FOUR)  # four POSTs, one per operator
    for request in posts(idgtl):
        assert request.body_part["senderName"] == "ACMESHOP" and request.body_part["commonType"] == "PROMO"
        assert [(f["filename"], f["size"]) for f in request.files] == [("charter.pdf", len(PDF_BYTES))]
    assert len(idgtl.sender_names) == 4

    # The operators review: two approve, one rejects, one is still reviewing.
    remote = dict(SenderNameApplication.objects.filter(group_id=group_id).values_list("brand", "remote_id"))
    idgtl.set_sender_name_status(remote["MTS"], "APPROVED")
    idgtl.set_sender_name_status(remote["MEGAFON"], "APPROVED")
    idgtl.set_sender_name_status(remote["BEELINE"], "REJECTED", comment="Trademark not proven")
    make_due(group_id=group_id)
    run_sync(live_worker)
    matrix = {row["brand"]: row for row in api_client.get(f"{URL}{group_id}/").json()["matrix"]}
    assert {brand: row["status"] for brand, row in matrix.items()} == {
        "MTS": "APPROVED",
        "MEGAFON": "APPROVED",
        "BEELINE": "REJECTED",
        "TELE2": "PRE_REVIEW",
    }
    assert {brand: row["remote_id"] for brand, row in matrix.items()} == remote
    assert matrix["MTS"]["fee"] == "2000.00" and matrix["MEGAFON"]["fee"] == "2500.00"
    assert all(row["last_change"] and row["status_readable"] for row in matrix.values())
    beeline = SenderNameApplication.objects.get(group_id=group_id, brand="BEELINE")
    assert beeline.status_comment == "Trademark not proven"

    # One more operator later: just that one is filed, once.
    assert api_client.post(f"{URL}{group_id}/add-brand/", {"brand": "YOTA"}, format="json").status_code == 201
    assert api_client.post(f"{URL}{group_id}/add-brand/", {"brand": "YOTA"}, format="json").status_code == 200
    wait_submitted(group_id, 5)
    assert sorted(r.body_part["brand"] for r in posts(idgtl)) == sorted(FOUR + ["YOTA"])

    # A provider's choice lists the name once, with the two operators that approved it (from its start date).
    [choice] = sender_name_choices()
    assert choice.sender_name == "ACMESHOP" and [brand for brand, _start in choice.later] == ["MTS", "MEGAFON"]


def test_without_a_read_endpoint_polling_stops_the_start_page_says_so_and_a_manual_status_sticks(
    live_worker, idgtl, api_client, client, staff_user
):
    idgtl.sender_name_reads = False
    created = api_client.post(URL, {**payload(sender_name="NOREAD"), "brands": ["MTS", "TELE2"]}, format="json")
    assert created.status_code == 201, created.content
    group_id = created.json()["id"]
    wait_submitted(group_id, 2)
    mts = SenderNameApplication.objects.get(group_id=group_id, brand="MTS")
    tele2 = SenderNameApplication.objects.get(group_id=group_id, brand="TELE2")

    make_due(group_id=group_id)
    run_sync(live_worker)
    state = StatusReadability.objects.get(account_id=mts.account_id)
    assert not state.readable and state.http_status == 404
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in reads(idgtl)][:2] in (
        [(str(mts.remote_id), 404), ("sender-names", 405)],
        [(str(tele2.remote_id), 404), ("sender-names", 405)],
    )
    assert len(reads(idgtl)) == 2  # one read and one look at the list: the account's other application is not asked

    make_due(group_id=group_id)
    run_sync(live_worker)
    assert len(reads(idgtl)) == 2  # polling stopped

    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    page = client.get("/admin/").content.decode()
    assert "Status not readable from i-dgtl for the account" in page and "2 open applications are not polled" in page
    detail = api_client.get(f"/api/sender-names/{mts.pk}/").json()
    assert detail["status_readable"] is False and "set it from the cabinet" in detail["status_note"]
    group = api_client.get(f"{URL}{group_id}/").json()
    assert [row["status_readable"] for row in group["matrix"]] == [False, False]

    # The operator reads the cabinet and sets the statuses by hand; bad input is refused by field.
    today = timezone.localdate().isoformat()
    bad = api_client.post(f"/api/sender-names/{mts.pk}/set-status/", {"status": "DONE", "date": today}, format="json")
    assert bad.status_code == 400 and "status" in bad.json()
    bad = api_client.post(
        f"/api/sender-names/{mts.pk}/set-status/", {"status": "APPROVED", "date": "2999-01-01"}, format="json"
    )
    assert bad.status_code == 400 and "date" in bad.json()
    for application, status in ((mts, "APPROVED"), (tele2, "REVIEW")):
        response = api_client.post(
            f"/api/sender-names/{application.pk}/set-status/",
            {"status": status, "date": today, "note": "seen in the i-dgtl cabinet"},
            format="json",
        )
        assert response.status_code == 200, response.content
        assert response.json()["application"]["history"][-1]["changed_by"] == staff_user.username

    # A day later i-dgtl answers reads again, still saying PRE_REVIEW (older): the statuses set by hand stay.
    idgtl.sender_name_reads = True
    StatusReadability.objects.update(next_check_at=timezone.now())
    run_sync(live_worker)
    wait_until(
        lambda: StatusReadability.objects.get(account_id=mts.account_id).readable,
        timeout=30,
        message="the daily check to find the read endpoint",
    )
    assert any(r.path.endswith(f"/sender-names/{tele2.remote_id}") and r.status == 200 for r in reads(idgtl))
    mts.refresh_from_db()
    tele2.refresh_from_db()
    assert (mts.status, mts.status_manual) == ("APPROVED", True)
    assert (tele2.status, tele2.status_manual) == ("REVIEW", True)

    # Further along at i-dgtl: the sync takes it.
    idgtl.set_sender_name_status(tele2.remote_id, "APPROVED")
    make_due(pk=tele2.pk)
    run_sync(live_worker)
    tele2.refresh_from_db()
    assert (tele2.status, tele2.status_manual) == ("APPROVED", False)
    assert [h.cause for h in tele2.history.all()] == ["submission", "manual", "periodic_sync"]


def test_concurrent_identical_requests_file_one_group(transactional_db, idgtl):
    """Four identical requests at once (PostgreSQL row locks): one group, the others find it."""
    from unittest import mock

    from sendernames.services import group_create
    from tests.concurrency import run_together

    fields = application_fields(sender_name="RACE")
    fields.pop("brand")
    with mock.patch("sendernames.tasks.submit_application.delay") as delay:
        filings = run_together(lambda: group_create(brands=FOUR, **fields), 4, timeout=60)
    assert sum(filing.created for filing in filings) == 1 and len({filing.group.pk for filing in filings}) == 1
    assert SenderNameApplication.objects.count() == 4 and delay.call_count == 4
