"""``{{ opts|accusative }}``: a model's name as the object of a verb, for the admin's templates
(b24sms/admin_site.py)."""

from django import template

from b24sms.admin_site import accusative as accusative_of

register = template.Library()


@register.filter
def accusative(opts) -> str:
    return accusative_of(opts)
