"""The admin site: Django's, with each model's name in the grammatical form a sentence needs.

Django writes "Add %s", "Select %s to change", "The {name} “{obj}” was added successfully." with a model's
verbose_name, which reads well in English only: Russian wants the accusative ("Добавить заявку", not
"Добавить заявка") and a verb that agrees with the noun's gender ("Заявка … была добавлена", not
"… был добавлен"). NOUNS gives, for every model the admin shows, its accusative (a translation in the
context "accusative" of its verbose name) and the gender of its Russian name; ``NamedModelAdmin`` uses
them for the titles, the add button (templates/admin/), the delete confirmation and the messages after a
save or a delete (Django's own sentences are recognised and said again with the gender as translation
context). ``AdminSite`` gives every ModelAdmin registered on it, the libraries' ones included, that
behaviour; tests/ops/test_admin_russian.py checks that every registered model has a noun here.

Permissions are shown by name in the user and group forms: Django's are rows with English names, so they
are shown as "application | model | action" with the action translated (``permission_label``).
"""

import dataclasses
import re

from django.contrib import admin
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.auth.models import Permission
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext, gettext_lazy, pgettext, pgettext_lazy

MASCULINE, FEMININE, NEUTER = "masculine", "feminine", "neuter"  # the Russian noun's gender (contexts in the .po)


@dataclasses.dataclass(frozen=True)
class Noun:
    accusative: str  # lazy: pgettext_lazy("accusative", <the verbose name>)
    gender: str
    accusative_plural: str | None = None  # lazy, for a noun of a person (animate: "выбранных пользователей")


NOUNS = {
    "auth.group": Noun(pgettext_lazy("accusative", "group"), FEMININE),
    "auth.user": Noun(pgettext_lazy("accusative", "user"), MASCULINE, pgettext_lazy("accusative", "users")),
    "authtoken.tokenproxy": Noun(pgettext_lazy("accusative", "Token"), MASCULINE),
    "django_celery_beat.periodictask": Noun(pgettext_lazy("accusative", "periodic task"), FEMININE),
    "django_celery_beat.clockedschedule": Noun(pgettext_lazy("accusative", "clocked"), NEUTER),
    "django_celery_beat.crontabschedule": Noun(pgettext_lazy("accusative", "crontab"), MASCULINE),
    "django_celery_beat.solarschedule": Noun(pgettext_lazy("accusative", "solar event"), NEUTER),
    "django_celery_beat.intervalschedule": Noun(pgettext_lazy("accusative", "interval"), MASCULINE),
    "idgtl.idgtlaccount": Noun(pgettext_lazy("accusative", "i-dgtl account"), MASCULINE),
    "sendernames.sendernameapplication": Noun(pgettext_lazy("accusative", "sender-name application"), FEMININE),
    "sendernames.sendernamegroup": Noun(pgettext_lazy("accusative", "sender name for several operators"), NEUTER),
    "sendernames.statusreadability": Noun(pgettext_lazy("accusative", "status reading from i-dgtl"), NEUTER),
    "providers.bitrixapplication": Noun(pgettext_lazy("accusative", "Bitrix24 application"), NEUTER),
    "providers.installation": Noun(pgettext_lazy("accusative", "installation"), FEMININE),
    "providers.provider": Noun(
        pgettext_lazy("accusative", "provider"), MASCULINE, pgettext_lazy("accusative", "providers")
    ),
    "providers.providerregistration": Noun(pgettext_lazy("accusative", "registration"), FEMININE),
    "providers.message": Noun(pgettext_lazy("accusative", "message"), NEUTER),
    "providers.unmatchedcallbackevent": Noun(pgettext_lazy("accusative", "unmatched callback event"), NEUTER),
    "providers.usageday": Noun(pgettext_lazy("accusative", "usage"), MASCULINE),
    "providers.tariff": Noun(pgettext_lazy("accusative", "tariff"), MASCULINE),
    "audit.auditlogentry": Noun(pgettext_lazy("accusative", "audit entry"), FEMININE),
    "axes.accessattempt": Noun(pgettext_lazy("accusative", "access attempt"), FEMININE),
    "axes.accesslog": Noun(pgettext_lazy("accusative", "access log"), FEMININE),
    "axes.accessfailurelog": Noun(pgettext_lazy("accusative", "access failure"), FEMININE),
}

# Django's sentences after a save or a delete that name the model; each is translated again in the context
# of the noun's gender (the English is Django's, unchanged). A tuple: sentences Django joins with a space.
SAVED_SENTENCES = [
    ("The {name} “{obj}” was added successfully.", "You may edit it again below."),
    ("The {name} “{obj}” was added successfully. You may add another {name} below.",),
    ("The {name} “{obj}” was added successfully. You may edit it again below.",),
    ("The {name} “{obj}” was added successfully.",),
    ("The {name} “{obj}” was changed successfully. You may edit it again below.",),
    ("The {name} “{obj}” was changed successfully. You may add another {name} below.",),
    ("The {name} “{obj}” was changed successfully.",),
    ("The %(name)s “%(obj)s” was deleted successfully.",),
]
_EXTRACTED = [  # the same, as makemessages sees them (it reads literals only)
    pgettext_lazy("masculine", "The {name} “{obj}” was added successfully."),
    pgettext_lazy("feminine", "The {name} “{obj}” was added successfully."),
    pgettext_lazy("neuter", "The {name} “{obj}” was added successfully."),
    pgettext_lazy("masculine", "You may edit it again below."),
    pgettext_lazy("feminine", "You may edit it again below."),
    pgettext_lazy("neuter", "You may edit it again below."),
    pgettext_lazy("masculine", "The {name} “{obj}” was added successfully. You may add another {name} below."),
    pgettext_lazy("feminine", "The {name} “{obj}” was added successfully. You may add another {name} below."),
    pgettext_lazy("neuter", "The {name} “{obj}” was added successfully. You may add another {name} below."),
    pgettext_lazy("masculine", "The {name} “{obj}” was added successfully. You may edit it again below."),
    pgettext_lazy("feminine", "The {name} “{obj}” was added successfully. You may edit it again below."),
    pgettext_lazy("neuter", "The {name} “{obj}” was added successfully. You may edit it again below."),
    pgettext_lazy("masculine", "The {name} “{obj}” was changed successfully. You may edit it again below."),
    pgettext_lazy("feminine", "The {name} “{obj}” was changed successfully. You may edit it again below."),
    pgettext_lazy("neuter", "The {name} “{obj}” was changed successfully. You may edit it again below."),
    pgettext_lazy("masculine", "The {name} “{obj}” was changed successfully. You may add another {name} below."),
    pgettext_lazy("feminine", "The {name} “{obj}” was changed successfully. You may add another {name} below."),
    pgettext_lazy("neuter", "The {name} “{obj}” was changed successfully. You may add another {name} below."),
    pgettext_lazy("masculine", "The {name} “{obj}” was changed successfully."),
    pgettext_lazy("feminine", "The {name} “{obj}” was changed successfully."),
    pgettext_lazy("neuter", "The {name} “{obj}” was changed successfully."),
    pgettext_lazy("masculine", "The %(name)s “%(obj)s” was deleted successfully."),
    pgettext_lazy("feminine", "The %(name)s “%(obj)s” was deleted successfully."),
    pgettext_lazy("neuter", "The %(name)s “%(obj)s” was deleted successfully."),
]

DEFAULT_PERMISSION_ACTIONS = {
    "add": gettext_lazy("adding"),
    "change": gettext_lazy("changing"),
    "delete": gettext_lazy("deleting"),
    "view": gettext_lazy("viewing"),
}


def noun_for(opts) -> Noun | None:
    return NOUNS.get(opts.label_lower)


def accusative(opts) -> str:
    """The model's name as the object of a verb ("Добавить заявку"); the verbose name when it has no noun here."""
    noun = noun_for(opts)
    return str(noun.accusative) if noun else str(opts.verbose_name)


def _sentence_pattern(sentence: tuple, verbose_name) -> re.Pattern:
    """Django's sentence in the active language, the object's part (a link, or its name) captured."""
    text = " ".join(gettext(msgid) for msgid in sentence)
    pattern = re.escape(text)
    for placeholder in ("{obj}", "%(obj)s"):
        pattern = pattern.replace(re.escape(placeholder), "(?P<obj>.*)", 1)
    for placeholder, name in (("{name}", conditional_escape(verbose_name)), ("%(name)s", str(verbose_name))):
        pattern = pattern.replace(re.escape(placeholder), re.escape(str(name)))
    return re.compile(pattern, re.DOTALL)


def gendered_message(message, opts):
    """Django's message after a save or a delete, said with the noun's gender; any other message as it is."""
    noun = noun_for(opts)
    if noun is None:
        return message
    text = str(message)
    for sentence in SAVED_SENTENCES:
        match = _sentence_pattern(sentence, opts.verbose_name).fullmatch(text)
        if match is None:
            continue
        ours = " ".join(pgettext(noun.gender, msgid) for msgid in sentence)
        if "%(obj)s" in ours:  # the delete message: plain text, escaped where it is shown
            return capfirst(ours % {"name": opts.verbose_name, "obj": match.group("obj")})
        html = ours.format(
            name=conditional_escape(opts.verbose_name),
            accusative=conditional_escape(noun.accusative),
            obj=match.group("obj"),
        )  # the object's part is Django's, already escaped
        return mark_safe(capfirst(html)) if isinstance(message, SafeString) else capfirst(html)
    return message


def permission_label(permission: Permission) -> str:
    """A permission as "application | model | action" in the reader's language (Django stores English names)."""
    model = permission.content_type.model_class()
    if model is None:
        return str(permission)
    opts = model._meta
    action, _sep, model_name = permission.codename.partition("_")
    if model_name == opts.model_name and action in DEFAULT_PERMISSION_ACTIONS:
        what = DEFAULT_PERMISSION_ACTIONS[action]
    else:
        what = gettext(permission.name)  # the project's own permissions are in the catalog (b24sms/locale_extra.py)
    return f"{capfirst(opts.app_config.verbose_name)} | {capfirst(opts.verbose_name)} | {what}"


class NamedModelAdmin(admin.ModelAdmin):
    """Titles, buttons, confirmations and messages with the model's name in the right case and gender."""

    def changelist_view(self, request, extra_context=None):
        noun = noun_for(self.opts)
        if noun is not None:
            if IS_POPUP_VAR in request.GET:
                title = gettext("Select %s")
            elif self.has_change_permission(request):
                title = gettext("Select %s to change")
            else:
                title = gettext("Select %s to view")
            extra_context = {"title": title % noun.accusative, **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        noun = noun_for(self.opts)
        if noun is not None:
            if add:
                title = gettext("Add %s")
            elif self.has_change_permission(request, obj):
                title = gettext("Change %s")
            else:
                title = gettext("View %s")
            if context.get("title") == title % self.opts.verbose_name:  # Django's, not one an admin set
                context["title"] = title % noun.accusative
        return super().render_change_form(request, context, add, change, form_url, obj)

    def delete_view(self, request, object_id, extra_context=None):
        noun = noun_for(self.opts)
        if noun is not None:  # "Вы уверены, что хотите удалить заявку …?"
            extra_context = {"object_name": str(noun.accusative), **(extra_context or {})}
        return super().delete_view(request, object_id, extra_context)

    def get_actions(self, request):
        actions = super().get_actions(request)
        noun = noun_for(self.opts)
        if "delete_selected" in actions and noun is not None and noun.accusative_plural:
            function, name, _description = actions["delete_selected"]
            actions["delete_selected"] = (
                function,
                name,
                pgettext("animate", "Delete selected %(verbose_name_plural)s")
                % {"verbose_name_plural": noun.accusative_plural},
            )
        return actions

    def message_user(self, request, message, level=20, extra_tags="", fail_silently=False):
        return super().message_user(request, gendered_message(message, self.opts), level, extra_tags, fail_silently)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if field is not None and db_field.related_model is Permission:
            field.label_from_instance = permission_label
        return field


class AdminSite(admin.AdminSite):
    """Django's admin site; every ModelAdmin registered on it is a NamedModelAdmin. Without the app list down
    the left of every page (the start page and the breadcrumbs lead everywhere): a list page keeps the screen's
    width for its columns (tests/browser/test_admin_russian.py: they fit 1280 px)."""

    enable_nav_sidebar = False

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, NamedModelAdmin):
            admin_class = type(
                admin_class.__name__,
                (NamedModelAdmin, admin_class),
                {"__module__": admin_class.__module__, "__qualname__": admin_class.__qualname__},
            )
        return super().register(model_or_iterable, admin_class, **options)
