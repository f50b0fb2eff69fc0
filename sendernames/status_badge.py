"""How the admin shows an application's status: a coloured badge (the admin lists and the group matrix)."""

from django.utils.html import format_html
from django.utils.translation import gettext

from idgtl.contract import SenderNameStatus
from sendernames.models import SenderNameApplication
from sendernames.services.readability import unreadable_message

STATUS_COLOURS = {
    SenderNameStatus.PRE_REVIEW: "#6c757d",
    SenderNameStatus.REVIEW: "#0d6efd",
    SenderNameStatus.APPROVED: "#198754",
    SenderNameStatus.REJECTED: "#dc3545",
    SenderNameStatus.CANCELED: "#6f42c1",
}
UNKNOWN_STATUS_COLOUR = "#fd7e14"


def status_badge(application: SenderNameApplication):
    if not application.status:
        badge = format_html('<span style="color:#6c757d">{}</span>', application.get_submission_state_display())
    else:
        colour = STATUS_COLOURS.get(application.status, UNKNOWN_STATUS_COLOUR)
        badge = format_html('<strong style="color:{}">{}</strong>', colour, application.status_label)
    if application.status_manual:
        badge = format_html(
            '{} <small class="b24-manual" title="{}">({})</small>',
            badge,
            gettext("Set by hand from i-dgtl's cabinet"),
            gettext("set by hand"),
        )
    if application.status_not_readable:
        badge = format_html('{}<div class="b24-unreadable" style="color:#ba2121">{}</div>', badge, unreadable_message())
    return badge
