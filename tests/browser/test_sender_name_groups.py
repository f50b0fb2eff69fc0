"""In a real browser: one name filed with four operators (MegaFon refuses a space first), the matrix operator ×
status after two approvals and one rejection, one more operator added, and a status set by hand.

Tasks run inline (CELERY_TASK_ALWAYS_EAGER in the test settings); the fake i-dgtl answers over real HTTP.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from sendernames.models import SenderNameApplication, SenderNameGroup
from sendernames.tasks import sync_open_applications
from tests.fixtures.documents import PDF_BYTES

pytestmark = pytest.mark.django_db(transaction=True)

FOUR = ["MTS", "MEGAFON", "BEELINE", "TELE2"]


def test_group_matrix(logged_in, idgtl, tmp_path, screenshot):
    page = logged_in
    letter = tmp_path / "letter-of-authority.pdf"
    letter.write_bytes(PDF_BYTES)

    page.goto("/admin/sendernames/sendernamegroup/add/")
    page.select_option("#id_common_type", "PROMO")
    for brand in FOUR:
        page.check(f"input[name=brands][value={brand}]")
    page.fill("#id_date_from", (timezone.localdate() + timedelta(days=3)).isoformat())
    page.fill("#id_sender_name", "ACME SHOP")
    page.fill("#id_counteragent_name", "ACME LLC")
    page.fill("#id_counteragent_inn", "7707083893")
    page.set_input_files("#id_new_documents", str(letter))
    page.click("input[name=_save]")
    error = page.inner_text(".field-sender_name .errorlist")
    assert "refused by MegaFon" in error and "space" in error and "MTS" not in error
    assert not SenderNameGroup.objects.exists() and idgtl.sender_names == {}
    screenshot(page, "sender-name-group-refused")

    page.fill("#id_sender_name", "ACMESHOP")
    page.set_input_files("#id_new_documents", str(letter))
    page.click("input[name=_save]")
    page.wait_for_selector("#b24-group-matrix")
    group = SenderNameGroup.objects.get()
    assert sorted(r["brand"] for r in idgtl.sender_names.values()) == sorted(FOUR)

    remote = dict(group.applications.values_list("brand", "remote_id"))
    idgtl.set_sender_name_status(remote["MTS"], "APPROVED")
    idgtl.set_sender_name_status(remote["MEGAFON"], "APPROVED")
    idgtl.set_sender_name_status(remote["BEELINE"], "REJECTED", comment="Trademark not proven")
    SenderNameApplication.objects.filter(group=group).update(next_status_check_at=timezone.now())
    sync_open_applications()

    page.click("#b24-add-brand")
    page.select_option("#id_brand", "YOTA")
    page.click("#b24-add-brand-form input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    yota = group.applications.get(brand="YOTA")

    page.goto(f"/admin/sendernames/sendernameapplication/{yota.pk}/change/")
    page.click("#b24-set-status")
    page.select_option("#id_status", "REVIEW")
    page.fill("#id_note", "seen in the i-dgtl cabinet")
    page.click("#b24-set-status-form input[name=apply]")
    page.wait_for_selector(".messagelist .success")

    page.goto(f"/admin/sendernames/sendernamegroup/{group.pk}/change/")
    rows = page.locator("#b24-group-matrix tbody tr")
    assert rows.count() == 5
    statuses = {row.get_attribute("data-brand"): row.get_attribute("data-status") for row in rows.all()}
    assert statuses == {
        "MTS": "APPROVED",
        "MEGAFON": "APPROVED",
        "BEELINE": "REJECTED",
        "TELE2": "PRE_REVIEW",
        "YOTA": "REVIEW",
    }
    matrix = page.inner_text("#b24-group-matrix")
    assert "Approved" in matrix and "Rejected" in matrix and "set by hand" in matrix
    assert "2000.00" in matrix and "2500.00" in matrix and "00:00 Moscow time" in matrix
    screenshot(page, "sender-name-group-matrix")
