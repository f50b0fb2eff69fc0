"""Template tags of the sender-name admin pages (the group matrix)."""

from django import template

from sendernames import selectors
from sendernames.status_badge import status_badge

register = template.Library()


@register.simple_tag
def application_status_badge(application):
    return status_badge(application)


@register.simple_tag
def application_usable_from(application):
    return selectors.usable_from_text(application)
