"""A provider's sender-name choice: each approved name once with its operators; usable from 00:00 Moscow time
of its start date, and the form says so for one approved but not started yet."""

import datetime as dt

import pytest
from django.utils import timezone

from idgtl.services import account_get_default
from providers.models import Provider
from sendernames.models import SenderNameApplication
from sendernames.selectors import application_unusable_reason, sender_name_choices, usable_from
from sendernames.validation import MOSCOW
from tests.sendernames.conftest import VALID_INN

pytestmark = pytest.mark.django_db


def approved(brand, *, name="ACMESHOP", start=None, status="APPROVED", remote_id=None):
    start = start or timezone.now() - dt.timedelta(days=1)
    return SenderNameApplication.objects.create(
        account=account_get_default(),
        common_type="SERVICE",
        brand=brand,
        sender_name=name,
        counteragent_name="ACME LLC",
        counteragent_inn=VALID_INN,
        status=status,
        date_from=start,
        submission_state="submitted",
        remote_id=remote_id or SenderNameApplication.objects.count() + 100,
    )


def moscow_midnight(days):
    day = timezone.localtime(timezone.now(), MOSCOW).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time.min, tzinfo=MOSCOW)


def test_a_name_is_listed_once_with_the_brands_it_is_approved_for():
    mts, megafon = approved("MTS"), approved("MEGAFON", name="acmeshop")
    approved("BEELINE", status="REJECTED")
    approved("TELE2", start=moscow_midnight(3))
    approved("MTS", name="OTHER")
    choices = sender_name_choices()
    assert [c.sender_name for c in choices] == ["ACMESHOP", "OTHER"]
    acme = choices[0]
    assert acme.application == mts and acme.usable_brands == ["MTS", "MEGAFON"]
    assert [brand for brand, _start in acme.later] == ["TELE2"]
    assert acme.label.startswith("ACMESHOP — approved for MTS, MegaFon; Tele2 from ")
    assert "00:00 Moscow time" in acme.label and "Beeline" not in acme.label
    assert megafon.pk not in {c.application.pk for c in choices}


def test_approved_but_not_started_is_listed_and_says_from_when():
    later = approved("MTS", start=moscow_midnight(2))
    [choice] = sender_name_choices()
    assert not choice.usable and choice.application == later
    assert choice.label.startswith("ACMESHOP — approved, not usable yet: MTS from ")
    assert usable_from(later).hour == 0 and usable_from(later).tzinfo is not None
    reason = application_unusable_reason(later)
    assert "approved but usable for sending only from" in reason and "00:00 Moscow time" in reason


def test_usable_from_the_start_of_the_moscow_day():
    start = moscow_midnight(0)
    application = approved("MTS", start=start)
    assert application_unusable_reason(application, now=start) == ""
    assert "only from" in application_unusable_reason(application, now=start - dt.timedelta(seconds=1))


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def provider_form(application):
    return {
        "code": "acme",
        "name": "Acme",
        "name_translations": "{}",
        "description_translations": "{}",
        "sender_name_application": application.pk,
        "sender_name": "",
        "registrations-TOTAL_FORMS": "0",
        "registrations-INITIAL_FORMS": "0",
    }


def test_the_provider_form_lists_each_name_once_with_its_brands(admin_client):
    mts = approved("MTS")
    approved("MEGAFON")
    approved("MTS", name="LATER", start=moscow_midnight(2))
    page = admin_client.get("/admin/providers/provider/add/").content.decode()
    assert page.count("ACMESHOP — approved for MTS, MegaFon") == 1
    assert "LATER — approved, not usable yet: MTS from" in page
    response = admin_client.post("/admin/providers/provider/add/", provider_form(mts))
    assert response.status_code == 302
    assert Provider.objects.get().sender_name == "ACMESHOP"


def test_the_provider_form_says_when_a_chosen_name_starts(admin_client):
    later = approved("MTS", start=moscow_midnight(2))
    response = admin_client.post("/admin/providers/provider/add/", provider_form(later))
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["sender_name_application"]
    assert "approved but usable for sending only from" in error and "00:00 Moscow time" in error
    assert not Provider.objects.exists()


def test_the_api_lists_the_choices_and_says_when(api_client):
    approved("MTS")
    approved("MEGAFON")
    later = approved("MTS", name="LATER", start=moscow_midnight(2))
    body = api_client.get("/api/sender-names/choices/").json()
    assert [(c["sender_name"], c["approved_brands"], c["usable"]) for c in body] == [
        ("ACMESHOP", ["MTS", "MEGAFON"], True),
        ("LATER", [], False),
    ]
    assert body[1]["approved_later"][0]["brand"] == "MTS" and body[1]["approved_later"][0]["usable_from"].endswith(
        "T00:00:00+03:00"
    )
    response = api_client.post(
        "/api/providers/", {"code": "acme", "name": "Acme", "sender_name_application": later.pk}, format="json"
    )
    assert response.status_code == 400 and "only from" in response.json()["sender_name_application"][0]
