"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium) against pytest-django's live server.

Run by `make test` when the browser is present; skipped otherwise, unless B24SMS_REQUIRE_BROWSER=1
(CI, .ci/run), where a missing browser fails the run. `.ci/install-browser` installs it.
B24SMS_SCREENSHOTS=1 writes the screenshots of the main pages to docs/screenshots/ (for the README);
otherwise they go to the test's temporary directory.
"""

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("B24SMS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = ROOT / "docs" / "screenshots"
ADMIN_PASSWORD = "browser-pass-123"

# Playwright's sync API runs an event loop in this thread; Django's ORM must still be usable from tests.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def browser_missing() -> str:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found (run .ci/install-browser)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return ""


def pytest_collection_modifyitems(config, items):
    missing = browser_missing()
    for item in items:
        if "tests/browser/" not in str(item.fspath).replace(os.sep, "/"):
            continue
        item.add_marker(pytest.mark.browser)
        if missing:
            if os.environ.get("B24SMS_REQUIRE_BROWSER") == "1":
                item.fixturenames.insert(0, "_browser_required")
            else:
                item.add_marker(pytest.mark.skip(reason=f"browser tests: {missing}"))


@pytest.fixture
def _browser_required():
    pytest.fail(f"B24SMS_REQUIRE_BROWSER=1 but {browser_missing()}")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(tmp_path):
    """screenshot(page, "name"): docs/screenshots/name.png with B24SMS_SCREENSHOTS=1, else a temporary file."""
    target = SCREENSHOTS if os.environ.get("B24SMS_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)

    def take(page, name, full_page=True):
        path = target / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="admin", email="admin@example.com", password=ADMIN_PASSWORD
    )


@pytest.fixture
def logged_in(page, admin_user):
    """A page logged in to the admin through the login form (in the browser's language: English)."""
    page.goto("/admin/login/")
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#b24sms-dashboard")
    return page
