"""Admin for i-dgtl accounts: keys shown masked only, a blank input keeps the saved key."""
import pytest
from django.urls import reverse

from idgtl.models import IdgtlAccount

SENDER_KEY = "c2VuZGVyOnNlY3JldC1rZXktMTIzNA=="
MESSAGES_KEY = "bWVzc2FnZXM6c2VjcmV0LTU2Nzg5"


@pytest.fixture
def account(db):
    return IdgtlAccount.objects.create(name="client-a", api_url="https://direct.example/api/v1",
                                       sender_names_key=SENDER_KEY, messages_key=MESSAGES_KEY)


def form_data(account, **overrides):
    data = {"name": account.name, "api_url": account.api_url, "sender_names_key": "", "messages_key": ""}
    data.update(overrides)
    return data


def test_change_form_and_list_show_keys_masked_only(admin_client, account):
    page = admin_client.get(reverse("admin:idgtl_idgtlaccount_change", args=[account.pk])).content.decode()
    assert SENDER_KEY not in page and MESSAGES_KEY not in page
    assert "••••NA==" in page and "••••Nzg5" in page
    listing = admin_client.get(reverse("admin:idgtl_idgtlaccount_changelist")).content.decode()
    assert SENDER_KEY not in listing and MESSAGES_KEY not in listing
    assert "••••NA==" in listing and "••••Nzg5" in listing and "https://direct.example/api/v1" in listing


def test_blank_keeps_the_saved_key_and_a_new_value_replaces_it(admin_client, account):
    url = reverse("admin:idgtl_idgtlaccount_change", args=[account.pk])
    response = admin_client.post(url, form_data(account, name="client-a2", messages_key="  bmV3OmtleS0wMDAx  "))
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.name == "client-a2"
    assert account.sender_names_key == SENDER_KEY  # left blank: kept
    assert account.messages_key == "bmV3OmtleS0wMDAx"  # replaced, surrounding spaces dropped


def test_new_account_and_one_default(admin_client, account):
    old_default = IdgtlAccount.objects.filter(is_default=True).first()
    response = admin_client.post(reverse("admin:idgtl_idgtlaccount_add"), {
        "name": "client-b", "api_url": "https://direct.example/api/v1", "sender_names_key": SENDER_KEY,
        "messages_key": "", "is_default": "on"})
    assert response.status_code == 302
    created = IdgtlAccount.objects.get(name="client-b")
    assert created.is_default and created.sender_names_key == SENDER_KEY and created.messages_key == ""
    assert list(IdgtlAccount.objects.filter(is_default=True)) == [created]
    if old_default:
        old_default.refresh_from_db()
        assert not old_default.is_default


def test_check_keys_action_reports_per_key(admin_client, idgtl):
    good = IdgtlAccount.objects.get(is_default=True)
    swapped = IdgtlAccount.objects.create(name="swapped", api_url=idgtl.url, sender_names_key=idgtl.messages_key,
                                          messages_key="")
    response = admin_client.post(reverse("admin:idgtl_idgtlaccount_changelist"), {
        "action": "check_keys", "_selected_action": [good.pk, swapped.pk]}, follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert f"{good}: sender-names key works." in texts and f"{good}: messages key works." in texts
    assert any(t.startswith("swapped: sender-names key failed:") and "Access Denied" in t for t in texts)
    assert "swapped: messages key is not set." in texts
    assert all(idgtl.messages_key not in t for t in texts)
