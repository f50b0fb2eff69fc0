"""Strings translated where makemessages cannot see them, listed so that it keeps them in locale/ru.

- The project's own permissions: Django stores their names as written in ``Meta.permissions`` (English);
  the user and group forms show them translated (b24sms/admin_site.py ``permission_label``).
- Sentences of Django's admin whose Russian in Django's catalog does not agree with every model's
  name (gender, case): locale/ru says them so that any name fits ("Удалено записей: 3 (заявки …)").
- Sentences of the libraries in the admin (django-axes, django-celery-beat, django-auditlog) that their
  own Russian catalogs lack or get wrong.

Nothing here is called: ``gettext_noop`` only marks the strings.
"""

from django.utils.translation import gettext_noop

PERMISSION_NAMES = [
    gettext_noop("Can check i-dgtl account keys with i-dgtl"),
    gettext_noop("Can submit sender-name applications to i-dgtl"),
    gettext_noop("Can ask i-dgtl for the status of sender-name applications"),
    gettext_noop("Can set the status of sender-name applications by hand"),
    gettext_noop("Can register providers on portals, push changes to them and remove them there"),
    gettext_noop("Can check providers against the portals (sender.list)"),
    gettext_noop("Can send a test SMS through a provider"),
]

DJANGO_ADMIN = [
    gettext_noop(
        "Are you sure you want to delete the selected %(objects_name)s? All of the following objects and "
        "their related items will be deleted:"
    ),
    gettext_noop(
        "Deleting the %(object_name)s '%(escaped_object)s' would require deleting the following protected "
        "related objects:"
    ),
    gettext_noop(
        "Deleting the %(object_name)s '%(escaped_object)s' would result in deleting related objects, but "
        "your account doesn't have permission to delete the following types of objects:"
    ),
    gettext_noop(
        "Deleting the selected %(objects_name)s would require deleting the following protected related objects:"
    ),
    gettext_noop(
        "Deleting the selected %(objects_name)s would result in deleting related objects, but your account "
        "doesn't have permission to delete the following types of objects:"
    ),
    gettext_noop("Successfully deleted %(count)d %(items)s."),
    gettext_noop("%(name)s with ID “%(key)s” doesn’t exist. Perhaps it was deleted?"),
    gettext_noop("Add another %(verbose_name)s"),
    gettext_noop("Added {name} “{object}”."),
    gettext_noop("Changed {fields} for {name} “{object}”."),
    gettext_noop("Deleted {name} “{object}”."),
]

LIBRARIES = [
    # django-axes
    gettext_noop("Access Attempt"),
    gettext_noop("Attempt Remaining"),
    gettext_noop("Clean up expired attempts"),
    gettext_noop("Expires At"),
    gettext_noop("HTTP Accept"),
    gettext_noop("Locked Out"),
    gettext_noop("Not set"),
    gettext_noop("Session key hash (sha256)"),
    gettext_noop("The time when access attempt expires and is no longer valid."),
    gettext_noop("User Agent"),
    gettext_noop("access attempt expiration"),
    gettext_noop("access attempt expirations"),
    # django-celery-beat
    gettext_noop("Arguments"),
    gettext_noop("Astronomical dawn"),
    gettext_noop("Astronomical dusk"),
    gettext_noop("Civil dawn"),
    gettext_noop("Civil dusk"),
    gettext_noop("Nautical dawn"),
    gettext_noop("Nautical dusk"),
    gettext_noop("Solar noon"),
    gettext_noop("Sunrise"),
    gettext_noop("Sunset"),
    gettext_noop('Cron Days Of The Week to Run. Use "*" for "all", Sunday is 0 or 7, Monday is 1. (Example: "0,5")'),
    gettext_noop('Cron Months (1-12) Of The Year to Run. Use "*" for "all". (Example: "1,12")'),
    gettext_noop("Exchange"),
    gettext_noop("Execution Options"),
    gettext_noop("Expires timedelta with seconds"),
    gettext_noop("Only one can be set, in expires and expire_seconds"),
    gettext_noop("Override Exchange for low-level AMQP routing"),
    gettext_noop("Override Routing Key for low-level AMQP routing"),
    gettext_noop("Periodic Tasks Using This Schedule"),
    gettext_noop("Schedule"),
    gettext_noop("Timedelta with seconds which the schedule will no longer trigger the task to run"),
    gettext_noop("crontab"),
    gettext_noop("periodic task track"),
    gettext_noop("periodic task tracks"),
    gettext_noop("{0} task was successfully disabled"),
    gettext_noop("{0} task was successfully enabled"),
    gettext_noop("{0} task was successfully toggled"),
    gettext_noop("Task Name"),
    gettext_noop(
        "Datetime that the schedule last triggered the task to run. Reset to None if enabled is set to False."
    ),
    # django-auditlog (the fields of audit.AuditLogEntry it defines; its own log entry table is unused)
    gettext_noop("Audit log"),
    gettext_noop("remote address"),
    gettext_noop("timestamp"),
    gettext_noop("actor"),
    gettext_noop("object representation"),
    gettext_noop("object pk"),
    gettext_noop("additional data"),
    gettext_noop("actor email"),
    gettext_noop("remote port"),
    gettext_noop("Correlation ID"),
]
