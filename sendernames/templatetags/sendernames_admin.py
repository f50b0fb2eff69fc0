"""Template tags of the sender-name admin pages (the group matrix)."""
from django import template

from .. import selectors

register = template.Library()


@register.simple_tag
def application_status_badge(application):
    from ..admin import status_badge

    return status_badge(application)


@register.simple_tag
def application_usable_from(application):
    return selectors.usable_from_text(application)
