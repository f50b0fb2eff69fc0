"""The sandbox walkthrough of the README, in a real browser, against the fake i-dgtl and fake Bitrix24.

File a sender name with a document (a wrong file and a bad INN are refused first), submit it and see
PRE_REVIEW, see it approved, register a provider on the portal, send a test SMS and follow its
timeline to delivered. Tasks run inline (CELERY_TASK_ALWAYS_EAGER in the test settings); the fakes
answer over real HTTP and call the live server back (delivery callbacks).
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from common import sandbox
from providers.models import Message, MessageState, ProviderRegistration, RegistrationState
from sendernames.models import SenderNameApplication
from tests.fixtures.documents import PDF_BYTES
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PDF = PDF_BYTES  # a real one-page PDF: uploads are parsed, not only sniffed


@pytest.fixture
def sandbox_portal(live_server, settings, idgtl, bitrix24, installation_factory, monkeypatch):
    """The sandbox as `make run` sets it up: b24sms installed on the fake portal, tasks reachable."""
    settings.SANDBOX = True
    settings.PUBLIC_BASE_URL = live_server.url
    monkeypatch.setattr(sandbox, "bitrix24_url", lambda environ=None: bitrix24.url)
    portal = bitrix24.add_portal(
        domain=sandbox.SANDBOX_PORTAL_DOMAIN,
        member_id=sandbox.SANDBOX_MEMBER_ID,
        client_id=sandbox.SANDBOX_CLIENT_ID,
        client_secret=sandbox.SANDBOX_CLIENT_SECRET,
    )
    installation = installation_factory(portal)
    return portal, installation


def run_action(page, name):
    page.check("#action-toggle") if page.locator("#action-toggle").count() else None
    page.select_option("select[name=action]", name)
    page.click("button[name=index]")


def test_walkthrough(logged_in, sandbox_portal, idgtl, bitrix24, tmp_path, screenshot):
    page = logged_in
    portal, installation = sandbox_portal

    # --- file a sender name: a wrong file, a bad INN, then success ---------------------------------
    not_a_pdf = tmp_path / "charter.pdf"
    not_a_pdf.write_bytes(b"this is plain text, not a PDF")
    good_pdf = tmp_path / "letter-of-authority.pdf"
    good_pdf.write_bytes(PDF)
    page.goto("/admin/sendernames/sendernameapplication/add/")
    page.select_option("#id_common_type", "SERVICE")
    page.select_option("#id_brand", "MTS")
    page.fill("#id_date_from", (timezone.localdate() + timedelta(days=3)).isoformat())
    page.fill("#id_sender_name", "ACMESHOP")
    page.fill("#id_counteragent_name", "ACME LLC")
    page.fill("#id_counteragent_inn", "7707083890")  # check digits wrong
    page.set_input_files("#id_new_documents", str(not_a_pdf))
    page.click("input[name=_save]")
    errors = page.inner_text("#content-main")
    assert "check digits are wrong" in errors
    assert "not a PDF, PNG or JPEG" in errors
    screenshot(page, "sender-name-errors")
    assert not SenderNameApplication.objects.exists()

    page.fill("#id_counteragent_inn", "7707083893")
    page.set_input_files("#id_new_documents", str(good_pdf))
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    application = SenderNameApplication.objects.get()
    assert application.documents.count() == 1

    # --- submit it: PRE_REVIEW ------------------------------------------------------------------
    page.goto("/admin/sendernames/sendernameapplication/")
    run_action(page, "submit_to_idgtl")
    page.wait_for_selector(".messagelist li")
    application.refresh_from_db()
    assert application.status == "PRE_REVIEW"
    page.goto("/admin/sendernames/sendernameapplication/")
    assert "Pre-review" in page.inner_text("#result_list")
    screenshot(page, "sender-names-pre-review")

    # --- i-dgtl approves it (the sandbox does this after B24SMS_SANDBOX_REVIEW_DELAY) -----------------
    idgtl.set_sender_name_status(application.remote_id, "APPROVED")
    run_action(page, "refresh_status")
    page.wait_for_selector(".messagelist li")
    page.goto(f"/admin/sendernames/sendernameapplication/{application.pk}/change/")
    assert "Approved" in page.inner_text("#content-main")
    screenshot(page, "sender-name-approved")

    # --- a provider, registered on the portal ---------------------------------------------------------
    page.goto("/admin/providers/provider/add/")
    page.fill("#id_code", "acme_sms")
    page.fill("#id_name", "ACME SMS")
    page.fill("#id_sender_name", "ACMESHOP")  # typed in: the approved name's start date is still ahead
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    page.goto("/admin/providers/provider/")
    run_action(page, "register_action")
    page.click("input[name=apply]")
    page.wait_for_selector(".messagelist li")
    registration = ProviderRegistration.objects.get(provider__code="acme_sms")
    assert registration.state == RegistrationState.REGISTERED, registration.last_error
    assert "acme_sms" in portal.providers
    page.goto("/admin/providers/provider/")
    assert "Registered" in page.inner_text("#result_list")
    screenshot(page, "provider-registered")

    # --- a test SMS, followed to delivered ----------------------------------------------------------------
    idgtl.allowed_sender_names.add("ACMESHOP")  # the sandbox allows names b24sms knows
    run_action(page, "send_test_sms")
    page.wait_for_selector("#test-sms-form")
    page.fill("#id_phone", "+7 900 123-45-67")
    page.fill("#id_text", "Hello from the b24sms sandbox")
    screenshot(page, "test-sms-form")
    page.click("#test-sms-form input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    assert re.search(r"/admin/providers/message/\d+/change/", page.url)
    message = Message.objects.get()
    assert message.state == MessageState.SENT and message.installation == installation
    idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    wait_until(
        lambda: Message.objects.get(pk=message.pk).state == MessageState.DELIVERED, timeout=20, message="delivered"
    )
    wait_until(
        lambda: portal.message_statuses.get(message.message_id) == ["delivered"],
        timeout=20,
        message="the final status reported to Bitrix24 (it showed the SMS sent itself)",
    )
    page.reload()
    timeline = page.inner_text("#content-main")
    assert "Delivered" in timeline and "Accepted by Bitrix24" in timeline  # labels: the codes are the API's
    assert "(delivered)" not in timeline and "object (" not in timeline
    screenshot(page, "message-timeline")

    page.goto("/admin/")
    assert "sandbox.bitrix24.test" in page.inner_text("#dash-today")
    screenshot(page, "dashboard-after-walkthrough")
