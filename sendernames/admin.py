"""Admin for sender-name applications: file, submit, follow. Thin: every change goes through services."""
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from idgtl.contract import SenderNameStatus

from .forms import SenderNameApplicationForm, upload_guarded
from .models import ErrorKind, SenderNameApplication, SenderNameDocument, SenderNameStatusChange
from .services import application_create, application_refresh_status, application_submit, application_update

STATUS_COLOURS = {
    SenderNameStatus.PRE_REVIEW: "#6c757d",
    SenderNameStatus.REVIEW: "#0d6efd",
    SenderNameStatus.APPROVED: "#198754",
    SenderNameStatus.REJECTED: "#dc3545",
    SenderNameStatus.CANCELED: "#6f42c1",
}
UNKNOWN_STATUS_COLOUR = "#fd7e14"
APPLICATION_FIELDS = ["account", "channel_type", "common_type", "brand", "date_from", "sender_name",
                      "counteragent_name", "counteragent_inn"]


def status_badge(application: SenderNameApplication):
    if not application.status:
        return format_html('<span style="color:#6c757d">{}</span>', application.get_submission_state_display())
    colour = STATUS_COLOURS.get(application.status, UNKNOWN_STATUS_COLOUR)
    return format_html('<strong style="color:{}">{}</strong>', colour, application.status_label)


class StatusFilter(admin.SimpleListFilter):
    """i-dgtl status: the known ones, plus any unknown string some application actually has."""
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        present = set(model_admin.get_queryset(request).exclude(status="").values_list("status", flat=True).distinct())
        known = [(value, label) for value, label in SenderNameStatus.choices]
        unknown = [(value, value) for value in sorted(present - set(SenderNameStatus.values))]
        return known + unknown

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class ReadOnlyInline(admin.TabularInline):
    """Rows written by the services only: shown, never added, changed or deleted here."""
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class DocumentInline(ReadOnlyInline):
    model = SenderNameDocument
    fields = ["position", "download", "content_type", "size", "created_at"]

    @admin.display(description=_("document"))
    def download(self, document):
        url = reverse("admin:sendernames_document_download", args=[document.application_id, document.pk])
        return format_html('<a href="{}">{}</a>', url, document.original_name)


class HistoryInline(ReadOnlyInline):
    model = SenderNameStatusChange
    fields = ["created_at", "previous_status", "status", "comment", "cause"]


@admin.action(permissions=["delete"])
def delete_drafts(modeladmin, request, queryset):
    """Django's bulk delete, refused when the selection holds an application already sent to i-dgtl."""
    locked = [application for application in queryset.order_by("pk") if not application.is_editable]
    if locked:
        modeladmin.message_user(request, gettext(
            "Nothing was deleted: %(names)s cannot be deleted because it was submitted to i-dgtl (or is being "
            "submitted). Only drafts and failed applications can be deleted.") % {
            "names": ", ".join(str(application) for application in locked)}, messages.ERROR)
        return None
    return delete_selected(modeladmin, request, queryset)


@admin.register(SenderNameApplication)
class SenderNameApplicationAdmin(admin.ModelAdmin):
    form = SenderNameApplicationForm
    list_display = ["sender_name", "brand", "common_type", "coloured_status", "submission_state", "remote_id", "fee",
                    "date_from", "counteragent_name", "created_at"]
    list_filter = [StatusFilter, "brand", "common_type", "submission_state"]
    search_fields = ["sender_name", "counteragent_inn", "counteragent_name"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"
    actions = ["submit_to_idgtl", "refresh_status"]
    inlines = [DocumentInline, HistoryInline]
    remote_fields = ["submission_state", "remote_id", "coloured_status", "status_comment", "fee", "last_error",
                     "submitted_at", "status_checked_at", "next_status_check_at", "created_by", "created_at", "updated_at"]

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": APPLICATION_FIELDS + ["new_documents"]})]
        application_fields = APPLICATION_FIELDS + (["new_documents"] if obj.is_editable else [])
        return [(None, {"fields": application_fields}), (_("i-dgtl"), {"fields": self.remote_fields})]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        if not obj.is_editable:
            return APPLICATION_FIELDS + self.remote_fields  # submitted: read-only
        return ["account"] + self.remote_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def has_change_permission(self, request, obj=None):
        """A submitted application is shown read-only."""
        return super().has_change_permission(request, obj) and (obj is None or obj.is_editable)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.is_editable)

    @admin.display(description=_("status"), ordering="status")
    def coloured_status(self, application):
        return status_badge(application)

    @admin.display(description=_("last error"))
    def last_error(self, application):
        if not application.last_error_kind:
            return "—"
        code = f" {application.last_error_code}" if application.last_error_code else ""
        colour = "#fd7e14" if application.last_error_kind == ErrorKind.CONFIGURATION else "#dc3545"
        return format_html('<span style="color:{}">{}{}:</span> {}', colour, application.get_last_error_kind_display(),
                           code, application.last_error_message)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:  # a rule broken between the form's check and the save (a duplicate filed meanwhile)
            self.message_user(request, gettext("Nothing was saved: %(errors)s") % {"errors": " ".join(exc.messages)},
                              messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data.get(name) for name in APPLICATION_FIELDS}
        documents = form.cleaned_data.get("new_documents") or []
        if change:
            data.pop("account")  # fixed once filed
            application_update(application=obj, documents=documents, **data)
            obj.refresh_from_db()
            return
        created = application_create(documents=documents, created_by=request.user, **data)
        obj.pk = created.pk
        obj.refresh_from_db()

    # --- actions: each says what happened to each application ---------------------------------
    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            actions["delete_selected"] = (delete_drafts, "delete_selected", actions["delete_selected"][2])
        return actions

    def _report_each(self, request, queryset, run, refused: str):
        """Run a service per application and say what happened to each: ``run`` returns (level, message);
        a rule the application does not meet (ValidationError) is reported with ``refused``'s level."""
        for application in queryset.order_by("pk"):
            try:
                level, message = run(application)
            except ValidationError as exc:
                level, message = refused, " ".join(exc.messages)
            self.message_user(request, f"{application}: {message}", level)

    def has_submit_permission(self, request):
        return request.user.has_perm("sendernames.submit_application")

    def has_refresh_permission(self, request):
        return request.user.has_perm("sendernames.refresh_application_status")

    @admin.action(description=_("Submit to i-dgtl"), permissions=["submit"])
    def submit_to_idgtl(self, request, queryset):
        def run(application):
            try:
                result = application_submit(application_id=application.pk)
            except ValidationError as exc:
                raise ValidationError(gettext("not submitted: %(errors)s") % {"errors": " ".join(exc.messages)})
            return (messages.SUCCESS if result.queued else messages.INFO), result.message

        self._report_each(request, queryset, run, messages.ERROR)

    @admin.action(description=_("Refresh status"), permissions=["refresh"])
    def refresh_status(self, request, queryset):
        def run(application):
            result = application_refresh_status(application_id=application.pk)
            level = messages.ERROR if result.error_kind else messages.SUCCESS if result.changed else messages.INFO
            return level, result.summary

        self._report_each(request, queryset, run, messages.WARNING)

    # --- documents are downloaded through the admin (staff with the view permission), never from public media
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<int:application_id>/documents/<int:document_id>/download/",
                 self.admin_site.admin_view(self.document_download), name="sendernames_document_download"),
            # add and change take documents: an oversized one is dropped while it arrives (forms.DocumentSizeGuard)
            path("add/", upload_guarded(self.admin_site.admin_view(self.add_view)), name="%s_%s_add" % info),
            path("<path:object_id>/change/", upload_guarded(self.admin_site.admin_view(self.change_view)),
                 name="%s_%s_change" % info),
        ] + super().get_urls()

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form)(form.__name__, (form,), {"upload_request": request})

    def document_download(self, request, application_id, document_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        document = get_object_or_404(SenderNameDocument, application_id=application_id, pk=document_id)
        return document.download_response()

