"""The request an audit entry is written in: its user is the actor, its client address the address.

auditlog's own middleware takes the user when the request arrives, before Django REST framework has
authenticated an API token (inside the view), and the first X-Forwarded-For entry, which any client
can write. Here the request is kept for the time it is served and read when an entry is saved: the
user by then authenticated by the session or by DRF (which sets it on the request), the address by
``common.netaddr.client_ip`` (X-Forwarded-For believed only from TRUSTED_PROXIES).
"""

from contextvars import ContextVar

from common.netaddr import client_ip

_current_request = ContextVar("audit_current_request", default=None)


class AuditRequestMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def current_request():
    return _current_request.get()


def entry_fill_request(sender, instance, **kwargs):
    """pre_save of an audit entry: the actor and address of the request being served, unless given.
    Outside a request (a task, beat, a management command) the entry stays without actor: b24sms did it."""
    request = current_request()
    if request is None:
        return
    user = getattr(request, "user", None)
    if instance.actor_id is None and user is not None and user.is_authenticated:
        instance.actor = user
        instance.actor_email = user.email or None
    if instance.remote_addr is None:
        instance.remote_addr = client_ip(request)
