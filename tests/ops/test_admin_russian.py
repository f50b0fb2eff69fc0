"""The admin reads as Russian: model names in the case and gender each sentence needs (b24sms/admin_site.py),
permissions by translated names, status codes as labels, times of a timeline to the second, dates as dates.
The browser test (tests/browser/test_admin_russian.py) opens every page; these check the sentences themselves."""

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.utils import timezone, translation

from b24sms.admin_site import NOUNS, NamedModelAdmin, gendered_message
from idgtl.models import IdgtlAccount
from providers.models import (
    BitrixApplication,
    Installation,
    Message,
    MessageState,
    MessageStatusChange,
    Provider,
    StatusReport,
    StatusReportState,
)
from sendernames.models import SenderNameApplication

pytestmark = pytest.mark.django_db
RU = {"HTTP_ACCEPT_LANGUAGE": "ru"}


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def h1(response) -> str:
    return re.search(r"<h1[^>]*>(.*?)</h1>", response.content.decode(), re.S).group(1).strip()


def messages_of(response) -> list[str]:
    return [re.sub(r"<[^>]+>", "", str(message)) for message in response.context["messages"]]


def test_every_model_in_the_admin_has_its_noun():
    missing = [model._meta.label_lower for model in admin.site._registry if model._meta.label_lower not in NOUNS]
    assert not missing, f"add to b24sms/admin_site.py NOUNS: {missing}"
    assert all(isinstance(model_admin, NamedModelAdmin) for model_admin in admin.site._registry.values())


def test_every_noun_has_its_russian_accusative():
    def accusatives(language):
        with translation.override(language):
            return {label: str(noun.accusative) for label, noun in NOUNS.items()}

    russian, english = accusatives("ru"), accusatives("en")
    untranslated = [
        label for label in NOUNS if russian[label] == english[label] and label != "django_celery_beat.crontabschedule"
    ]
    assert not untranslated


def test_titles_and_buttons_use_the_accusative(admin_client):
    response = admin_client.get("/admin/sendernames/sendernameapplication/", **RU)
    assert h1(response) == "Выберите заявку на имя отправителя для изменения"
    assert "Добавить заявку на имя отправителя" in response.content.decode()
    response = admin_client.get("/admin/sendernames/sendernameapplication/add/", **RU)
    assert h1(response) == "Добавить заявку на имя отправителя"
    assert "&rsaquo; Добавить заявку на имя отправителя" in response.content.decode()  # the breadcrumb
    assert h1(admin_client.get("/admin/providers/provider/add/", **RU)) == "Добавить провайдера"
    assert h1(admin_client.get("/admin/auth/user/", **RU)) == "Выберите пользователя для изменения"
    assert h1(admin_client.get("/admin/providers/provider/add/")) == "Add provider"  # English as Django says it


def test_a_submitted_application_is_viewed_not_changed(admin_client, staff_user):
    from idgtl.services import account_get_default

    application = SenderNameApplication.objects.create(
        account=account_get_default(),
        common_type="SERVICE",
        brand="MTS",
        sender_name="ACMESHOP",
        counteragent_name="ООО Акме",
        counteragent_inn="7707083893",
        status="PRE_REVIEW",
        date_from=timezone.now() + timedelta(days=2),
        submission_state="submitted",
        remote_id=101,
    )
    application.history.create(previous_status="", status="PRE_REVIEW", cause="submission")
    response = admin_client.get(f"/admin/sendernames/sendernameapplication/{application.pk}/change/", **RU)
    page = response.content.decode()
    assert h1(response) == "Просмотреть заявку на имя отправителя"
    assert "PRE_REVIEW" not in page.replace('data-status="PRE_REVIEW"', "")  # the label only
    assert "Предварительная проверка" in page or "Pre-review" not in page
    start = timezone.localtime(application.date_from).date()
    shown = re.search(r"Дата начала:</label>\s*<div class=\"readonly\">([^<]*)</div>", page).group(1)
    assert shown.startswith(f"{start.day} ") and shown.endswith(f"{start.year} г.") and ":" not in shown  # no "0:00"


def test_messages_after_saving_agree_with_the_gender(admin_client):
    response = admin_client.post(
        "/admin/providers/bitrixapplication/add/",
        {"name": "Маркет", "client_id": "app.0001.market", "client_secret": "secret-value-0001"},
        follow=True,
        **RU,
    )
    assert messages_of(response) == ["Приложение Битрикс24 «Маркет» было успешно добавлено."]
    application = BitrixApplication.objects.get()

    response = admin_client.post(
        f"/admin/providers/bitrixapplication/{application.pk}/change/",
        {"name": "Маркет 2", "client_id": "app.0001.market", "client_secret": "", "_continue": "1"},
        follow=True,
        **RU,
    )
    assert messages_of(response) == [
        "Приложение Битрикс24 «Маркет 2» было успешно изменено. Ниже его можно изменить снова."
    ]

    account = IdgtlAccount.objects.create(name="Клиент")
    response = admin_client.post(
        f"/admin/idgtl/idgtlaccount/{account.pk}/change/",
        {
            "name": "Клиент А",
            "api_url": account.api_url,
            "sender_names_key": "",
            "messages_key": "",
            "_addanother": "1",
        },
        follow=True,
        **RU,
    )
    assert messages_of(response) == [
        "Аккаунт i-dgtl «Клиент А» был успешно изменён. Ниже можно добавить ещё аккаунт i-dgtl."
    ]

    page = admin_client.get(f"/admin/providers/bitrixapplication/{application.pk}/delete/", **RU).content.decode()
    assert "удалить приложение Битрикс24" in page
    response = admin_client.post(
        f"/admin/providers/bitrixapplication/{application.pk}/delete/", {"post": "yes"}, follow=True, **RU
    )
    assert messages_of(response) == ["Приложение Битрикс24 «Маркет 2» было успешно удалено."]


def test_english_messages_stay_django_s(admin_client):
    response = admin_client.post(
        "/admin/providers/bitrixapplication/add/",
        {"name": "Market", "client_id": "app.0001.market", "client_secret": "secret-value-0001"},
        follow=True,
    )
    assert messages_of(response) == ["The Bitrix24 application “Market” was added successfully."]


def test_other_messages_are_left_as_they_are():
    with translation.override("ru"):
        opts = SenderNameApplication._meta
        assert gendered_message("Подано: 3 оператора.", opts) == "Подано: 3 оператора."
        django_s = "заявка на имя отправителя “X” был успешно добавлен."  # Django's Russian, matched as such
        assert gendered_message(django_s.replace("“X”", "“X“").replace("заявка", "Заявка"), opts) != ""


def test_the_delete_action_of_persons_uses_the_animate_accusative(admin_client):
    BitrixApplication.objects.create(name="Маркет", client_id="app.0001.market", client_secret="s")
    page = admin_client.get("/admin/auth/user/", **RU).content.decode()
    assert "Удалить выбранных пользователей" in page
    assert (
        "Удалить выбранные приложения Битрикс24"
        in admin_client.get("/admin/providers/bitrixapplication/", **RU).content.decode()
    )


def test_permissions_are_shown_by_translated_names(admin_client):
    group = Group.objects.get(name="Operator")
    page = admin_client.get(f"/admin/auth/group/{group.pk}/change/", **RU).content.decode()
    assert "SMS-провайдеры Битрикс24 | Провайдер | добавление" in page
    assert "Can add" not in page and "Can register providers" not in page


def test_timeline_rows_are_named_labelled_and_to_the_second(admin_client):
    from providers.admin.messages import MessageStatusChangeInline  # noqa: F401  (the inline under test)

    installation = Installation.objects.create(
        application=BitrixApplication.objects.create(name="A", client_id="a.1", client_secret="s"),
        member_id="m1",
        domain="acme.bitrix24.ru",
        client_endpoint="https://acme.bitrix24.ru/rest/",
    )
    provider = Provider.objects.create(code="acme", name="Акме", sender_name="ACMESHOP")
    message = Message.objects.create(
        installation=installation,
        provider=provider,
        message_id="m1",
        module_id="crm",
        message_to="+79001234567",
        text="Привет",
        sender_name="ACMESHOP",
        state=MessageState.DELIVERED,
        idgtl_status="delivered",
    )
    change = MessageStatusChange.objects.create(
        message=message,
        previous_state=MessageState.SENT,
        state=MessageState.DELIVERED,
        idgtl_status="delivered",
        source="callback",
    )
    report = StatusReport.objects.create(message=message, status="delivered", state=StatusReportState.ACCEPTED)
    with translation.override("ru"):
        assert str(change) == "Отправлено → Доставлено"
        assert str(report) == "Доставлено: Принято Битрикс24"
    page = admin_client.get(f"/admin/providers/message/{message.pk}/change/", **RU).content.decode()
    assert "object (" not in page and "уведомление от i-dgtl" in page and "карточка CRM" in page
    when = timezone.localtime(change.created_at)
    assert f"{when.hour}:{when.minute:02d}:{when.second:02d}" in page  # to the second
    assert "(delivered)" not in page and ">delivered<" not in page
