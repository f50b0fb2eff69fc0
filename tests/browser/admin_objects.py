"""One object of every kind the admin shows, with Russian data where data may be Russian: the admin pages
of tests/browser/test_admin_russian.py then have something on every list and a page for each kind."""

import dataclasses
import datetime as dt
from unittest import mock

from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from tests.fixtures.documents import PDF_BYTES

# Latin words of the data below (a sender name, a user name, a browser's name) that are not English text.
DATA_WORDS = {
    "ACMESHOP",
    "admin",
    "Mozilla",
    "Chrome",
    "Safari",
    "AppleWebKit",
    "KHTML",
    "like",
    "Gecko",
    "Linux",
    "Windows",
    "NT",
    "Win",
    "x",
    "default",  # the default i-dgtl account's name (idgtl/services.py) in entries written before it was renamed
    "Viewer",
    "Operator",
}  # the default groups: stable English names, data (b24sms/roles.py)


@dataclasses.dataclass
class EveryKind:
    extra_pages: list


def make_every_kind_of_object(admin_user) -> EveryKind:
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )
    from rest_framework.authtoken.models import Token

    from audit.services import Action, action_record
    from idgtl.services import account_get_default
    from providers.models import (
        BitrixApplication,
        Installation,
        InstallationState,
        Message,
        MessageState,
        MessageStatusChange,
        Provider,
        ProviderRegistration,
        RegistrationState,
        StatusReport,
        StatusReportState,
        UnmatchedCallbackEvent,
    )
    from sendernames.models import SenderNameStatusChange, StatusReadability, SubmissionState
    from sendernames.services import application_create, group_create

    now = timezone.now()
    account = account_get_default()
    account.name = "Основной аккаунт"
    account.sender_names_key = "c2VuZGVyOm5hbWVzLWtleS0xMjM0"
    account.messages_key = "bWVzc2FnZXM6a2V5LTU2Nzg="
    account.save()

    application = BitrixApplication.objects.create(
        name="Приложение для портала", client_id="local.0001.acme", client_secret="client-secret-0001"
    )
    installation = Installation.objects.create(
        application=application,
        member_id="member0001",
        domain="acme.bitrix24.ru",
        client_endpoint="https://acme.bitrix24.ru/rest/",
        server_endpoint="https://oauth.bitrix.info/rest/",
        access_token="access-0001",
        refresh_token="refresh-0001",
        application_token="app-token-0001",
        access_token_expires_at=now + dt.timedelta(hours=1),
        scope="crm,messageservice",
        installed_by_user_id="1",
        installed_at=now,
        state=InstallationState.ACTIVE,
        bound_events="ONAPPUNINSTALL,ONAPPUPDATE",
        last_error="Битрикс24 не ответил вовремя на запрос обновления токена; повторим попытку через несколько минут",
    )

    date_from = timezone.localtime(now + dt.timedelta(days=3)).date()
    sender_name = application_create(
        account=account,
        channel_type="SMS",
        common_type="PROMO",
        brand="MTS",
        date_from=date_from,
        sender_name="ACMESHOP",
        counteragent_name="Общество с ограниченной ответственностью «Акме Торговый Дом»",
        counteragent_inn="7707083893",
        documents=[SimpleUploadedFile("устав.pdf", PDF_BYTES, content_type="application/pdf")],
        created_by=admin_user,
    )
    type(sender_name).objects.filter(pk=sender_name.pk).update(
        submission_state=SubmissionState.SUBMITTED,
        remote_id=101,
        status="PRE_REVIEW",
        fee="2000.00",
        submitted_at=now,
        status_checked_at=now,
        status_changed_at=now,
    )
    SenderNameStatusChange.objects.create(
        application=sender_name, previous_status="", status="PRE_REVIEW", cause="submission", comment="Заявка принята"
    )
    SenderNameStatusChange.objects.create(
        application=sender_name,
        previous_status="PRE_REVIEW",
        status="APPROVED",
        cause="manual",
        status_date=date_from,
        changed_by=admin_user,
        comment="Видно в кабинете i-dgtl",
    )
    with mock.patch("sendernames.tasks.submit_application.delay"):  # filed, not sent: no i-dgtl here
        group_create(
            account=account,
            channel_type="SMS",
            common_type="SERVICE",
            date_from=date_from,
            sender_name="ACMESHOP",
            counteragent_name="ООО «Акме»",
            counteragent_inn="7707083893",
            brands=["BEELINE", "TELE2"],
            documents=[],
            created_by=admin_user,
        )
    StatusReadability.objects.create(
        account=account,
        readable=False,
        unreadable_since=now,
        http_status=404,
        detail="Не найдено",
        checked_at=now,
        next_check_at=now + dt.timedelta(days=1),
    )

    provider = Provider.objects.create(
        code="acme_sms",
        name="Акме СМС",
        description="Рассылки магазина",
        sender_name="ACMESHOP",
        sender_name_application=sender_name,
    )
    ProviderRegistration.objects.create(
        provider=provider,
        installation=installation,
        state=RegistrationState.REGISTERED,
        registered_at=now,
        checked_at=now,
        repaired_at=now,
        repair_reason="drift",
        repair_count=2,
        last_error="Портал ответил ошибкой ERROR_CORE: провайдер с таким "
        "кодом уже существует, повторная регистрация не нужна",
    )

    message = Message.objects.create(
        installation=installation,
        provider=provider,
        message_id="m0001",
        module_id="crm",
        message_to="+7 900 123-45-67",
        destination="79001234567",
        text="Ваш заказ готов",
        sender_name="ACMESHOP",
        state=MessageState.DELIVERED,
        idgtl_message_uuid="6f1c2a34-0000-4000-8000-000000000001",
        idgtl_status="delivered",
        idgtl_status_at=now,
        send_attempts=1,
        sending_started_at=now,
        sent_at=now,
        final_at=now,
        author_user_id="1",
    )
    steps = [
        ("", MessageState.RECEIVED, "", "handler"),
        (MessageState.RECEIVED, MessageState.SENDING, "", "send"),
        (MessageState.SENDING, MessageState.SENT, "sent", "send"),
        (MessageState.SENT, MessageState.DELIVERED, "delivered", "callback"),
    ]
    for previous, state, idgtl_status, source in steps:  # details as providers/services/delivery.py writes them
        MessageStatusChange.objects.create(
            message=message,
            previous_state=previous,
            state=state,
            idgtl_status=idgtl_status,
            source=source,
            detail=f"статус i-dgtl: {idgtl_status}" if idgtl_status else "",
        )
    StatusReport.objects.create(
        message=message, status="delivered", state=StatusReportState.ACCEPTED, attempts=1, reported_at=now
    )
    UnmatchedCallbackEvent.objects.create(
        installation=installation,
        message_uuid="6f1c2a34-0000-4000-8000-000000000002",
        status="delivered",
        status_time=now,
        raw_event='{"status":"delivered"}',
    )

    Token.objects.create(user=admin_user)
    every = IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="Синхронизация статусов", task="sendernames.tasks.sync_statuses", interval=every)
    CrontabSchedule.objects.create(minute="0", hour="4", timezone="Europe/Moscow")
    SolarSchedule.objects.create(event="sunrise", latitude="55.75", longitude="37.61")
    ClockedSchedule.objects.create(clocked_time=now + dt.timedelta(days=1))
    agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    AccessAttempt.objects.create(
        username="admin",
        ip_address="192.0.2.1",
        user_agent=agent,
        path_info="/admin/login/",
        get_data="",
        post_data="username=admin",
        failures_since_start=2,
    )
    AccessLog.objects.create(username="admin", ip_address="192.0.2.1", user_agent=agent, path_info="/admin/login/")
    AccessFailureLog.objects.create(
        username="admin", ip_address="192.0.2.2", user_agent=agent, path_info="/admin/login/", locked_out=True
    )
    action_record(
        instance=provider,
        action=Action.REGISTER,
        result="acme_sms: регистрация поставлена в очередь",
        portals=[installation.domain],
        actor=admin_user,
    )

    for label in ("providers.Tariff", "providers.UsageDay"):  # work of other issues, when present
        try:
            apps.get_model(label)
        except LookupError:
            continue
    extra_pages = [
        reverse("admin:sendernames_set_status", args=[sender_name.pk]),
        reverse(
            "admin:sendernames_group_add_brand",
            args=[
                sender_name.group_id
                or type(sender_name).objects.exclude(group=None).values_list("group_id", flat=True).first()
            ],
        ),
        reverse("admin:password_change"),
    ]
    return EveryKind(extra_pages=extra_pages)
