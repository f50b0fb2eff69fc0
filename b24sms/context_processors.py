from django.conf import settings


def sandbox(request):
    """Every template knows whether this is the sandbox (the admin shows a banner)."""
    return {"SANDBOX": settings.SANDBOX}
