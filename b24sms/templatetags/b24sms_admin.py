"""Template tags of the admin start page."""

from django import template
from django.utils.translation import gettext as _

from b24sms.dashboard import dashboard_data

register = template.Library()


@register.inclusion_tag("admin/b24sms_dashboard.html", takes_context=True)
def b24sms_dashboard(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_staff:  # the admin index is staff-only anyway; never show figures to others
        return {"dash": None, "request": request}
    return {"dash": dashboard_data(user=user), "request": request}


@register.filter
def age(delta):
    """A timedelta as '3 h 5 min', '42 s'."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return _("%(d)d d %(h)d h") % {"d": days, "h": hours}
    if hours:
        return _("%(h)d h %(m)d min") % {"h": hours, "m": minutes}
    if minutes:
        return _("%(m)d min %(s)d s") % {"m": minutes, "s": secs}
    return _("%(s)d s") % {"s": secs}
