"""Admin for i-dgtl accounts: keys shown masked only, a blank input keeps the saved key."""

import pytest
from django.urls import reverse

from idgtl.models import IdgtlAccount

SENDER_KEY = "c2VuZGVyOnNlY3JldC1rZXktMTIzNA=="
MESSAGES_KEY = "bWVzc2FnZXM6c2VjcmV0LTU2Nzg5"


@pytest.fixture
def account(db):
    return IdgtlAccount.objects.create(
        name="client-a", api_url="https://direct.example/api/v1", sender_names_key=SENDER_KEY, messages_key=MESSAGES_KEY
    )


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
    response = admin_client.post(
        reverse("admin:idgtl_idgtlaccount_add"),
        {
            "name": "client-b",
            "api_url": "https://direct.example/api/v1",
            "sender_names_key": SENDER_KEY,
            "messages_key": "",
            "is_default": "on",
        },
    )
    assert response.status_code == 302
    created = IdgtlAccount.objects.get(name="client-b")
    assert created.is_default and created.sender_names_key == SENDER_KEY and created.messages_key == ""
    assert list(IdgtlAccount.objects.filter(is_default=True)) == [created]
    if old_default:
        old_default.refresh_from_db()
        assert not old_default.is_default


def test_check_keys_action_reports_per_key(admin_client, idgtl):
    good = IdgtlAccount.objects.get(is_default=True)
    swapped = IdgtlAccount.objects.create(
        name="swapped", api_url=idgtl.url, sender_names_key=idgtl.messages_key, messages_key=""
    )
    response = admin_client.post(
        reverse("admin:idgtl_idgtlaccount_changelist"),
        {"action": "check_keys", "_selected_action": [good.pk, swapped.pk]},
        follow=True,
    )
    texts = [str(m) for m in response.context["messages"]]
    assert f"{good}: sender-names key works." in texts and f"{good}: messages key works." in texts
    assert any(t.startswith("swapped: sender-names key failed:") and "Access Denied" in t for t in texts)
    assert "swapped: messages key is not set." in texts
    assert all(idgtl.messages_key not in t for t in texts)


# --- a changed API URL asks for the keys again (else "Check keys" would hand them to the new host) ---------


@pytest.fixture
def live_account(idgtl):
    return IdgtlAccount.objects.create(
        name="client-live", api_url=idgtl.url, sender_names_key=idgtl.sender_names_key, messages_key=idgtl.messages_key
    )


def check_keys(admin_client, account):
    response = admin_client.post(
        reverse("admin:idgtl_idgtlaccount_changelist"),
        {"action": "check_keys", "_selected_action": [account.pk]},
        follow=True,
    )
    return [str(m) for m in response.context["messages"]]


def test_a_new_api_url_without_the_keys_is_refused_and_the_keys_never_reach_it(
    admin_client, idgtl, live_account, server
):
    """The attacker (staff who may edit accounts, not read keys) points the account at their host."""
    url = reverse("admin:idgtl_idgtlaccount_change", args=[live_account.pk])
    response = admin_client.post(url, form_data(live_account, name="renamed", api_url=server.url))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"sender_names_key", "messages_key"}
    assert "The API URL changed: enter this key again" in errors["messages_key"][0]
    saved = IdgtlAccount.objects.get(pk=live_account.pk)
    assert (saved.name, saved.api_url) == ("client-live", idgtl.url)  # nothing saved
    assert (saved.sender_names_key, saved.messages_key) == (idgtl.sender_names_key, idgtl.messages_key)

    texts = check_keys(admin_client, saved)
    assert "client-live: sender-names key works." in texts and "client-live: messages key works." in texts
    assert server.received == []  # no HTTP to the new host, with or without keys


def test_entering_one_key_again_is_not_enough(admin_client, idgtl, live_account, server):
    url = reverse("admin:idgtl_idgtlaccount_change", args=[live_account.pk])
    response = admin_client.post(url, form_data(live_account, api_url=server.url, messages_key="bmV3OmtleS0wMDAx"))

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"sender_names_key"}
    live_account.refresh_from_db()
    assert live_account.api_url == idgtl.url and live_account.messages_key == idgtl.messages_key


def test_a_new_api_url_with_the_keys_entered_again_is_saved(admin_client, live_account, server):
    url = reverse("admin:idgtl_idgtlaccount_change", args=[live_account.pk])
    response = admin_client.post(
        url,
        form_data(
            live_account, api_url=server.url, sender_names_key="bmV3OnNlbmRlcnM=", messages_key="bmV3Om1lc3NhZ2Vz"
        ),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    live_account.refresh_from_db()
    assert live_account.api_url == server.url
    assert (live_account.sender_names_key, live_account.messages_key) == ("bmV3OnNlbmRlcnM=", "bmV3Om1lc3NhZ2Vz")


def test_only_saved_keys_are_asked_for_and_the_same_url_asks_for_none(admin_client, account, server):
    account.messages_key = ""
    account.save()
    url = reverse("admin:idgtl_idgtlaccount_change", args=[account.pk])

    same = admin_client.post(url, form_data(account, api_url=account.api_url + "/", name="client-a2"))
    assert same.status_code == 302  # a trailing slash is the same address: the saved key is kept
    account.refresh_from_db()
    assert account.name == "client-a2" and account.sender_names_key == SENDER_KEY

    moved = admin_client.post(url, form_data(account, api_url=server.url, sender_names_key="bmV3OnNlbmRlcnM="))
    assert moved.status_code == 302  # no messages key saved: nothing to re-enter for it
    account.refresh_from_db()
    assert account.api_url == server.url and account.sender_names_key == "bmV3OnNlbmRlcnM="


def test_the_rule_is_one_service_naming_each_missing_key(account):
    from django.core.exceptions import ValidationError

    from idgtl.services import account_url_change_check

    with pytest.raises(ValidationError) as refused:
        account_url_change_check(
            account=account,
            api_url="https://evil.example/api/v1",
            entered_keys={"sender_names_key": " ", "messages_key": ""},
        )
    assert set(refused.value.message_dict) == {"sender_names_key", "messages_key"}
    account_url_change_check(
        account=account,
        api_url="https://evil.example/api/v1",
        entered_keys={"sender_names_key": "a2V5OjE=", "messages_key": "a2V5OjI="},
    )
    account_url_change_check(account=IdgtlAccount(name="new"), api_url="https://evil.example/api/v1", entered_keys={})
