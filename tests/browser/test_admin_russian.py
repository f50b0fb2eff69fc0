"""Every admin page in Russian, in a real browser: no English left, no raw object names, no raw status codes.

One object of every kind the admin shows is made first (tests/browser/admin_objects.py); then every app
page, changelist, add page and change page of the admin is opened with the browser asking for Russian,
and the visible text (and the page title) is read. What may stay Latin: proper names and codes
(Bitrix24, i-dgtl, SMS, API, ...), the data itself (sender names, domains, codes), and technical
identifiers (anything with a digit, dot, @ or underscore: URLs, codes, uuids). Status codes must
show as their labels only.
"""

import re

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from tests.browser.admin_objects import DATA_WORDS, make_every_kind_of_object

pytestmark = pytest.mark.django_db(transaction=True)

# Proper names, abbreviations and units that Russian texts write in Latin letters.
PROPER_NAMES = {
    "b24sms",
    "Bitrix24",
    "Bitrix",
    "i-dgtl",
    "SMS",
    "API",
    "URL",
    "HTTP",
    "HTTPS",
    "ID",
    "UUID",
    "JSON",
    "PDF",
    "PNG",
    "JPEG",
    "OAuth",
    "TOKEN",
    "CRM",
    "Celery",
    "crontab",
    "cron",
    "UTC",
    "IP",
    "CSV",
    "XLSX",
    "English",
    "Django",
    "MTS",
    "MegaFon",
    "Beeline",
    "Tele2",
    "Motiv",
    "Yota",
    "PROMO",
    "HANDLER",
    "ONAPPUPDATE",
    "ONAPPUNINSTALL",
    "Basic",
    "Authorization",
    "KEY",
    "RUB",
    "GET",
    "POST",
    "TLS",
    "Moscow",
    "Europe",
    "ISO",
    "CODE",
    "a-z",
    "A-Z",
    "AMQP",
    "Accept",
    "User-Agent",
    "sha256",
    "auditlog",
    "REST",
    # Django's own Russian keeps these: keys ("Control", "Command" on a Mac) and sign-on systems of the user form.
    "Control",
    "Command",
    "Mac",
    "LDAP",
    "Single",
    "Sign-On",
    "Sing-On",
}
WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
TECHNICAL = re.compile(r"\S*[\d._@/:=#?&{}•]\S*|\w+(?:,\w+)+")  # URLs, domains, codes, uuids, addresses, lists
RAW_OBJECT = re.compile(r"\b\w+ object \(\d+\)|объект \(\d+\)")
RAW_STATUS = re.compile(r"\b(PRE_REVIEW|REVIEW|APPROVED|REJECTED|CANCELED)\b")  # lower-case codes are English words


ALLOWED = {word.lower() for word in PROPER_NAMES | DATA_WORDS}  # headings are upper-cased by CSS
# Not read: the list of time zones (their names) and the language switch (each language in its own name).
# The password's hash summary (salt and hash characters) is data too.
NOT_READ = ["#id_timezone", "#b24sms-language-select", ".field-password"]


def english_words(text: str) -> list[str]:
    text = TECHNICAL.sub(" ", text)
    return sorted({word for word in WORD.findall(text) if word.lower() not in ALLOWED})


def admin_pages(user) -> list[str]:
    """The index, every app page, and per model its changelist, add page (when there is one) and first object's page."""
    request = RequestFactory().get("/admin/")
    request.user = user
    pages = [reverse("admin:index")]
    pages += sorted({reverse("admin:app_list", args=[model._meta.app_label]) for model in admin.site._registry})
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        if model_admin.has_add_permission(request):
            pages.append(reverse("admin:{}_{}_add".format(*info)))
        first = model_admin.get_queryset(request).order_by("pk").first()
        if first is not None:
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
            pages.append(reverse("admin:{}_{}_history".format(*info), args=[first.pk]))
    return pages


@pytest.fixture
def russian_page(browser, live_server, admin_user):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="ru-RU")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/admin/login/")
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "browser-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#b24sms-dashboard")
    yield page
    context.close()


def read(page) -> str:
    """What a reader sees: the page's title and its visible text (but for NOT_READ)."""
    return (
        page.title()
        + "\n"
        + page.evaluate(
            """(skip) => {
        for (const selector of skip) document.querySelectorAll(selector).forEach(e => e.remove());
        return document.body.innerText;
    }""",
            NOT_READ,
        )
    )


def test_every_admin_page_reads_russian(russian_page, admin_user, settings):
    page = russian_page
    objects = make_every_kind_of_object(admin_user)
    problems = {}
    for url in admin_pages(admin_user) + objects.extra_pages:
        response = page.goto(url)
        assert response.status < 400, (url, response.status)
        assert page.get_attribute("html", "lang") == "ru", url
        text = read(page)
        found = english_words(text)
        raw = RAW_OBJECT.findall(text) + RAW_STATUS.findall(text)
        if found or raw:
            problems[url] = {
                "english": found,
                "raw": raw,
                "where": [
                    text[max(0, match.start() - 40) : match.end() + 40].replace("\n", " | ")
                    for word in found[:5]
                    for match in [re.search(rf"\b{re.escape(word)}\b", text)]
                    if match
                ],
            }
    assert not problems, "\n".join(f"{url}: {found}" for url, found in problems.items())


def test_every_list_fits_a_1280_pixel_screen(russian_page, admin_user):
    """No list page scrolls sideways at 1280 px (Russian words are the longer ones): every column is seen."""
    page = russian_page
    make_every_kind_of_object(admin_user)
    too_wide = {}
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        page.goto(url)
        # Django's list scrolls inside its own box (.results): its columns past the right edge are hidden.
        widths = page.evaluate("""() => {
            const box = document.querySelector('#changelist .results') || document.documentElement;
            return [box.scrollWidth, box.clientWidth, document.documentElement.scrollWidth];
        }""")
        if widths[0] > widths[1] or widths[2] > 1280:
            too_wide[url] = widths
    assert not too_wide
