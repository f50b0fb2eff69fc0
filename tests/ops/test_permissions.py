"""Staff is not everything: every API call and admin action needs its Django permission.

One test per role: a view-only staff user (group "Viewer") sees everything and changes or runs
nothing; an operator (group "Operator") registers providers, sends test SMS and submits
applications but cannot touch i-dgtl accounts, keys or Bitrix24 applications; a superuser can do
everything. Side effects that would leave the process (the portal check, the test SMS post to
our own HANDLER) are replaced by recorders; the rest runs for real (tasks are only enqueued on commit).
"""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import constants as message_levels
from django.contrib.messages import get_messages
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from b24sms.permissions import StaffModelPermissions
from b24sms.roles import OPERATOR, OPERATOR_PERMISSIONS, ROLE_APPS, VIEWER
from idgtl.models import IdgtlAccount
from idgtl.services import account_get_default
from providers.models import BitrixApplication, Provider, ProviderRegistration
from providers.services.test_sms import SmsTestResult
from sendernames.models import SenderNameApplication, SenderNameDocument, SubmissionState
from tests.ops.factories import make_installation, make_message, make_provider

pytestmark = pytest.mark.django_db

SENDER_NAMES_KEY = "sender-names-key-0001"


@pytest.fixture
def world():
    account = account_get_default()
    account.sender_names_key, account.messages_key = SENDER_NAMES_KEY, "messages-key-0001"
    account.save()
    spare = IdgtlAccount.objects.create(name="spare (no keys)")
    installation = make_installation(
        "acme.bitrix24.ru", access_token="access-token-0001", refresh_token="refresh-token-0001"
    )
    BitrixApplication.objects.filter(pk=installation.application_id).update(client_secret="client-secret-0001")
    provider = make_provider("acme_sms")
    message = make_message(installation=installation, provider=provider)
    application = SenderNameApplication.objects.create(
        account=account,
        common_type="SERVICE",
        brand="MTS",
        sender_name="MyShop",
        counteragent_name="Shop, LLC",
        counteragent_inn="7707083893",
        date_from=timezone.now() + timedelta(days=3),
    )
    document = SenderNameDocument(
        application=application, original_name="charter.pdf", size=8, content_type="application/pdf"
    )
    document.file.save("charter.pdf", ContentFile(b"%PDF-1.4"))  # saves the row too (MEDIA_ROOT is a tmp dir)
    return {
        "account": account,
        "spare": spare,
        "installation": installation,
        "provider": provider,
        "message": message,
        "application": application,
        "document": document,
        "bitrix_application": installation.application,
    }


@pytest.fixture
def calls(monkeypatch):
    """Recorders for the services that would reach a portal or our own HANDLER over HTTP."""
    recorded = []

    def check(*, provider, installations=None):
        recorded.append(("check", provider.code))
        return []

    def send_test_sms(*, provider, phone, text, installation_id=None):
        recorded.append(("test_sms", provider.code))
        message = make_message(installation=provider.messages.first().installation, provider=provider)
        return SmsTestResult(
            installation=message.installation,
            message_id=message.message_id,
            handler_status=200,
            handler_answer={},
            message=message,
            via="handler",
        )

    monkeypatch.setattr("providers.services.registration.provider_check", check)
    monkeypatch.setattr("providers.api.test_sms.provider_send_test_sms", send_test_sms)
    monkeypatch.setattr("providers.admin.test_sms.provider_send_test_sms", send_test_sms)
    return recorded


def make_user(django_user_model, role):
    superuser = role == "superuser"
    user = django_user_model.objects.create_user(
        username=role, password="role-pass-123456", is_staff=True, is_superuser=superuser
    )
    if role in (VIEWER, OPERATOR):
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def as_role(django_user_model, client):
    """(API client, admin client) logged in as a user of the role."""

    def login(role):
        user = make_user(django_user_model, role)
        api = APIClient()
        api.force_authenticate(user)
        client.force_login(user)
        client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
        return api, client

    return login


def api_writes(w):
    """Every API request that changes something or acts (method, path, body)."""
    provider, application = w["provider"], w["application"]
    return [
        ("post", "/api/providers/", {"code": "newone", "name": "New", "sender_name": "OUTSIDE"}),
        ("patch", f"/api/providers/{provider.pk}/", {"name": "Renamed"}),
        ("put", f"/api/providers/{provider.pk}/", {"code": "acme_sms", "name": "Renamed", "sender_name": "ACME"}),
        ("delete", f"/api/providers/{provider.pk}/", None),
        ("post", f"/api/providers/{provider.pk}/register/", {"installations": [w["installation"].pk]}),
        ("post", f"/api/providers/{provider.pk}/remove/", {}),
        ("post", f"/api/providers/{provider.pk}/check/", {}),
        ("post", f"/api/providers/{provider.pk}/test-sms/", {"phone": "+79001234567", "text": "Hi"}),
        (
            "post",
            "/api/sender-names/",
            {
                "common_type": "SERVICE",
                "brand": "MTS",
                "sender_name": "Other",
                "date_from": "2031-01-31",
                "counteragent_name": "X",
                "counteragent_inn": "7707083893",
            },
        ),
        ("post", f"/api/sender-names/{application.pk}/submit/", None),
        ("post", f"/api/sender-names/{application.pk}/refresh/", None),
        ("delete", f"/api/messages/{w['message'].pk}/", None),
        ("delete", f"/api/portals/{w['installation'].pk}/", None),
    ]


def api_reads(w):
    return [
        "/api/providers/",
        f"/api/providers/{w['provider'].pk}/",
        "/api/portals/",
        f"/api/portals/{w['installation'].pk}/",
        "/api/messages/",
        f"/api/messages/{w['message'].pk}/",
        "/api/sender-names/",
        f"/api/sender-names/{w['application'].pk}/",
    ]


def snapshot(w):
    """What an action would change."""
    provider = Provider.objects.filter(pk=w["provider"].pk).values("code", "name").first()
    return {
        "providers": list(Provider.objects.values_list("code", "name").order_by("code")),
        "provider": provider,
        "registrations": ProviderRegistration.objects.count(),
        "applications": list(SenderNameApplication.objects.values_list("pk", "submission_state").order_by("pk")),
        "accounts": list(IdgtlAccount.objects.values_list("name", "api_url", "sender_names_key", "messages_key")),
        "bitrix_applications": list(BitrixApplication.objects.values_list("name", "client_secret")),
    }


def post_action(client, changelist, action, pk, **extra):
    return client.post(reverse(changelist), {"action": action, ACTION_CHECKBOX_NAME: [pk], **extra})


def levels(response):
    return [m.level for m in get_messages(response.wsgi_request)]


def test_the_default_groups_and_their_permissions():
    view_all = set(
        Permission.objects.filter(content_type__app_label__in=ROLE_APPS, codename__startswith="view_").values_list(
            "content_type__app_label", "codename"
        )
    )
    assert ("providers", "view_message") in view_all and ("idgtl", "view_idgtlaccount") in view_all

    def names(group):
        return set(Group.objects.get(name=group).permissions.values_list("content_type__app_label", "codename"))

    assert names(VIEWER) == view_all
    assert names(OPERATOR) == view_all | {tuple(p.split(".")) for p in OPERATOR_PERMISSIONS}
    assert {"providers.register_provider", "providers.send_test_sms", "sendernames.submit_application"} <= set(
        OPERATOR_PERMISSIONS
    )
    for codename in ("change_idgtlaccount", "check_account_keys", "change_bitrixapplication", "change_installation"):
        assert not any(c == codename for _app, c in names(OPERATOR))
    assert not any(c.startswith("delete_") for _app, c in names(OPERATOR))


def test_staff_without_permissions_gets_nothing(as_role, world):
    api, admin = as_role("staff")
    for path in api_reads(world):
        assert api.get(path).status_code == 403, path
    assert (
        api.post(
            f"/api/providers/{world['provider'].pk}/test-sms/", {"phone": "+79001234567", "text": "x"}, format="json"
        ).status_code
        == 403
    )
    page = admin.get("/admin/")
    assert page.status_code == 200 and 'id="dash-today"' not in page.content.decode()
    document = world["document"]
    assert (
        admin.get(
            reverse("admin:sendernames_document_download", args=[document.application_id, document.pk])
        ).status_code
        == 403
    )


def test_viewer_sees_everything_and_changes_or_runs_nothing(as_role, world, calls):
    api, admin = as_role(VIEWER)
    for path in api_reads(world):
        assert api.get(path).status_code == 200, path
    before = snapshot(world)
    for method, path, body in api_writes(world):
        response = getattr(api, method)(path, body, format="json")
        assert response.status_code == 403, (method, path, response.content)
    assert snapshot(world) == before and calls == []

    # admin: every page shows, nothing can be saved, no action is offered or runs
    provider, application, account = world["provider"], world["application"], world["account"]
    assert 'id="dash-today"' in admin.get("/admin/").content.decode()
    page = admin.get(reverse("admin:providers_provider_changelist")).content.decode()
    for action in (
        "register_action",
        "update_action",
        "remove_action",
        "check_action",
        "send_test_sms",
        "delete_selected",
    ):
        assert f'value="{action}"' not in page
    installation = world["installation"]
    secrets = [
        SENDER_NAMES_KEY,
        "messages-key-0001",
        "client-secret-0001",
        "access-token-0001",
        "refresh-token-0001",
        installation.handler_secret,
    ]
    for name, obj in [
        ("providers_provider", provider),
        ("providers_installation", installation),
        ("providers_bitrixapplication", world["bitrix_application"]),
        ("idgtl_idgtlaccount", account),
        ("sendernames_sendernameapplication", application),
        ("providers_message", world["message"]),
    ]:
        for url in (reverse(f"admin:{name}_changelist"), reverse(f"admin:{name}_change", args=[obj.pk])):
            page = admin.get(url)
            assert page.status_code == 200, url
            text = page.content.decode()
            assert 'name="_save"' not in text and not [s for s in secrets if s in text], url  # keys stay masked
    assert (
        admin.post(
            reverse("admin:providers_provider_change", args=[provider.pk]),
            {"code": "hacked", "name": "Hacked", "sender_name": "ACME"},
        ).status_code
        == 403
    )
    assert (
        admin.post(
            reverse("admin:idgtl_idgtlaccount_change", args=[account.pk]),
            {
                "name": account.name,
                "api_url": "https://evil.example/api/v1",
                "sender_names_key": "stolen",
                "messages_key": "",
                "is_default": "on",
            },
        ).status_code
        == 403
    )
    assert admin.get(reverse("admin:providers_provider_add")).status_code == 403
    assert admin.get(reverse("admin:providers_provider_delete", args=[provider.pk])).status_code == 403

    providers = "admin:providers_provider_changelist"
    for action, extra in [
        ("register_action", {"apply": "1", "installations": [installation.pk]}),
        ("update_action", {}),
        ("remove_action", {"apply": "1", "installations": [installation.pk]}),
        ("check_action", {}),
        ("send_test_sms", {"send": "1", "phone": "+79001234567", "text": "Hi"}),
        ("delete_selected", {"post": "yes"}),
    ]:
        response = post_action(admin, providers, action, provider.pk, **extra)
        assert response.status_code == 200, action  # the changelist again: the action is not offered
        assert "admin/providers/provider/test_sms.html" not in [t.name for t in response.templates]
        assert message_levels.SUCCESS not in levels(response), action
    for action in ("submit_to_idgtl", "refresh_status", "delete_selected"):
        response = post_action(
            admin, "admin:sendernames_sendernameapplication_changelist", action, application.pk, post="yes"
        )
        assert response.status_code == 200 and message_levels.SUCCESS not in levels(response), action
    response = post_action(admin, "admin:idgtl_idgtlaccount_changelist", "check_keys", account.pk)
    assert response.status_code == 200 and not levels(response)
    assert snapshot(world) == before and calls == []

    # the documents may be read: viewing
    document = world["document"]
    download = reverse("admin:sendernames_document_download", args=[document.application_id, document.pk])
    assert admin.get(download).status_code == 200
    assert api.get(f"/api/sender-names/{document.application_id}/documents/{document.pk}/").status_code == 200


def test_operator_registers_sends_and_submits_but_cannot_touch_accounts_or_keys(as_role, world, calls):
    api, admin = as_role(OPERATOR)
    provider, installation, application, account = (
        world["provider"],
        world["installation"],
        world["application"],
        world["account"],
    )
    # API: the day-to-day actions
    assert (
        api.post(
            f"/api/providers/{provider.pk}/register/", {"installations": [installation.pk]}, format="json"
        ).status_code
        == 202
    )
    assert ProviderRegistration.objects.filter(provider=provider, installation=installation).exists()
    assert api.post(f"/api/providers/{provider.pk}/check/", {}, format="json").status_code == 200
    response = api.post(
        f"/api/providers/{provider.pk}/test-sms/", {"phone": "+79001234567", "text": "Hi"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert api.patch(f"/api/providers/{provider.pk}/", {"name": "Renamed"}, format="json").status_code == 200
    assert (
        api.post(
            "/api/providers/", {"code": "newone", "name": "New", "sender_name": "OUTSIDE"}, format="json"
        ).status_code
        == 201
    )
    assert api.post(f"/api/sender-names/{application.pk}/submit/").status_code == 202
    application.refresh_from_db()
    assert application.submission_state == SubmissionState.QUEUED
    assert calls == [("check", "acme_sms"), ("test_sms", "acme_sms")]
    # ... but no deleting
    assert api.delete(f"/api/providers/{provider.pk}/").status_code == 403
    assert Provider.objects.filter(pk=provider.pk).exists()

    # admin: the actions run
    providers = "admin:providers_provider_changelist"
    other = make_installation("beta.bitrix24.ru")
    response = post_action(admin, providers, "register_action", provider.pk, apply="1", installations=[other.pk])
    assert response.status_code == 302 and message_levels.SUCCESS in levels(response)
    assert ProviderRegistration.objects.filter(provider=provider, installation=other).exists()
    response = post_action(admin, providers, "send_test_sms", provider.pk, send="1", phone="+79001234567", text="Hi")
    assert response.status_code == 302 and "/admin/providers/message/" in response["Location"]
    assert calls[-1] == ("test_sms", "acme_sms")
    draft = SenderNameApplication.objects.create(
        account=account,
        common_type="SERVICE",
        brand="MEGAFON",
        sender_name="Other",
        counteragent_name="Shop, LLC",
        counteragent_inn="7707083893",
        date_from=timezone.now() + timedelta(days=3),
    )
    response = post_action(admin, "admin:sendernames_sendernameapplication_changelist", "submit_to_idgtl", draft.pk)
    assert message_levels.SUCCESS in levels(response)
    draft.refresh_from_db()
    assert draft.submission_state == SubmissionState.QUEUED

    # ... not the i-dgtl accounts and their keys, nor Bitrix24 applications, nor deleting
    before = snapshot(world)
    change_account = reverse("admin:idgtl_idgtlaccount_change", args=[account.pk])
    page = admin.get(change_account)
    assert page.status_code == 200 and SENDER_NAMES_KEY not in page.content.decode()
    assert (
        admin.post(
            change_account,
            {
                "name": account.name,
                "api_url": "https://evil.example/api/v1",
                "sender_names_key": "replaced",
                "messages_key": "",
                "is_default": "on",
            },
        ).status_code
        == 403
    )
    assert admin.get(reverse("admin:idgtl_idgtlaccount_add")).status_code == 403
    response = post_action(admin, "admin:idgtl_idgtlaccount_changelist", "check_keys", account.pk)
    assert response.status_code == 200 and not levels(response)
    bitrix_application = world["bitrix_application"]
    assert (
        admin.post(
            reverse("admin:providers_bitrixapplication_change", args=[bitrix_application.pk]),
            {"name": "x", "client_id": bitrix_application.client_id, "client_secret": "replaced"},
        ).status_code
        == 403
    )
    assert (
        admin.post(
            reverse("admin:providers_installation_change", args=[installation.pk]),
            {"account": world["spare"].pk, "default_region": "KZ"},
        ).status_code
        == 403
    )
    assert (
        admin.post(reverse("admin:providers_provider_delete", args=[provider.pk]), {"post": "yes"}).status_code == 403
    )
    assert snapshot(world) == before


def test_registering_on_portals_while_creating_needs_the_register_permission(django_user_model, world, calls):
    user = make_user(django_user_model, "maker")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_provider", "view_provider", "change_provider"])
    )
    api = APIClient()
    api.force_authenticate(user)
    body = {"code": "newone", "name": "New", "sender_name": "OUTSIDE", "installations": [world["installation"].pk]}
    assert api.post("/api/providers/", body, format="json").status_code == 403
    assert not Provider.objects.filter(code="newone").exists()
    provider = world["provider"]
    assert (
        api.patch(
            f"/api/providers/{provider.pk}/", {"installations": [world["installation"].pk]}, format="json"
        ).status_code
        == 403
    )
    assert not ProviderRegistration.objects.exists()
    body.pop("installations")
    assert api.post("/api/providers/", body, format="json").status_code == 201


def test_superuser_can_do_everything(as_role, world, calls):
    api, admin = as_role("superuser")
    provider, installation, account, spare = world["provider"], world["installation"], world["account"], world["spare"]
    providers = "admin:providers_provider_changelist"
    assert post_action(admin, providers, "check_action", provider.pk).status_code == 302
    assert (
        post_action(
            admin, providers, "register_action", provider.pk, apply="1", installations=[installation.pk]
        ).status_code
        == 302
    )
    assert (
        post_action(
            admin, providers, "send_test_sms", provider.pk, send="1", phone="+79001234567", text="Hi"
        ).status_code
        == 302
    )
    assert calls == [("check", "acme_sms"), ("test_sms", "acme_sms")]
    response = post_action(admin, "admin:idgtl_idgtlaccount_changelist", "check_keys", spare.pk)
    assert response.status_code == 302 and message_levels.WARNING in levels(response)  # "key is not set": it ran
    response = admin.post(
        reverse("admin:idgtl_idgtlaccount_change", args=[account.pk]),
        {
            "name": account.name,
            "api_url": account.api_url,
            "sender_names_key": "new-sender-names-key",
            "messages_key": "",
            "is_default": "on",
        },
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.sender_names_key == "new-sender-names-key"
    assert api.post(f"/api/sender-names/{world['application'].pk}/submit/").status_code == 202
    new = api.post("/api/providers/", {"code": "newone", "name": "New", "sender_name": "OUTSIDE"}, format="json")
    assert new.status_code == 201
    assert api.delete(f"/api/providers/{new.json()['id']}/").status_code == 204


def test_an_action_nobody_declared_permissions_for_is_refused(rf, django_user_model):
    user = make_user(django_user_model, "superuser")

    class View:
        action = "something_new"
        queryset = Provider.objects.all()

    request = rf.post("/")
    request.user = user
    assert StaffModelPermissions().has_permission(request, View()) is False
    View.action_permissions = {"something_new": ["providers.send_test_sms"]}
    assert StaffModelPermissions().has_permission(request, View()) is True
    user.is_staff = False
    assert StaffModelPermissions().has_permission(request, View()) is False
