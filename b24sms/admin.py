"""Admin pages of the libraries, made to read in the reader's language where the library does not.

- django-celery-beat describes a crontab in English only ("At 04:00 AM"); here it is described with
  cron-descriptor in the reader's language, on the crontab pages and in the periodic task form.
- django-axes names its rows in English with raw UTC times ("Attempted Access: 2026-…+00:00"); their names
  here are translated, with local times (the models' ``__str__`` is set here: axes offers no other hook).
"""

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from cron_descriptor import FormatException, MissingFieldException, Options, WrongArgumentException, get_description
from django.contrib import admin
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from common.admin_display import datetime_to_second


def crontab_description(schedule: CrontabSchedule | None) -> str:
    """A crontab in words of the reader's language, 24-hour clock ("В 04:00 Europe/Moscow")."""
    if schedule is None:
        return ""
    options = Options()
    options.locale_code = "ru_RU" if (get_language() or "").startswith("ru") else "en_US"
    options.use_24hour_time_format = True
    expression = " ".join(
        [schedule.minute, schedule.hour, schedule.day_of_month, schedule.month_of_year, schedule.day_of_week]
    )
    try:
        return f"{get_description(expression, options)} {schedule.timezone}"
    except (FormatException, MissingFieldException, WrongArgumentException):
        return str(schedule)


for model in (CrontabSchedule, PeriodicTask, ClockedSchedule, SolarSchedule, IntervalSchedule, AccessAttempt):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


class TaskNameFilter(admin.AllValuesFieldListFilter):
    """django-celery-beat's task field has an untranslated name ("Task Name")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = _("Task Name")


class PeriodicTaskInline(beat_admin.PeriodicTaskInline):
    fields = readonly_fields = ("name", "task_name", "args", "kwargs")

    @admin.display(description=_("Task Name"))
    def task_name(self, task):
        return task.task


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(beat_admin.ClockedScheduleAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(SolarSchedule)
class SolarScheduleAdmin(beat_admin.SolarScheduleAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(beat_admin.IntervalScheduleAdmin):
    inlines = [PeriodicTaskInline]


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(beat_admin.CrontabScheduleAdmin):
    inlines = [PeriodicTaskInline]
    list_display = ("__str__", "described")
    fields = ("described", "minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone")
    readonly_fields = ("described",)

    @admin.display(description=_("in words"))
    def described(self, schedule):
        return crontab_description(schedule) if schedule.pk else "—"


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    list_display = ("name", "enabled", "schedule_kind", "interval", "start_time", "last_run_at", "one_off")
    list_filter = ["enabled", "one_off", ("task", TaskNameFilter), "start_time", "last_run_at"]
    readonly_fields = ("last_run_at", "crontab_translation")
    change_form_template = "admin/b24sms/change_periodictask_form.html"

    @admin.display(description=_("schedule"))
    def schedule_kind(self, task):
        scheduler = task.scheduler
        if isinstance(scheduler, CrontabSchedule):
            return crontab_description(scheduler)
        return str(scheduler) if scheduler is not None else "—"

    @admin.display(description=_("in words"))
    def crontab_translation(self, task):
        return crontab_description(task.crontab) or "—"

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        response = super().changeform_view(request, object_id, form_url, extra_context)
        if hasattr(response, "context_data"):  # the crontabs the form's script describes, in the reader's language
            response.context_data["readable_crontabs"] = {
                schedule.pk: crontab_description(schedule) for schedule in CrontabSchedule.objects.all()
            }
        return response


@admin.register(AccessAttempt)
class AccessAttemptAdmin(AxesAccessAttemptAdmin):
    @admin.display(description=_("status"))
    def status(self, attempt):
        return super().status(attempt)


def _attempt_name(attempt) -> str:
    return gettext("Failed logins as “%(username)s” from %(address)s") % {
        "username": attempt.username,
        "address": attempt.ip_address,
    }


def _access_name(access) -> str:
    return gettext("Login of “%(username)s” at %(time)s") % {
        "username": access.username,
        "time": datetime_to_second(access.attempt_time),
    }


def _failure_name(failure) -> str:
    return gettext("Failed login as “%(username)s” at %(time)s from %(address)s") % {
        "username": failure.username,
        "time": datetime_to_second(failure.attempt_time),
        "address": failure.ip_address,
    }


AccessAttempt.__str__ = _attempt_name
AccessLog.__str__ = _access_name
AccessFailureLog.__str__ = _failure_name
