"""One name for several operators: per-brand validation, filing once per brand, the matrix (service, API, admin)."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from idgtl.contract import Brand
from sendernames import validation
from sendernames.models import SenderNameApplication, SenderNameDocument, SenderNameGroup, SubmissionState
from sendernames.services import application_submit_perform, group_add_brand, group_create
from tests.sendernames.conftest import application_fields, pdf, png, remote_record

URL = "/api/sender-name-groups/"
FOUR = ["MTS", "MEGAFON", "BEELINE", "TELE2"]


def group_fields(**overrides):
    fields = application_fields(**overrides)
    fields.pop("brand")
    return fields


def api_payload(**overrides):
    data = group_fields(**overrides)
    data["date_from"] = str(data["date_from"])
    return data


def nothing_stored():
    return not (
        SenderNameGroup.objects.exists()
        or SenderNameApplication.objects.exists()
        or SenderNameDocument.objects.exists()
    )


@pytest.fixture
def enqueued(monkeypatch):
    """Submit tasks enqueued on commit (recorded, not run)."""
    calls = []
    monkeypatch.setattr(
        "sendernames.tasks.submit_application.delay", lambda application_id: calls.append(application_id)
    )
    return calls


# --- per-brand validation ------------------------------------------------------------------------
def test_megafon_and_yota_refuse_what_the_others_allow_and_are_named():
    with pytest.raises(ValidationError) as info:
        validation.validate_brands_accept("ACME SHOP", ["MTS", "MEGAFON", "BEELINE", "YOTA"])
    [message] = info.value.messages
    assert "MegaFon, Yota" in message and "MTS" not in message and "Beeline" not in message
    assert "space" in message and "Latin letters, digits and . * ! -" in message
    validation.validate_brands_accept("ACME SHOP", ["MTS", "BEELINE", "TELE2", "MOTIV", "OTHER"])


def test_each_reason_is_one_message_naming_its_brands():
    with pytest.raises(ValidationError) as info:
        validation.validate_brands_accept("Shop+1!", ["MTS", "MEGAFON"])
    messages = info.value.messages
    assert len(messages) == 2
    assert any("by MegaFon" in m and "“+”" in m for m in messages)
    assert any("by MTS" in m and "“!”" in m for m in messages)


@pytest.mark.parametrize(
    "name, refused", [("ACME.SHOP*1", []), ("AC-ME!", []), ("AC ME", [" "]), ("A+B+C", ["+"]), ("Маг", ["М", "а", "г"])]
)
def test_refused_characters_for_megafon(name, refused):
    assert validation.refused_characters(name, "MEGAFON") == refused


@pytest.mark.parametrize(
    "brands, message",
    [
        ([], "Choose at least one operator."),
        (None, "Choose at least one operator."),
        ([""], "Choose at least one operator."),
        (["MTS", "NEW_BRAND"], "Unknown operator “NEW_BRAND”"),
    ],
)
def test_brands_bad_input(brands, message):
    with pytest.raises(ValidationError) as info:
        validation.validate_brands(brands)
    assert message in info.value.messages[0]


def test_brands_are_deduplicated_in_the_contracts_order():
    assert validation.validate_brands(["TELE2", "MTS", "MTS"]) == ["MTS", "TELE2"]
    assert validation.validate_brands("MEGAFON, MTS") == ["MTS", "MEGAFON"]


def test_group_validate_reports_every_field_at_once(account):
    with pytest.raises(ValidationError) as info:
        validation.group_validate(
            account_id=account.pk,
            brands=["MTS", "MEGAFON"],
            document_count=0,
            **group_fields(
                sender_name="MY SHOP", counteragent_inn="123", date_from=dt.date(2020, 1, 1), common_type="PROMO"
            ),
        )
    errors = info.value.message_dict
    assert set(errors) == {"sender_name", "counteragent_inn", "date_from", "documents"}
    assert "MegaFon" in errors["sender_name"][0] and "MTS" not in errors["sender_name"][0]


def test_group_validate_names_the_brand_already_filed(account, make_application):
    make_application(brand="BEELINE")
    with pytest.raises(ValidationError) as info:
        validation.group_validate(account_id=account.pk, brands=FOUR, document_count=0, **group_fields())
    [message] = info.value.message_dict["sender_name"]
    assert "for Beeline is already filed" in message


# --- filing ------------------------------------------------------------------------------------
def test_one_application_per_brand_with_the_same_fields_and_documents(
    account, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        filing = group_create(
            brands=["TELE2", "MTS", "MEGAFON", "BEELINE"],
            account=account,
            documents=[pdf("a.pdf"), png("b.png")],
            **group_fields(common_type="PROMO"),
        )
    assert filing.created
    group = filing.group
    applications = list(group.applications.order_by("pk"))
    assert [a.brand for a in applications] == FOUR
    assert {(a.sender_name, a.common_type, a.counteragent_inn, a.date_from) for a in applications} == {
        (group.sender_name, "PROMO", group.counteragent_inn, group.date_from)
    }
    assert all(a.submission_state == SubmissionState.QUEUED for a in applications)
    assert sorted(enqueued) == [a.pk for a in applications]
    for application in applications:
        assert [(d.original_name, d.file.read()[:4]) for d in application.documents.all()] == [
            ("a.pdf", b"%PDF"),
            ("b.png", b"\x89PNG"),
        ]
    assert len({d.file.name for d in SenderNameDocument.objects.all()}) == 8  # each application owns its copy


def test_the_same_request_again_returns_the_group_and_files_nothing(
    account, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = group_create(brands=FOUR, account=account, **group_fields())
        second = group_create(brands=list(reversed(FOUR)), account=account, **group_fields())
    assert not second.created and second.group == first.group and "nothing was sent again" in second.message
    assert SenderNameApplication.objects.count() == 4 and len(enqueued) == 4


def test_a_different_request_for_a_filed_brand_is_a_duplicate(account, enqueued):
    group_create(brands=["MTS"], account=account, **group_fields())
    with pytest.raises(ValidationError) as info:
        group_create(brands=["MTS", "TELE2"], account=account, **group_fields(counteragent_name="Other, LLC"))
    assert "for MTS is already filed" in info.value.message_dict["sender_name"][0]
    assert SenderNameApplication.objects.count() == 1


@pytest.mark.parametrize(
    "overrides, brands, field",
    [
        ({}, [], "brands"),
        ({}, ["MTS", "NEW_BRAND"], "brands"),
        ({"sender_name": "ACME SHOP"}, ["MTS", "MEGAFON"], "sender_name"),
        ({"sender_name": "AB"}, ["MTS"], "sender_name"),
        ({"counteragent_inn": "7707083890"}, ["MTS"], "counteragent_inn"),
        ({"common_type": "PROMO"}, ["MTS"], "documents"),
    ],
)
def test_bad_input_stores_and_queues_nothing(account, enqueued, overrides, brands, field):
    with pytest.raises(ValidationError) as info:
        group_create(brands=brands, account=account, **group_fields(**overrides))
    assert field in info.value.message_dict
    assert nothing_stored() and enqueued == []


def test_an_account_without_a_key_files_nothing(account, enqueued):
    account.sender_names_key = ""
    account.save()
    with pytest.raises(ValidationError) as info:
        group_create(brands=FOUR, account=account, **group_fields())
    assert "configuration problem" in info.value.message_dict["account"][0]
    assert nothing_stored()


def test_a_failure_midway_leaves_no_rows_and_no_files(account, enqueued, monkeypatch, settings):
    from sendernames.services import groups

    calls = {"n": 0}
    original = groups.queue_submission

    def fail_on_third(application):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        original(application)

    monkeypatch.setattr(groups, "queue_submission", fail_on_third)
    with pytest.raises(RuntimeError):
        group_create(brands=FOUR, account=account, documents=[pdf()], **group_fields(common_type="PROMO"))
    assert nothing_stored() and enqueued == []
    media = settings.MEDIA_ROOT
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]


def test_add_a_brand_files_just_that_one_once(account, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        group = group_create(
            brands=["MTS"], account=account, documents=[pdf()], **group_fields(common_type="PROMO")
        ).group
        added = group_add_brand(group_id=group.pk, brand="TELE2")
        again = group_add_brand(group_id=group.pk, brand="TELE2")
    assert added.filed and not again.filed and again.application == added.application
    assert "already in this group" in again.message
    assert added.application.documents.get().original_name == "charter.pdf"
    assert added.application.date_from == group.date_from
    assert enqueued == [group.applications.get(brand="MTS").pk, added.application.pk]


def test_add_a_brand_moves_a_passed_start_date_to_tomorrow(account, enqueued):
    group = group_create(brands=["MTS"], account=account, **group_fields()).group
    SenderNameGroup.objects.filter(pk=group.pk).update(date_from=timezone.now() - dt.timedelta(days=3))
    application = group_add_brand(group_id=group.pk, brand="BEELINE").application
    assert application.date_from == validation.earliest_date_from()


@pytest.mark.parametrize("brand, text", [("NEW_BRAND", "Unknown operator"), ("MEGAFON", "refused by MegaFon")])
def test_add_a_brand_that_refuses_files_nothing(account, enqueued, brand, text):
    group = group_create(brands=["MTS"], account=account, **group_fields(sender_name="MY SHOP")).group
    with pytest.raises(ValidationError) as info:
        group_add_brand(group_id=group.pk, brand=brand)
    assert text in " ".join(info.value.message_dict["brand"])
    assert group.applications.count() == 1


def test_a_rejected_brand_can_be_filed_again(account, enqueued):
    group = group_create(brands=["MTS"], account=account, **group_fields()).group
    group.applications.update(status="REJECTED", submission_state=SubmissionState.SUBMITTED, remote_id=5)
    again = group_add_brand(group_id=group.pk, brand="MTS")
    assert again.filed and group.applications.count() == 2
    from sendernames.selectors import group_matrix

    [row] = group_matrix(group)
    assert row.application == again.application  # the matrix shows the latest


# --- API ------------------------------------------------------------------------------------------
@pytest.fixture
def api(api_client, account):
    return api_client


def test_api_create_retrieve_and_the_matrix(api, enqueued, django_capture_on_commit_callbacks, monkeypatch):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            URL, {**api_payload(common_type="PROMO"), "brands": FOUR, "file1": pdf()}, format="multipart"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["brands"] == FOUR and len(body["applications"]) == 4
    assert [row["brand"] for row in body["matrix"]] == FOUR
    row = body["matrix"][0]
    assert set(row) >= {
        "brand",
        "brand_label",
        "application",
        "status",
        "submission_state",
        "fee",
        "remote_id",
        "date_from",
        "usable_from",
        "last_change",
        "status_manual",
        "status_readable",
    }
    assert row["submission_state"] == "queued" and row["usable_from"].endswith("T00:00:00+03:00")

    # a worker submits MTS: the matrix shows its i-dgtl id, status and fee
    class Client:
        def create_sender_name(self, body, files):
            return remote_record(SenderNameApplication.objects.get(pk=row["application"]), remote_id=77, fee=2000)

    application_submit_perform(application_id=row["application"], client=Client())
    detail = api.get(f"{URL}{body['id']}/").json()
    mts = detail["matrix"][0]
    assert (mts["status"], mts["remote_id"], mts["fee"], mts["status_label"]) == (
        "PRE_REVIEW",
        77,
        "2000.00",
        "Pre-review",
    )
    assert detail["applications"][0]["history"][0]["status"] == "PRE_REVIEW"
    assert api.get(URL, {"sender_name": "myshop"}).json()["count"] == 1


def test_api_double_submit_answers_200_with_the_same_group(api, enqueued):
    first = api.post(URL, {**api_payload(), "brands": FOUR}, format="json")
    second = api.post(URL, {**api_payload(), "brands": FOUR}, format="json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and SenderNameApplication.objects.count() == 4


def test_api_all_brands(api, enqueued):
    response = api.post(URL, {**api_payload(sender_name="MYSHOP"), "all_brands": True}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["brands"] == list(Brand.values)


@pytest.mark.parametrize(
    "data, field, text",
    [
        ({}, "brands", "Choose at least one operator."),
        ({"brands": []}, "brands", "Choose at least one operator."),
        ({"brands": ["MTS", "NEW_BRAND"]}, "brands", "Unknown operator “NEW_BRAND”"),
        ({"brands": "MTS"}, "brands", "Expected a list"),
        ({"brands": ["MTS", "MEGAFON", "YOTA"], "sender_name": "ACME SHOP"}, "sender_name", "refused by MegaFon, Yota"),
        ({"brands": ["MTS"], "date_from": "2020-01-01"}, "date_from", "no earlier than the next day"),
    ],
)
def test_api_bad_input_is_400_naming_the_field_and_files_nothing(api, enqueued, data, field, text):
    response = api.post(URL, {**api_payload(), **data}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body and text in " ".join(body[field]), body
    assert all(isinstance(messages, list) and all(isinstance(m, str) for m in messages) for messages in body.values())
    assert nothing_stored() and enqueued == []


def test_api_multipart_brands_repeated_or_comma_separated(api, enqueued):
    response = api.post(URL, {**api_payload(), "brands": ["MTS", "TELE2"]}, format="multipart")
    assert response.status_code == 201 and response.json()["brands"] == ["MTS", "TELE2"]
    response = api.post(URL, {**api_payload(sender_name="Other"), "brands": "MEGAFON,BEELINE"}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["brands"] == ["MEGAFON", "BEELINE"]


def test_api_add_brand(api, enqueued):
    group_id = api.post(URL, {**api_payload(), "brands": ["MTS"]}, format="json").json()["id"]
    response = api.post(f"{URL}{group_id}/add-brand/", {"brand": "BEELINE"}, format="json")
    assert response.status_code == 201 and response.json()["group"]["brands"] == ["MTS", "BEELINE"]
    assert api.post(f"{URL}{group_id}/add-brand/", {"brand": "BEELINE"}, format="json").status_code == 200
    bad = api.post(f"{URL}{group_id}/add-brand/", {"brand": "NEW_BRAND"}, format="json")
    assert bad.status_code == 400 and "brand" in bad.json()
    assert api.post(f"{URL}{group_id}/add-brand/", {}, format="json").json() == {"brand": ["Choose an operator."]}
    assert SenderNameApplication.objects.count() == 2


def test_api_permissions(django_user_model, account, enqueued):
    from django.contrib.auth.models import Group, Permission
    from rest_framework.test import APIClient

    viewer = django_user_model.objects.create_user(username="viewer", password="x-pass-12345", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewer"))
    operator = django_user_model.objects.create_user(username="op", password="x-pass-12345", is_staff=True)
    operator.groups.add(Group.objects.get(name="Operator"))
    adder = django_user_model.objects.create_user(username="adder", password="x-pass-12345", is_staff=True)
    adder.user_permissions.add(*Permission.objects.filter(codename__in=["add_sendernamegroup", "view_sendernamegroup"]))
    clients = {}
    for user in (viewer, operator, adder):
        clients[user.username] = APIClient()
        clients[user.username].force_authenticate(user)
    body = {**api_payload(), "brands": ["MTS"]}
    assert clients["viewer"].post(URL, body, format="json").status_code == 403
    assert clients["adder"].post(URL, body, format="json").status_code == 403  # filing submits: needs submit too
    created = clients["op"].post(URL, body, format="json")
    assert created.status_code == 201
    group_id = created.json()["id"]
    assert clients["viewer"].get(f"{URL}{group_id}/").status_code == 200
    assert clients["viewer"].post(f"{URL}{group_id}/add-brand/", {"brand": "TELE2"}, format="json").status_code == 403
    assert clients["op"].post(f"{URL}{group_id}/add-brand/", {"brand": "TELE2"}, format="json").status_code == 201


# --- admin ----------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(client, staff_user, account):
    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def admin_form(**overrides):
    data = group_fields(**overrides)
    data["date_from"] = data["date_from"].isoformat()
    data["account"] = ""
    return data


def test_admin_add_shows_which_brand_refuses_and_files_nothing(admin_client, enqueued):
    url = reverse("admin:sendernames_sendernamegroup_add")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {**admin_form(sender_name="ACME SHOP"), "brands": FOUR})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "refused by MegaFon" in errors["sender_name"][0] and "space" in errors["sender_name"][0]
    response = admin_client.post(url, admin_form())
    assert response.context["adminform"].form.errors["brands"] == ["Choose at least one operator."]
    assert nothing_stored() and enqueued == []


def test_admin_add_then_the_matrix_then_a_double_submit(admin_client, enqueued, django_capture_on_commit_callbacks):
    url = reverse("admin:sendernames_sendernamegroup_add")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {**admin_form(common_type="PROMO"), "brands": FOUR, "new_documents": [pdf()]})
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    group = SenderNameGroup.objects.get()
    assert response["Location"] == reverse("admin:sendernames_sendernamegroup_change", args=[group.pk])
    page = admin_client.get(response["Location"])
    text = page.content.decode()
    assert 'id="b24-group-matrix"' in text and text.count("<tr data-brand=") == 4
    assert "Queued for submission" in text and 'id="b24-add-brand"' in text
    assert "MegaFon" in text and "00:00 Moscow time" in text
    again = admin_client.post(
        url, {**admin_form(common_type="PROMO"), "brands": FOUR, "new_documents": [pdf()]}, follow=True
    )
    assert "nothing was sent again" in again.content.decode()
    assert SenderNameGroup.objects.count() == 1 and SenderNameApplication.objects.count() == 4 and len(enqueued) == 4


def test_admin_add_brand_page(admin_client, enqueued):
    group = group_create(brands=["MTS"], account=None, **group_fields()).group
    url = reverse("admin:sendernames_group_add_brand", args=[group.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and 'value="MTS"' not in page.content.decode()
    response = admin_client.post(url, {"brand": "TELE2"})
    assert response.status_code == 302
    assert sorted(group.applications.values_list("brand", flat=True)) == ["MTS", "TELE2"]


def test_admin_group_is_read_only_for_a_viewer(client, django_user_model, account, enqueued):
    from django.contrib.auth.models import Group

    group = group_create(brands=["MTS"], account=account, **group_fields()).group
    viewer = django_user_model.objects.create_user(username="viewer", password="x-pass-12345", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewer"))
    client.force_login(viewer)
    page = client.get(reverse("admin:sendernames_sendernamegroup_change", args=[group.pk]))
    assert page.status_code == 200 and 'id="b24-add-brand"' not in page.content.decode()
    assert client.get(reverse("admin:sendernames_sendernamegroup_add")).status_code == 403
    assert (
        client.post(reverse("admin:sendernames_group_add_brand", args=[group.pk]), {"brand": "TELE2"}).status_code
        == 403
    )


def test_admin_group_list_is_a_fixed_number_of_queries(admin_client, enqueued, django_assert_max_num_queries):
    for name in ("ONE", "TWO", "THREE"):
        group_create(brands=FOUR, account=None, **group_fields(sender_name=name))
    with django_assert_max_num_queries(12):
        page = admin_client.get(reverse("admin:sendernames_sendernamegroup_changelist"))
    assert page.status_code == 200 and page.content.decode().count("Queued for submission") == 12


def test_the_migration_grants_the_new_permissions_to_existing_default_groups(db):
    import importlib

    from django.contrib.auth.models import Group, Permission
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from b24sms.roles import OPERATOR, VIEWER

    new_view = Permission.objects.filter(codename__in=["view_sendernamegroup", "view_statusreadability"])
    new_operate = Permission.objects.filter(
        codename__in=["add_sendernamegroup", "change_sendernamegroup", "set_application_status"]
    )
    viewer, operator = Group.objects.get(name=VIEWER), Group.objects.get(name=OPERATOR)
    viewer.permissions.remove(*new_view)
    operator.permissions.remove(*new_view, *new_operate)  # as a database migrated before 0003 has them
    migration = importlib.import_module("sendernames.migrations.0003_sender_name_groups_manual_status")
    state_apps = (
        MigrationExecutor(connection)
        .loader.project_state(("sendernames", "0003_sender_name_groups_manual_status"))
        .apps
    )

    schema_editor = type("SchemaEditor", (), {"connection": connection})()
    migration.grant_to_default_groups(state_apps, schema_editor)
    assert set(viewer.permissions.filter(pk__in=new_view)) == set(new_view)
    assert not viewer.permissions.filter(pk__in=new_operate).exists()
    assert set(operator.permissions.filter(pk__in=new_view)) | set(operator.permissions.filter(pk__in=new_operate)) == (
        set(new_view) | set(new_operate)
    )
