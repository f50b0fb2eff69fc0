"""The audit trail in the admin: read-only, filterable by user, by kind and by object, and by action.

Superusers see it, and whom an administrator grants ``audit.view_auditlogentry``: the default roles
(Viewer, Operator) do not, as the trail names every operator, address and change of access rights.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.db.models import BooleanField
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.models import AuditLogEntry
from common.admin_display import datetime_to_second

EMPTY = "—"
YES_NO = {"True": _("yes"), "False": _("no")}


class ActorFilter(admin.SimpleListFilter):
    """The users that appear in the trail, and b24sms itself (entries without an operator)."""

    title = _("user")
    parameter_name = "actor"
    SYSTEM = "none"

    def lookups(self, request, model_admin):
        ids = AuditLogEntry.objects.exclude(actor=None).values_list("actor_id", flat=True).distinct()
        users = get_user_model().objects.filter(pk__in=ids).order_by("username")
        return [(str(user.pk), user.get_username()) for user in users] + [(self.SYSTEM, gettext("b24sms itself"))]

    def queryset(self, request, queryset):
        if self.value() == self.SYSTEM:
            return queryset.filter(actor=None)
        if self.value() and self.value().isdigit():
            return queryset.filter(actor_id=int(self.value()))
        return queryset


class ObjectTypeFilter(admin.SimpleListFilter):
    """The kinds of object that appear in the trail, by their names."""

    title = _("object type")
    parameter_name = "object_type"

    def lookups(self, request, model_admin):
        ids = AuditLogEntry.objects.values_list("content_type_id", flat=True).distinct()
        types = [
            (str(ct.pk), capfirst(ct.model_class()._meta.verbose_name) if ct.model_class() else ct.model)
            for ct in ContentType.objects.filter(pk__in=ids)
        ]
        return sorted(types, key=lambda item: str(item[1]))

    def queryset(self, request, queryset):
        if self.value() and self.value().isdigit():
            return queryset.filter(content_type_id=int(self.value()))
        return queryset


def object_admin_url(entry) -> str | None:
    if entry.object_id is None:
        return None
    try:
        return reverse(
            f"admin:{entry.content_type.app_label}_{entry.content_type.model}_change", args=[entry.object_id]
        )
    except NoReverseMatch:
        return None


def change_values(entry) -> list[tuple[str, str, str]]:
    """(field, before, after) of an edit, by the fields' names and the choices' labels; m2m as added/removed."""
    model = entry.content_type.model_class()
    display = {}
    rows = []
    for name, change in (entry.changes_dict or {}).items():
        try:
            field = model._meta.get_field(name) if model else None
        except FieldDoesNotExist:
            field = None
        label = capfirst(field.verbose_name) if field is not None and hasattr(field, "verbose_name") else name
        if isinstance(change, dict) and change.get("type") == "m2m":
            objects = ", ".join(change.get("objects", []))
            if change.get("operation") == "add":
                rows.append((label, EMPTY, gettext("added: %(objects)s") % {"objects": objects}))
            else:
                rows.append((label, gettext("removed: %(objects)s") % {"objects": objects}, EMPTY))
            continue
        if not display:
            display = {str(key): value for key, value in entry.changes_display_dict.items()}
        before, after = display.get(str(getattr(field, "verbose_name", name)), change)[:2]
        if isinstance(field, BooleanField):
            before, after = (YES_NO.get(value, value) for value in (before, after))
        rows.append(
            (label, before if before not in ("None", "") else EMPTY, after if after not in ("None", "") else EMPTY)
        )
    return rows


if admin.site.is_registered(AuditLogEntry):  # auditlog's own admin (its app comes first): replaced by this one
    admin.site.unregister(AuditLogEntry)


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin):
    list_display = ["when", "who", "action", "object_type", "object_link", "summary", "remote_addr"]
    list_filter = ["action", ActorFilter, ObjectTypeFilter, "timestamp"]
    list_select_related = ["actor", "content_type"]
    search_fields = ["object_repr", "changes_text", "actor__username"]
    date_hierarchy = "timestamp"
    show_full_result_count = False
    fields = [
        "when",
        "who",
        "remote_addr",
        "action",
        "object_type",
        "object_link",
        "changes_table",
        "result",
        "details",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the trail is kept: nobody deletes what they did from it here

    @admin.display(description=_("time"), ordering="timestamp")
    def when(self, entry):
        return datetime_to_second(entry.timestamp)

    @admin.display(description=_("user"), ordering="actor__username")
    def who(self, entry):
        if entry.actor is not None:
            return entry.actor.get_username()
        return gettext("b24sms itself")

    @admin.display(description=_("object type"))
    def object_type(self, entry):
        model = entry.content_type.model_class()
        return capfirst(model._meta.verbose_name) if model else entry.content_type.model

    @admin.display(description=_("object"), ordering="object_repr")
    def object_link(self, entry):
        """The object (its page, while it exists) and a link to every entry of the same object."""
        url = object_admin_url(entry)
        shown = format_html('<a href="{}">{}</a>', url, entry.object_repr) if url else entry.object_repr
        if entry.object_id is None:
            return shown
        trail = (
            reverse("admin:audit_auditlogentry_changelist")
            + f"?object_type={entry.content_type_id}&object_id={entry.object_id}"
        )
        return format_html(
            '{} <a href="{}" class="b24-audit-object-trail" title="{}">({})</a>',
            shown,
            trail,
            gettext("Every entry of this object"),
            gettext("all entries"),
        )

    @admin.display(description=_("what"))
    def summary(self, entry):
        if entry.changes_text:
            return entry.changes_text if len(entry.changes_text) <= 120 else entry.changes_text[:119] + "…"
        if entry.action == AuditLogEntry.Action.UPDATE:
            return ", ".join(str(label) for label, _before, _after in change_values(entry)) or EMPTY
        return EMPTY

    @admin.display(description=_("changes"))
    def changes_table(self, entry):
        rows = change_values(entry)
        if not rows:
            return EMPTY
        return format_html(
            '<table class="b24-audit-changes"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            gettext("field"),
            gettext("before"),
            gettext("after"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=_("result"))
    def result(self, entry):
        return entry.changes_text or EMPTY

    @admin.display(description=_("details"))
    def details(self, entry):
        data = entry.additional_data or {}
        if not data:
            return EMPTY
        return format_html_join(
            "",
            "<div><strong>{}</strong>: {}</div>",
            ((key, ", ".join(map(str, value)) if isinstance(value, list) else value) for key, value in data.items()),
        )
