"""A NUL in any query string is a 400 JSON before any view runs (PostgreSQL cannot compare text with NUL)."""

import pytest

LISTS = [
    "/admin/providers/installation/?state__exact=%00",
    "/admin/providers/provider/?q=ab%00cd",
    "/admin/providers/message/?state__exact=%00",
    "/admin/sendernames/sendernameapplication/?status__exact=%00",
    "/admin/idgtl/idgtlaccount/?q=%00",
    "/api/sender-names/?status=%00",
    "/api/portals/?state=%00",
    "/api/providers/?q%00=1",
    "/api/messages/?state=%00",
]


@pytest.mark.django_db
@pytest.mark.parametrize("url", LISTS)
def test_a_nul_in_the_query_string_is_refused_with_400(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 400
    assert response.json() == {"detail": "A query parameter contains a NUL character."}


@pytest.mark.django_db
def test_the_same_lists_answer_with_ordinary_values(admin_client):
    ordinary = {
        "state__exact=%00": "state__exact=active",
        "status__exact=%00": "status__exact=APPROVED",
        "state=%00": "state=active",
        "status=%00": "status=APPROVED",
        "q%00=1": "q=1",
    }
    for url in LISTS:
        path, query = url.split("?")
        query = ordinary.get(query, query.replace("%00", "x"))
        if path == "/api/messages/":
            query = "state=sent"
        assert admin_client.get(f"{path}?{query}").status_code == 200, f"{path}?{query}"
