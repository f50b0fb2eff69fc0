"""The audit trail: who did what and when, for the operator actions of the admin and the API.

Edits are recorded by django-auditlog (secrets only as changed, never their values); the actions that
are not edits (submit, refresh, set status, register, remove, check, test SMS, check keys) by the
admin and the API. The actor is the request's user, an API token's included; the address is the
client's (X-Forwarded-For believed only from TRUSTED_PROXIES).
"""

import json
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.models import AuditLogEntry
from audit.services import action_record
from idgtl.models import IdgtlAccount
from providers.models import BitrixApplication, Provider, RegistrationState
from sendernames.models import SenderNameApplication, SubmissionState
from tests.sendernames.conftest import remote_record

pytestmark = pytest.mark.django_db
Action = AuditLogEntry.Action
OLD_KEY = "b2xkLXNlbmRlci1uYW1lcy1rZXktMTIzNDU2Nzg5"
NEW_KEY = "bmV3LXNlbmRlci1uYW1lcy1rZXktOTg3NjU0MzIx"


def entries(instance, action=None):
    found = AuditLogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(instance), object_id=instance.pk
    )
    return found.filter(action=action) if action is not None else found


def stored(entry) -> str:
    """Everything an entry stores, as text: a secret must appear nowhere in it."""
    return json.dumps(
        [entry.object_repr, entry.changes, entry.changes_text, entry.serialized_data, entry.additional_data],
        ensure_ascii=False,
        default=str,
    )


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_changing_a_key_in_the_admin_records_that_it_changed_never_its_value(admin_client, staff_user):
    account = IdgtlAccount.objects.create(name="Client A", sender_names_key=OLD_KEY)
    response = admin_client.post(
        f"/admin/idgtl/idgtlaccount/{account.pk}/change/",
        {"name": "Client A", "api_url": account.api_url, "sender_names_key": NEW_KEY, "messages_key": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    entry = entries(account, Action.UPDATE).get()
    assert entry.actor == staff_user and entry.remote_addr == "127.0.0.1"
    assert entry.changes["sender_names_key"] == ["••••", "••••"]  # changed, and nothing of either value
    assert "messages_key" not in entry.changes  # left blank: the saved one (none) is kept
    for entry in AuditLogEntry.objects.all():
        text = stored(entry)
        assert OLD_KEY[-6:] not in text and NEW_KEY[-6:] not in text and "bmV3" not in text


def test_a_bitrix24_application_is_recorded_with_its_secret_masked(admin_client, staff_user):
    response = admin_client.post(
        "/admin/providers/bitrixapplication/add/",
        {"name": "Market app", "client_id": "app.0001.market", "client_secret": "client-secret-value-0987"},
    )
    assert response.status_code == 302
    application = BitrixApplication.objects.get(client_id="app.0001.market")
    entry = entries(application, Action.CREATE).get()
    assert entry.actor == staff_user
    assert entry.changes["client_secret"] == ["", "••••"] and entry.changes["name"] == ["None", "Market app"]
    assert "0987" not in stored(entry)

    admin_client.post(f"/admin/providers/bitrixapplication/{application.pk}/delete/", {"post": "yes"})
    assert entries(application, Action.DELETE).get().actor == staff_user


def test_an_api_token_is_the_actor_of_an_api_edit(
    db, django_user_model, make_installation, approved_sender_name, portal, django_capture_on_commit_callbacks
):
    operator = django_user_model.objects.create_user(username="anna", password="x-pass-123456", is_staff=True)
    operator.groups.add(Group.objects.get(name="Operator"))
    api = APIClient(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
    installation = make_installation()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/providers/",
            {"code": "acme", "name": "Acme", "sender_name": "OUTSIDE", "installations": [installation.pk]},
            format="json",
        )
    assert response.status_code == 201, response.content
    provider = Provider.objects.get(code="acme")

    created = entries(provider, Action.CREATE).get()
    registered = entries(provider, Action.REGISTER).get()
    assert created.actor == operator and registered.actor == operator  # authenticated inside the view, by DRF
    assert registered.additional_data == {"portals": [installation.domain]}

    response = api.patch(f"/api/providers/{provider.pk}/", {"name": "Acme SMS"}, format="json")
    assert response.status_code == 200
    changed = entries(provider, Action.UPDATE).get()
    assert changed.actor == operator and changed.changes["name"] == ["Acme", "Acme SMS"]


def test_provider_actions_in_the_api_are_recorded(
    api_client, staff_user, make_installation, portal, django_capture_on_commit_callbacks
):
    installation = make_installation()
    provider = Provider.objects.create(code="acme", name="Acme", sender_name="OUTSIDE")
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.post(f"/api/providers/{provider.pk}/register/", {}, format="json").status_code == 202
    assert api_client.post(f"/api/providers/{provider.pk}/check/", {}, format="json").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.post(f"/api/providers/{provider.pk}/remove/", {}, format="json").status_code == 202

    done = list(entries(provider).exclude(action=Action.CREATE).order_by("pk").values_list("action", flat=True))
    assert done == [Action.REGISTER, Action.CHECK, Action.REMOVE]
    assert all(entry.actor == staff_user for entry in entries(provider).exclude(action=Action.CREATE))
    check = entries(provider, Action.CHECK).get()
    assert check.additional_data == {"portals": [installation.domain]} and installation.domain in check.changes_text


def test_provider_actions_in_the_admin_are_recorded(
    admin_client, staff_user, make_installation, portal, django_capture_on_commit_callbacks
):
    installation = make_installation()
    provider = Provider.objects.create(code="acme", name="Acme", sender_name="OUTSIDE")
    url = "/admin/providers/provider/"
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            url,
            {
                "action": "register_action",
                "_selected_action": [provider.pk],
                "apply": "1",
                "installations": [installation.pk],
            },
        )
    assert provider.registrations.get().state == RegistrationState.REGISTERED
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(url, {"action": "update_action", "_selected_action": [provider.pk]})
    admin_client.post(url, {"action": "check_action", "_selected_action": [provider.pk]})
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            url,
            {
                "action": "remove_action",
                "_selected_action": [provider.pk],
                "apply": "1",
                "installations": [installation.pk],
            },
        )

    done = list(entries(provider).exclude(action=Action.CREATE).order_by("pk").values_list("action", flat=True))
    assert done == [Action.REGISTER, Action.PUSH_UPDATE, Action.CHECK, Action.REMOVE]
    register = entries(provider, Action.REGISTER).get()
    assert register.actor == staff_user and register.additional_data == {"portals": [installation.domain]}
    assert "acme" in register.changes_text and installation.domain in register.changes_text


def test_a_test_sms_is_recorded_with_its_message(admin_client, api_client, staff_user):
    provider = Provider.objects.create(code="acme", name="Acme", sender_name="OUTSIDE")
    result = mock.Mock(
        message_id="test-1",
        handler_status=200,
        via="handler",
        installation=mock.Mock(pk=7, domain="portal.bitrix24.ru"),
        message=mock.Mock(pk=42, message_id="test-1", state="sent"),
    )
    with mock.patch("providers.api.test_sms.provider_send_test_sms", return_value=result):
        assert (
            api_client.post(
                f"/api/providers/{provider.pk}/test-sms/", {"phone": "+79001234567", "text": "Hi"}, format="json"
            ).status_code
            == 201
        )
    with mock.patch("providers.admin.test_sms.provider_send_test_sms", return_value=result):
        admin_client.post(
            "/admin/providers/provider/",
            {
                "action": "send_test_sms",
                "_selected_action": [provider.pk],
                "send": "1",
                "phone": "+79001234567",
                "text": "Hi",
            },
        )
    sent = list(entries(provider, Action.TEST_SMS))
    assert len(sent) == 2 and all(entry.actor == staff_user for entry in sent)
    assert all(
        entry.additional_data == {"portal": "portal.bitrix24.ru", "message_id": "test-1", "message": 42}
        for entry in sent
    )
    assert "+79001234567" not in stored(sent[0])  # the number stays with the message, not in the trail


def test_sender_name_actions_in_the_api_are_recorded(
    api_client, staff_user, make_application, monkeypatch, django_capture_on_commit_callbacks
):
    application = make_application()
    with mock.patch("sendernames.tasks.submit_application.delay"), django_capture_on_commit_callbacks(execute=True):
        assert api_client.post(f"/api/sender-names/{application.pk}/submit/").status_code == 202
    SenderNameApplication.objects.filter(pk=application.pk).update(
        submission_state=SubmissionState.SUBMITTED, remote_id=5, status="PRE_REVIEW"
    )
    monkeypatch.setattr(
        "sendernames.services.remote.client_for",
        lambda account: mock.Mock(
            get_sender_name=lambda remote_id: remote_record(application, remote_id=5, status="REVIEW")
        ),
    )
    assert api_client.post(f"/api/sender-names/{application.pk}/refresh/").status_code == 200
    response = api_client.post(
        f"/api/sender-names/{application.pk}/set-status/",
        {"status": "APPROVED", "date": str(application.created_at.date()), "note": "cabinet"},
        format="json",
    )
    assert response.status_code == 200, response.content

    submit, refresh, manual = (
        entries(application, action).get() for action in (Action.SUBMIT, Action.REFRESH_STATUS, Action.SET_STATUS)
    )
    assert submit.additional_data == {"queued": True} and submit.actor == staff_user
    assert refresh.additional_data == {"status": "REVIEW"}
    assert manual.additional_data["status"] == "APPROVED" and manual.additional_data["note"] == "cabinet"
    assert entries(application, Action.CREATE).get().actor is None  # filed by the fixture, outside a request


def test_sender_name_actions_in_the_admin_are_recorded(
    admin_client, staff_user, make_application, django_capture_on_commit_callbacks
):
    application = make_application()
    with mock.patch("sendernames.tasks.submit_application.delay"), django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/sendernames/sendernameapplication/",
            {"action": "submit_to_idgtl", "_selected_action": [application.pk]},
        )
    entry = entries(application, Action.SUBMIT).get()
    assert entry.actor == staff_user and entry.changes_text


def test_outside_a_request_nobody_is_the_actor(make_application):
    application = make_application()
    entry = action_record(instance=application, action=Action.SUBMIT, result="queued")
    assert entry.actor is None and entry.remote_addr is None


def test_the_address_is_the_forwarded_one_only_behind_a_trusted_proxy(admin_client, settings):
    account = IdgtlAccount.objects.create(name="Client A")
    url = f"/admin/idgtl/idgtlaccount/{account.pk}/change/"
    form = {"name": "Client B", "api_url": account.api_url, "sender_names_key": "", "messages_key": ""}

    admin_client.post(url, form, HTTP_X_FORWARDED_FOR="203.0.113.9")  # written by the client itself: ignored
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    admin_client.post(url, {**form, "name": "Client C"}, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7")

    first, second = entries(account, Action.UPDATE).order_by("pk")
    assert first.remote_addr == "127.0.0.1" and second.remote_addr == "198.51.100.7"


def test_the_audit_admin_filters_by_user_object_and_action(admin_client, staff_user, django_user_model):
    other = django_user_model.objects.create_superuser(username="boris", password="x-pass-123456")
    first = IdgtlAccount.objects.create(name="Client A")
    second = IdgtlAccount.objects.create(name="Client B")
    AuditLogEntry.objects.log_create(first, force_log=True, action=Action.CHECK_KEYS, actor=staff_user)
    AuditLogEntry.objects.log_create(second, force_log=True, action=Action.CHECK_KEYS, actor=other)
    url = "/admin/audit/auditlogentry/"
    account_type = ContentType.objects.get_for_model(IdgtlAccount).pk

    def shown(query):
        response = admin_client.get(url + query)
        assert response.status_code == 200
        return sorted(entry.object_repr for entry in response.context["cl"].result_list)

    assert shown(f"?actor={other.pk}") == ["Client B"]
    assert {"Client A", "Client B"} <= set(
        shown(f"?actor=none&object_type={account_type}")
    )  # created outside a request
    assert shown(f"?action__exact={Action.CHECK_KEYS}") == ["Client A", "Client B"]
    assert shown(f"?object_type={account_type}&object_id={first.pk}") == ["Client A", "Client A"]
    page = admin_client.get(url).content.decode()
    assert "checked the keys with i-dgtl" in page and "boris" in page
    detail = admin_client.get(f"{url}{entries(first, Action.CHECK_KEYS).get().pk}/change/")
    assert detail.status_code == 200


def test_the_audit_is_for_administrators_only(client, django_user_model):
    IdgtlAccount.objects.create(name="Client A")
    for role in ("Viewer", "Operator"):
        user = django_user_model.objects.create_user(username=role.lower(), password="x-pass-123456", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        assert client.get("/admin/audit/auditlogentry/").status_code == 403
    admin = django_user_model.objects.create_superuser(username="root", password="x-pass-123456")
    client.force_login(admin)
    entry = AuditLogEntry.objects.first()
    assert client.get("/admin/audit/auditlogentry/").status_code == 200
    assert client.get(f"/admin/audit/auditlogentry/{entry.pk}/delete/").status_code == 403  # nobody deletes it
    assert client.get("/admin/audit/auditlogentry/add/").status_code == 403


def test_bookkeeping_of_b24sms_does_not_flood_the_trail(make_installation):
    installation = make_installation()
    before = AuditLogEntry.objects.count()
    installation.access_token = "new-access-token-value"
    installation.refresh_token = "new-refresh-token-value"
    installation.save()
    installation.mark_needs_reinstall("invalid_grant")
    assert AuditLogEntry.objects.count() == before  # tokens and states are not operator settings
    assert "new-access-token-value" not in "".join(stored(entry) for entry in AuditLogEntry.objects.all())


def test_checking_keys_and_reading_the_balance_are_recorded(admin_client, staff_user):
    from idgtl.balance import Outcome

    account = IdgtlAccount.objects.create(name="Client A")  # no keys: the check says so without calling i-dgtl
    admin_client.post("/admin/idgtl/idgtlaccount/", {"action": "check_keys", "_selected_action": [account.pk]})
    with mock.patch("idgtl.admin.account_balance_poll", return_value=Outcome.ERROR):
        admin_client.post("/admin/idgtl/idgtlaccount/", {"action": "read_balance", "_selected_action": [account.pk]})
    check, balance = entries(account, Action.CHECK_KEYS).get(), entries(account, Action.READ_BALANCE).get()
    assert check.actor == staff_user and "is not set" in check.changes_text
    assert balance.actor == staff_user and "Client A" in balance.changes_text


def test_a_quota_change_through_the_api_is_recorded(api_client, staff_user, make_installation):
    installation = make_installation()
    response = api_client.patch(
        f"/api/portals/{installation.pk}/", {"quota_monthly_parts": 5000, "quota_warning_percent": 90}, format="json"
    )
    assert response.status_code == 200, response.content
    entry = entries(installation, Action.UPDATE).get()
    assert entry.actor == staff_user
    assert entry.changes == {"quota_monthly_parts": ["None", "5000"], "quota_warning_percent": ["80", "90"]}

    refused = api_client.patch(f"/api/portals/{installation.pk}/", {"quota_recipient_per_hour": -1}, format="json")
    assert refused.status_code == 400 and entries(installation, Action.UPDATE).count() == 1  # nothing changed

    api_client.patch(f"/api/portals/{installation.pk}/", {"quota_monthly_parts": None}, format="json")
    assert entries(installation, Action.UPDATE).order_by("pk").last().changes == {
        "quota_monthly_parts": ["5000", "None"]
    }
