"""The admin login page a locked-out user sees (django-axes' AXES_LOCKOUT_CALLABLE).

After AXES_FAILURE_LIMIT failed logins with one username from one client address (common.netaddr:
behind TRUSTED_PROXIES the forwarded address), logins with that username from that address are
refused for AXES_COOLOFF_TIME, the right password included: the login page again, status 429, saying
why and for how long. An administrator unlocks earlier by deleting the row in "Access attempts".
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext


def lockout_message(username: str) -> str:
    minutes = max(1, int(settings.AXES_COOLOFF_TIME.total_seconds() // 60))
    text = ngettext(
        "Too many failed logins as “%(username)s” from your address: logging in is blocked for %(minutes)d "
        "minute. Try again later, or ask an administrator to unlock it.",
        "Too many failed logins as “%(username)s” from your address: logging in is blocked for %(minutes)d "
        "minutes. Try again later, or ask an administrator to unlock it.",
        minutes,
    )
    return text % {"username": username, "minutes": minutes}


def lockout_response(request, original_response=None, credentials=None):
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        **admin.site.each_context(request),
        "title": gettext("Log in"),
        "app_path": request.get_full_path(),
        "form": AdminAuthenticationForm(request, initial={"username": username}),
        "next": request.POST.get("next") or request.GET.get("next", ""),
        "lockout_message": lockout_message(username),
    }
    return TemplateResponse(
        request, "admin/login_locked.html", context, status=settings.AXES_HTTP_RESPONSE_CODE
    ).render()
