"""In a real browser: log in, see the start page and the sandbox banner, switch the language."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_login_and_dashboard(page, admin_user, settings, screenshot):
    settings.SANDBOX = True
    page.goto("/admin/")
    assert "/admin/login/" in page.url
    assert page.is_visible("#b24sms-sandbox-banner")
    screenshot(page, "login")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "wrong-password")
    page.click("input[type=submit]")
    assert page.is_visible(".errornote")
    page.fill("#id_password", "browser-pass-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#b24sms-dashboard")
    assert page.is_visible("#b24sms-sandbox-banner")
    assert page.inner_text("#dash-today h2") == "Messages today"
    assert page.locator("#dash-chart svg rect").count() == 14 * 3
    screenshot(page, "dashboard")


def test_language_switch(logged_in, screenshot):
    page = logged_in
    assert page.get_attribute("html", "lang") == "en"
    page.select_option("#b24sms-language-select", "ru")
    page.wait_for_function("document.documentElement.lang === 'ru'")
    assert "Сообщения сегодня" in page.inner_text("#dash-today h2")
    screenshot(page, "dashboard-ru")
    page.select_option("#b24sms-language-select", "en")
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.inner_text("#dash-today h2") == "Messages today"
