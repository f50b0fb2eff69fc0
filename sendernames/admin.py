"""Admin for sender-name applications: file, submit, follow. Thin: every change goes through services."""

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.services import Action, action_record
from common.admin_display import date_only, datetime_to_second
from idgtl.contract import SenderNameStatus
from sendernames import selectors
from sendernames.forms import (
    AddBrandForm,
    ManualStatusForm,
    SenderNameApplicationForm,
    SenderNameGroupForm,
    upload_guarded,
)
from sendernames.models import (
    ErrorKind,
    SenderNameApplication,
    SenderNameDocument,
    SenderNameGroup,
    SenderNameStatusChange,
    StatusReadability,
    status_label,
)
from sendernames.services import (
    accounts_recheck_readability,
    application_create,
    application_refresh_status,
    application_set_status,
    application_submit,
    application_update,
    group_add_brand,
    group_create,
)
from sendernames.services.readability import unreadable_message
from sendernames.status_badge import status_badge

APPLICATION_FIELDS = [
    "account",
    "channel_type",
    "common_type",
    "brand",
    "date_from",
    "sender_name",
    "counteragent_name",
    "counteragent_inn",
]


def readability_text(application: SenderNameApplication):
    """On an affected application: why its status is not read, and when b24sms asks again."""
    if not application.status_not_readable:
        return "—"
    state = StatusReadability.objects.filter(account_id=application.account_id).first()
    detail = ""
    if state is not None and state.next_check_at:
        detail = gettext(
            "i-dgtl answered HTTP %(code)s for its read endpoint since %(since)s; asked again once a "
            "day (next: %(next)s)."
        ) % {
            "code": state.http_status or "—",
            "since": date_format(timezone.localtime(state.unreadable_since), "DATETIME_FORMAT")
            if state.unreadable_since
            else "—",
            "next": date_format(timezone.localtime(state.next_check_at), "DATETIME_FORMAT"),
        }
    return format_html('<strong style="color:#ba2121">{}</strong> <span>{}</span>', unreadable_message(), detail)


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


@admin.display(description=_("start date"), ordering="date_from")
def start_date(obj):
    """The day a name may be used from (stored as 00:00 Moscow time): a date, no time."""
    return date_only(obj.date_from)


def read_only_fields(fields: list) -> list:
    """The fields as a page that cannot change them shows them: the start date as a date."""
    return [start_date if name == "date_from" else name for name in fields]


class HistoryInline(ReadOnlyInline):
    model = SenderNameStatusChange
    fields = ["recorded", "previous_status_label", "status_display", "comment", "cause", "status_date", "changed_by"]

    @admin.display(description=_("time"))
    def recorded(self, change):
        return datetime_to_second(change.created_at)

    @admin.display(description=_("previous status"))
    def previous_status_label(self, change):
        return status_label(change.previous_status) if change.previous_status else "—"

    @admin.display(description=_("status"))
    def status_display(self, change):
        return status_label(change.status)


@admin.action(permissions=["delete"])
def delete_drafts(modeladmin, request, queryset):
    """Django's bulk delete, refused when the selection holds an application already sent to i-dgtl."""
    locked = [application for application in queryset.order_by("pk") if not application.is_editable]
    if locked:
        modeladmin.message_user(
            request,
            gettext(
                "Nothing was deleted: %(names)s cannot be deleted because it was submitted to i-dgtl (or is being "
                "submitted). Only drafts and failed applications can be deleted."
            )
            % {"names": ", ".join(str(application) for application in locked)},
            messages.ERROR,
        )
        return None
    return delete_selected(modeladmin, request, queryset)


@admin.register(SenderNameApplication)
class SenderNameApplicationAdmin(admin.ModelAdmin):
    form = SenderNameApplicationForm
    # The status column shows the submission's state until i-dgtl gives a status; i-dgtl's id is on the
    # application's page: the list fits a 1280-px screen.
    list_display = [
        "sender_name",
        "brand",
        "common_type",
        "coloured_status",
        "fee",
        start_date,
        "counteragent_name",
        "created_at",
    ]
    list_filter = [StatusFilter, "brand", "common_type", "submission_state"]
    search_fields = ["sender_name", "counteragent_inn", "counteragent_name"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"
    actions = ["submit_to_idgtl", "refresh_status", "set_status_by_hand"]
    inlines = [DocumentInline, HistoryInline]
    remote_fields = [
        "submission_state",
        "remote_id",
        "coloured_status",
        "status_source",
        "status_readability",
        "status_comment",
        "fee",
        "usable_from",
        "last_error",
        "group_link",
        "submitted_at",
        "status_checked_at",
        "next_status_check_at",
        "created_by",
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request):
        return selectors.with_status_readability(super().get_queryset(request))

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": APPLICATION_FIELDS + ["new_documents"]})]
        if not self.has_change_permission(request, obj):  # submitted, or a reader who may not change it
            return [
                (None, {"fields": read_only_fields(APPLICATION_FIELDS)}),
                (_("i-dgtl"), {"fields": self.remote_fields}),
            ]
        application_fields = APPLICATION_FIELDS + (["new_documents"] if obj.is_editable else [])
        return [(None, {"fields": application_fields}), (_("i-dgtl"), {"fields": self.remote_fields})]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        if not self.has_change_permission(request, obj):
            return read_only_fields(APPLICATION_FIELDS) + self.remote_fields  # submitted: read-only
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

    @admin.display(description=_("status set"))
    def status_source(self, application):
        if not application.status:
            return "—"
        when = date_format(application.status_date, "DATE_FORMAT") if application.status_date else "—"
        if application.status_manual:
            change = application.history.filter(cause="manual").select_related("changed_by").last()
            who = change.changed_by.get_username() if change and change.changed_by else "—"
            text = gettext("by hand by %(user)s, dated %(date)s") % {"user": who, "date": when}
        else:
            text = gettext("from i-dgtl, %(date)s") % {"date": when}
        return text

    @admin.display(description=_("reading from i-dgtl"))
    def status_readability(self, application):
        return readability_text(application)

    @admin.display(description=_("usable for sending from"))
    def usable_from(self, application):
        return selectors.usable_from_text(application)

    @admin.display(description=_("filed with several operators"))
    def group_link(self, application):
        if not application.group_id:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:sendernames_sendernamegroup_change", args=[application.group_id]),
            application.group,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The page's tools offer setting the status by hand to who may (object-tools of the change form)."""
        extra_context = {**(extra_context or {}), "can_set_status": self.has_set_status_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("last error"))
    def last_error(self, application):
        if not application.last_error_kind:
            return "—"
        code = f" {application.last_error_code}" if application.last_error_code else ""
        colour = "#fd7e14" if application.last_error_kind == ErrorKind.CONFIGURATION else "#dc3545"
        return format_html(
            '<span style="color:{}">{}{}:</span> {}',
            colour,
            application.get_last_error_kind_display(),
            code,
            application.last_error_message,
        )

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (
            ValidationError
        ) as exc:  # a rule broken between the form's check and the save (a duplicate filed meanwhile)
            self.message_user(
                request, gettext("Nothing was saved: %(errors)s") % {"errors": " ".join(exc.messages)}, messages.ERROR
            )
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

    def has_set_status_permission(self, request):
        return request.user.has_perm("sendernames.set_application_status")

    @admin.action(description=_("Submit to i-dgtl"), permissions=["submit"])
    def submit_to_idgtl(self, request, queryset):
        def run(application):
            try:
                result = application_submit(application_id=application.pk)
            except ValidationError as exc:
                raise ValidationError(
                    gettext("not submitted: %(errors)s") % {"errors": " ".join(exc.messages)}
                ) from exc
            action_record(instance=application, action=Action.SUBMIT, result=result.message, queued=result.queued)
            return (messages.SUCCESS if result.queued else messages.INFO), result.message

        self._report_each(request, queryset, run, messages.ERROR)

    @admin.action(description=_("Refresh status"), permissions=["refresh"])
    def refresh_status(self, request, queryset):
        def run(application):
            result = application_refresh_status(application_id=application.pk)
            action_record(
                instance=application,
                action=Action.REFRESH_STATUS,
                result=result.summary,
                status=result.application.status,
            )
            level = messages.ERROR if result.error_kind else messages.SUCCESS if result.changed else messages.INFO
            return level, result.summary

        self._report_each(request, queryset, run, messages.WARNING)

    @admin.action(description=_("Set the status by hand (from i-dgtl's cabinet)"), permissions=["set_status"])
    def set_status_by_hand(self, request, queryset):
        """An intermediate page: the status, its date and a note, then set on each selected application."""
        return self._set_status_page(request, queryset, action="set_status_by_hand")

    def _set_status_page(self, request, queryset, *, action=None):
        applications = list(queryset.order_by("pk"))
        if "apply" in request.POST:
            form = ManualStatusForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data

                def run(application):
                    result = application_set_status(
                        application_id=application.pk,
                        status=data["status"],
                        status_date=data["date"],
                        note=data["note"],
                        user=request.user,
                    )
                    action_record(
                        instance=application,
                        action=Action.SET_STATUS,
                        result=result.summary,
                        status=data["status"],
                        date=str(data["date"]),
                        note=data["note"],
                    )
                    return (messages.SUCCESS if result.changed else messages.INFO), result.summary

                self._report_each(request, queryset, run, messages.ERROR)
                if action is None:
                    return HttpResponseRedirect(
                        reverse("admin:sendernames_sendernameapplication_change", args=[applications[0].pk])
                    )
                return None
        else:
            form = ManualStatusForm(initial={"date": timezone.localdate(), "status": SenderNameStatus.APPROVED})
        return TemplateResponse(
            request,
            "sendernames/admin/set_status.html",
            {
                **self.admin_site.each_context(request),
                "title": gettext("Set the status by hand"),
                "form": form,
                "applications": applications,
                "action": action,
                "opts": self.model._meta,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "unreadable_message": unreadable_message(),
            },
        )

    def set_status_view(self, request, object_id):
        if not (self.has_view_permission(request) and self.has_set_status_permission(request)):
            raise PermissionDenied
        application = get_object_or_404(self.get_queryset(request), pk=object_id)
        return self._set_status_page(request, self.get_queryset(request).filter(pk=application.pk))

    # --- documents are downloaded through the admin (staff with the view permission), never from public media
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:object_id>/set-status/",
                self.admin_site.admin_view(self.set_status_view),
                name="sendernames_set_status",
            ),
            path(
                "<int:application_id>/documents/<int:document_id>/download/",
                self.admin_site.admin_view(self.document_download),
                name="sendernames_document_download",
            ),
            # add and change take documents: an oversized one is dropped while it arrives (forms.DocumentSizeGuard)
            path("add/", upload_guarded(self.admin_site.admin_view(self.add_view)), name="{}_{}_add".format(*info)),
            path(
                "<path:object_id>/change/",
                upload_guarded(self.admin_site.admin_view(self.change_view)),
                name="{}_{}_change".format(*info),
            ),
        ] + super().get_urls()

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form)(form.__name__, (form,), {"upload_request": request})

    def document_download(self, request, application_id, document_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        document = get_object_or_404(SenderNameDocument, application_id=application_id, pk=document_id)
        return document.download_response()


# --- One name for several operators ----------------------------------------------------------------
GROUP_FIELDS = [
    "account",
    "channel_type",
    "common_type",
    "date_from",
    "sender_name",
    "counteragent_name",
    "counteragent_inn",
]


@admin.register(SenderNameGroup)
class SenderNameGroupAdmin(admin.ModelAdmin):
    """File one name with several operators; its page is the matrix operator × status. Read-only once filed:
    an operator is added with "Add an operator" (files just that one)."""

    form = SenderNameGroupForm
    list_display = ["sender_name", "operators", "common_type", start_date, "counteragent_name", "created_at"]
    search_fields = ["sender_name", "counteragent_inn", "counteragent_name"]
    list_select_related = ["account"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        applications = selectors.with_status_readability(SenderNameApplication.objects.order_by("pk"))
        return super().get_queryset(request).prefetch_related(Prefetch("applications", queryset=applications))

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": GROUP_FIELDS[:3] + ["brands"] + GROUP_FIELDS[3:] + ["new_documents"]})]
        return [(_("Request"), {"fields": read_only_fields(GROUP_FIELDS) + ["created_by", "created_at"]})]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else read_only_fields(GROUP_FIELDS) + ["created_by", "created_at"]

    def has_add_permission(self, request):
        return super().has_add_permission(request) and request.user.has_perm("sendernames.submit_application")

    def has_change_permission(self, request, obj=None):
        return False  # filed is filed: operators are added on their own page (add_brand_view)

    def has_delete_permission(self, request, obj=None):
        return False  # its applications were sent to i-dgtl

    def has_add_brand_permission(self, request):
        return request.user.has_perm("sendernames.change_sendernamegroup") and request.user.has_perm(
            "sendernames.submit_application"
        )

    @admin.display(description=_("operators"))
    def operators(self, group):
        rows = selectors.group_matrix(group, applications=group.applications.all())
        return format_html_join(" · ", "{}: {}", ((row.brand_label, status_badge(row.application)) for row in rows))

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form)(form.__name__, (form,), {"upload_request": request})

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data.get(name) for name in GROUP_FIELDS}
        filing = group_create(
            brands=form.cleaned_data.get("brands"),
            documents=form.cleaned_data.get("new_documents") or [],
            created_by=request.user,
            **data,
        )
        request._sendernames_filing = filing  # response_add says what happened
        if filing.created:  # each of its applications is queued for submission to i-dgtl
            for application in filing.group.applications.all():
                action_record(instance=application, action=Action.SUBMIT, result=filing.message, group=filing.group.pk)
        obj.pk = filing.group.pk
        obj.refresh_from_db()

    def log_addition(self, request, obj, message):
        filing = getattr(request, "_sendernames_filing", None)
        if filing is None or filing.created:
            return super().log_addition(request, obj, message)
        return None

    def response_add(self, request, obj, post_url_continue=None):
        filing = getattr(request, "_sendernames_filing", None)
        if filing is not None:
            self.message_user(request, filing.message, messages.SUCCESS if filing.created else messages.INFO)
        return HttpResponseRedirect(reverse("admin:sendernames_sendernamegroup_change", args=[obj.pk]))

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except ValidationError as exc:  # a rule broken between the form's check and the save (filed meanwhile)
            self.message_user(
                request, gettext("Nothing was filed: %(errors)s") % {"errors": " ".join(exc.messages)}, messages.ERROR
            )
            return HttpResponseRedirect(request.get_full_path())

    def change_view(self, request, object_id, form_url="", extra_context=None):
        group = self.get_object(request, object_id)
        if group is not None:
            applications = list(selectors.group_applications(group))
            matrix = selectors.group_matrix(group, applications)
            shown = {row.application.pk for row in matrix}
            extra_context = {
                **(extra_context or {}),
                "matrix": matrix,
                "earlier": [application for application in applications if application.pk not in shown],
                "brands_missing": selectors.group_brands_missing(group, applications),
                "can_add_brand": self.has_add_brand_permission(request),
                "can_set_status": request.user.has_perm("sendernames.set_application_status"),
                "unreadable_message": unreadable_message(),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:object_id>/add-brand/",
                self.admin_site.admin_view(self.add_brand_view),
                name="sendernames_group_add_brand",
            ),
            path("add/", upload_guarded(self.admin_site.admin_view(self.add_view)), name="{}_{}_add".format(*info)),
        ] + super().get_urls()

    def add_brand_view(self, request, object_id):
        if not (self.has_view_permission(request) and self.has_add_brand_permission(request)):
            raise PermissionDenied
        group = get_object_or_404(self.get_queryset(request), pk=object_id)
        missing = selectors.group_brands_missing(group)
        form = AddBrandForm(request.POST or None, brands=missing)
        if request.method == "POST" and form.is_valid():
            try:
                filing = group_add_brand(group_id=group.pk, brand=form.cleaned_data["brand"], created_by=request.user)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error("brand" if field not in form.fields else field, errors)
            else:
                action_record(
                    instance=group,
                    action=Action.ADD_OPERATOR,
                    result=filing.message,
                    brand=form.cleaned_data["brand"],
                    filed=filing.filed,
                    application=filing.application.pk,
                )
                self.message_user(request, filing.message, messages.SUCCESS if filing.filed else messages.INFO)
                return HttpResponseRedirect(reverse("admin:sendernames_sendernamegroup_change", args=[group.pk]))
        return TemplateResponse(
            request,
            "sendernames/admin/add_brand.html",
            {
                **self.admin_site.each_context(request),
                "title": gettext("Add an operator to %(name)s") % {"name": group},
                "form": form,
                "group": group,
                "brands_missing": missing,
                "opts": self.model._meta,
            },
        )


@admin.register(StatusReadability)
class StatusReadabilityAdmin(admin.ModelAdmin):
    """Accounts whose statuses cannot be read from i-dgtl (and those that can again). Written by the sync."""

    list_display = ["account", "readable", "unreadable_since", "http_status", "checked_at", "next_check_at"]
    readonly_fields = [
        "account",
        "readable",
        "unreadable_since",
        "http_status",
        "detail",
        "checked_at",
        "next_check_at",
    ]
    actions = ["check_again_now"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_refresh_permission(self, request):
        return request.user.has_perm("sendernames.refresh_application_status")

    @admin.action(description=_("Check again now"), permissions=["refresh"])
    def check_again_now(self, request, queryset):
        now = timezone.now()
        queryset.filter(readable=False).update(next_check_at=now)
        results = accounts_recheck_readability(now=now)
        for state in queryset.order_by("account__name").select_related("account"):
            if state.account_id not in results:
                continue
            if results[state.account_id]:
                text, level = (
                    gettext("%(account)s: i-dgtl answers again; polling resumes.") % {"account": state.account},
                    messages.SUCCESS,
                )
            else:
                text, level = (
                    gettext("%(account)s: still not readable; asked again once a day.") % {"account": state.account},
                    messages.WARNING,
                )
            action_record(instance=state, action=Action.RECHECK_READABILITY, result=text)
            self.message_user(request, text, level)
