"""The URLs b24sms hands to Bitrix24 and i-dgtl are PUBLIC_BASE_URL + a named route (common/public_urls.py):
each one reaches the view that serves it, and a route renamed without its callers fails loudly."""

from urllib.parse import urlsplit

import pytest
from django.urls import NoReverseMatch, path, resolve

from common.public_urls import public_url
from providers.services import installations as installation_services
from providers.services import registration as registration_services
from providers.services import sending as sending_services
from providers.services import test_sms as test_sms_services
from providers.views import inbound, install

pytestmark = pytest.mark.django_db


@pytest.fixture
def installation(make_installation, public_base_url):
    return make_installation()


def served_by(url: str, base: str):
    """The view and arguments our URLconf gives the URL's path, once PUBLIC_BASE_URL is taken off."""
    assert url.startswith(base + "/"), url
    match = resolve(urlsplit(url).path)
    return match.func, match.kwargs


def test_the_handler_registered_on_bitrix24_reaches_the_handler_view(installation, public_base_url):
    url = registration_services.registration_handler_url(installation)
    assert served_by(url, public_base_url) == (inbound.bitrix24_handler, {"secret": installation.handler_secret})
    assert test_sms_services.handler_url(installation) == url  # the test SMS posts where Bitrix24 posts


def test_the_callback_given_to_idgtl_reaches_the_callback_view(installation, public_base_url):
    url = sending_services.callback_url(installation)
    assert served_by(url, public_base_url) == (inbound.idgtl_callback, {"secret": installation.callback_secret})
    assert installation.handler_secret not in url  # its own secret: a leaked callback URL sends no SMS


def test_the_application_event_handlers_reach_their_views(installation, public_base_url):
    handlers = installation_services.app_event_handlers(installation)
    secret = {"secret": installation.handler_secret}
    assert served_by(handlers["ONAPPUNINSTALL"], public_base_url) == (install.uninstall, secret)
    assert served_by(handlers["ONAPPUPDATE"], public_base_url) == (install.app_event, secret)


def test_the_install_urls_reach_the_install_view(application, other_application, public_base_url):
    assert application.is_default and not other_application.is_default
    assert installation_services.application_install_url(application) == f"{public_base_url}/b24/install/"
    assert served_by(installation_services.application_install_url(other_application), public_base_url) == (
        install.install,
        {"application_id": other_application.pk},
    )


def test_a_base_url_with_a_trailing_slash_gives_no_double_slash(installation, settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.com/"
    assert registration_services.registration_handler_url(installation).startswith("https://sms.example.com/b24/")


# A URLconf where the HANDLER's route was renamed (and nothing else followed).
urlpatterns = [
    path("b24/handler/<str:secret>/", inbound.bitrix24_handler, name="b24-sms-handler"),
    path("idgtl/callback/<str:secret>/", inbound.idgtl_callback, name="idgtl-callback"),
]


def test_a_renamed_route_fails_loudly_instead_of_handing_out_a_dead_url(installation, settings):
    settings.ROOT_URLCONF = __name__
    with pytest.raises(NoReverseMatch):
        registration_services.registration_handler_url(installation)
    assert public_url("idgtl-callback", secret="s") == "https://sms.example.com/idgtl/callback/s/"
