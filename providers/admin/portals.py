"""Admin: Bitrix24 applications, installations, providers and registrations.

Secrets are never shown in full: the client_secret field is write-only (blank keeps the saved
one), tokens appear masked. Provider changes go through the registration services, so the
admin enforces exactly the rules of the API and pushes edits to the portals.
"""

import phonenumbers
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.template.response import TemplateResponse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.utils.translation import gettext as _g
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from audit.services import Action, action_record
from idgtl.admin import SecretKeepingForm, SecretMaskingAdmin
from idgtl.models import mask_secret
from providers.admin.test_sms import send_test_sms
from providers.models import (
    BitrixApplication,
    Installation,
    InstallationState,
    Provider,
    ProviderRegistration,
    RegistrationState,
)
from providers.services import installations as installation_services
from providers.services import registration as registration_services
from sendernames.selectors import sender_name_choices

STATE_COLOURS = {
    InstallationState.ACTIVE: "#2e7d32",
    InstallationState.NEEDS_REINSTALL: "#c62828",
    InstallationState.REMOVED: "#757575",
    RegistrationState.REGISTERED: "#2e7d32",
    RegistrationState.PENDING: "#f9a825",
    RegistrationState.REMOVING: "#f9a825",
    RegistrationState.FAILED: "#c62828",
    RegistrationState.REMOVED: "#757575",
}


def _badge(value: str, label) -> str:
    return format_html('<strong style="color:{}">{}</strong>', STATE_COLOURS.get(value, "inherit"), label)


# --- Applications -----------------------------------------------------------------------------


class BitrixApplicationForm(SecretKeepingForm):
    secret_fields = ("client_secret",)

    class Meta:
        model = BitrixApplication
        fields = ["name", "client_id", "client_secret"]


@admin.register(BitrixApplication)
class BitrixApplicationAdmin(SecretMaskingAdmin):
    form = BitrixApplicationForm
    masked_secrets = {"client_secret": "client_secret_masked"}
    list_display = ["name", "client_id", "is_default", "client_secret_masked", "install_url", "installation_count"]
    readonly_fields = ["is_default", "install_url", "created_at", "updated_at"]
    search_fields = ["name", "client_id"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_installations=Count("installations"))

    @admin.display(description=_("client_secret"))
    def client_secret_masked(self, obj):
        return obj.client_secret_masked

    @admin.display(description=_("install URL (paste into Bitrix24)"))
    def install_url(self, obj):
        return installation_services.application_install_url(obj) if obj.pk else "—"

    @admin.display(description=_("installations"), ordering="_installations")
    def installation_count(self, obj):
        return getattr(obj, "_installations", None)


# --- Installations ----------------------------------------------------------------------------


class InstallationForm(forms.ModelForm):
    class Meta:
        model = Installation
        fields = [
            "account",
            "default_region",
            "rate_limit_burst",
            "rate_limit_drain_per_second",
            "quota_monthly_parts",
            "quota_recipient_per_hour",
            "quota_warning_percent",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "quota_warning_percent" in self.fields:  # (not there for a user who may only view)
            self.fields["quota_warning_percent"].required = False  # empty: the default (80 %)

    def _not_negative(self, name):
        value = self.cleaned_data.get(name)
        if value is not None and value < 0:
            raise ValidationError(_("Must not be negative."))
        return value

    def clean_quota_monthly_parts(self):
        return self._not_negative("quota_monthly_parts")

    def clean_quota_recipient_per_hour(self):
        return self._not_negative("quota_recipient_per_hour")

    def clean_quota_warning_percent(self):
        percent = self._not_negative("quota_warning_percent")
        if percent is None:
            return Installation._meta.get_field("quota_warning_percent").default
        if percent > 100:
            raise ValidationError(_("From 0 to 100 %."))
        return percent

    def clean_default_region(self):
        region = (self.cleaned_data.get("default_region") or "").strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationError(_("Not a known two-letter country code (e.g. RU, KZ, BY)."))
        return region

    def clean_rate_limit_burst(self):
        burst = self.cleaned_data.get("rate_limit_burst")
        if burst is not None and burst < 1:  # the limiter refuses 0: every call to the portal would fail
            raise ValidationError(_("At least 1."))
        return burst

    def clean_rate_limit_drain_per_second(self):
        drain = self.cleaned_data.get("rate_limit_drain_per_second")
        if drain is not None and not 0 < drain <= 1000:
            raise ValidationError(_("More than 0 and at most 1000 requests per second."))
        return drain


@admin.register(Installation)
class InstallationAdmin(admin.ModelAdmin):
    form = InstallationForm
    list_display = [
        "domain",
        "application",
        "state_badge",
        "access_token_expires_at",
        "last_error_short",
        "installed_at",
        "uninstalled_at",
    ]
    list_filter = ["state", "application"]
    list_select_related = ["application"]
    search_fields = ["domain", "member_id"]
    readonly_fields = [
        "application",
        "member_id",
        "domain",
        "state_badge",
        "last_error",
        "client_endpoint",
        "server_endpoint",
        "access_token_masked",
        "access_token_expires_at",
        "refresh_token_masked",
        "application_token_masked",
        "handler_secret_masked",
        "callback_secret_masked",
        "scope",
        "portal_status",
        "installed_by_user_id",
        "lacks_sender_update",
        "bound_events",
        "events_bind_attempted_at",
        "installed_at",
        "uninstalled_at",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["domain", "application", "member_id", "state_badge", "last_error"]}),
        (
            _("Tokens (masked)"),
            {
                "fields": [
                    "access_token_masked",
                    "access_token_expires_at",
                    "refresh_token_masked",
                    "application_token_masked",
                    "handler_secret_masked",
                    "callback_secret_masked",
                    "scope",
                ]
            },
        ),
        (
            _("Portal"),
            {
                "fields": [
                    "client_endpoint",
                    "server_endpoint",
                    "portal_status",
                    "installed_by_user_id",
                    "lacks_sender_update",
                    "bound_events",
                    "events_bind_attempted_at",
                    "installed_at",
                    "uninstalled_at",
                ]
            },
        ),
        (_("Sending"), {"fields": ["account", "default_region", "rate_limit_burst", "rate_limit_drain_per_second"]}),
        (
            _("Quotas"),
            {
                "fields": ["quota_monthly_parts", "quota_recipient_per_hour", "quota_warning_percent"],
                "description": _(
                    "A message over a quota is not sent: it ends failed with the reason, and the "
                    'portal is shown under "Needs attention" on the start page.'
                ),
            },
        ),
    ]

    def has_add_permission(self, request):
        return False  # installations are created by Bitrix24 calling the install endpoint

    def changelist_view(self, request, extra_context=None):
        stuck = list(
            Installation.objects.filter(state=InstallationState.NEEDS_REINSTALL).values_list("domain", flat=True)
        )
        if stuck and request.method == "GET":
            self.message_user(
                request,
                ngettext(
                    "Needs reinstall (no call reaches it until the application is reinstalled there): %(portals)s.",
                    "Need reinstall (no call reaches them until the application is reinstalled there): %(portals)s.",
                    len(stuck),
                )
                % {"portals": ", ".join(stuck)},
                messages.ERROR,
            )
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj):
        label = obj.get_state_display()
        if obj.state == InstallationState.NEEDS_REINSTALL:
            label = _g("Needs reinstall: reinstall the application on the portal")
        return _badge(obj.state, label)

    @admin.display(description=_("last error"))
    def last_error_short(self, obj):
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.display(description=_("access token"))
    def access_token_masked(self, obj):
        return mask_secret(obj.access_token)

    @admin.display(description=_("refresh token"))
    def refresh_token_masked(self, obj):
        return mask_secret(obj.refresh_token)

    @admin.display(description=_("application token"))
    def application_token_masked(self, obj):
        return "••••" if obj.has_application_token else ""  # only its keyed hash is stored

    @admin.display(description=_("handler secret"))
    def handler_secret_masked(self, obj):
        return mask_secret(obj.handler_secret)

    @admin.display(description=_("callback secret"))
    def callback_secret_masked(self, obj):
        return mask_secret(obj.callback_secret)


# --- Providers ----------------------------------------------------------------------------------

PROVIDER_FIELDS = [
    "code",
    "name",
    "name_translations",
    "description",
    "description_translations",
    "sender_name_application",
    "sender_name",
]


class ProviderForm(forms.ModelForm):
    class Meta:
        model = Provider
        fields = PROVIDER_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "sender_name_application" not in self.fields:  # the view-only page: no fields
            return
        field = self.fields["sender_name_application"]
        # Each approved name once, with the operators it is approved for (sendernames.selectors).
        choices = sender_name_choices(include_id=self.instance.sender_name_application_id)
        labels = {choice.application.pk: choice.label for choice in choices}
        field.queryset = field.queryset.filter(pk__in=labels)
        field.label_from_instance = lambda application: labels.get(application.pk, str(application))
        field.help_text = _(
            "Approved names, each once with the operators it is approved for. A name is usable for "
            "sending from 00:00 Moscow time of its start date; one approved but not started yet is "
            "listed with that time. Leave empty and type the sender name for a name registered "
            "outside b24sms."
        )
        self.fields["sender_name"].required = False

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        values = {f: data.get(f) for f in PROVIDER_FIELDS}
        if values["sender_name_application"] is not None and "sender_name_application" in self.changed_data:
            values["sender_name"] = ""  # follow the chosen application
        try:
            data.update(registration_services.provider_clean(**values))
            registration_services.provider_code_clean(provider=self.instance, code=data["code"])
        except ValidationError as exc:
            for field, errors in exc.error_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


def _repair_summary(registration) -> str:
    """The last repair: reason, time and count ("Application updated (ONAPPUPDATE), <time> (2 repairs)"), or —."""
    if not registration.repair_count:
        return "—"
    when = date_format(localtime(registration.repaired_at), "DATETIME_FORMAT") if registration.repaired_at else ""
    count = ngettext("%(n)d repair", "%(n)d repairs", registration.repair_count) % {"n": registration.repair_count}
    return f"{registration.get_repair_reason_display()}, {when} ({count})"


class ProviderRegistrationInline(admin.TabularInline):
    model = ProviderRegistration
    extra = 0
    can_delete = False
    fields = ["installation", "state_badge", "last_error", "registered_at", "checked_at", "repair", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description=_("state"))
    def state_badge(self, obj):
        return _badge(obj.state, obj.get_state_display())

    @admin.display(description=_("last repair"))
    def repair(self, obj):
        return _repair_summary(obj)


class InstallationChoiceForm(forms.Form):
    installations = forms.ModelMultipleChoiceField(
        label=_("Portals"),
        queryset=Installation.objects.filter(state=InstallationState.ACTIVE),
        widget=forms.CheckboxSelectMultiple,
        required=True,
    )


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["code", "name", "sender_name", "registration_summary", "updated_at"]
    search_fields = ["code", "name", "sender_name"]
    inlines = [ProviderRegistrationInline]
    actions = ["register_action", "update_action", "remove_action", "check_action", send_test_sms]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("registrations__installation")

    @admin.display(description=_("portals"))
    def registration_summary(self, obj):
        parts = [f"{r.installation.domain}: {r.get_state_display()}" for r in obj.registrations.all()]
        return "; ".join(parts) or "—"

    def save_model(self, request, obj, form, change):
        values = {f: form.cleaned_data.get(f) for f in PROVIDER_FIELDS}
        if change:
            saved = registration_services.provider_update(provider=obj, **values)
        else:
            saved = registration_services.provider_create(**values)
            obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        registration_services.provider_delete(provider=obj)

    def delete_queryset(self, request, queryset):
        for provider in queryset:
            registration_services.provider_delete(provider=provider)

    def _choose_installations(self, request, queryset, action: str, title):
        """An intermediate page listing active portals; returns the chosen ones or None (page shown)."""
        if "apply" in request.POST:
            form = InstallationChoiceForm(request.POST)
            if form.is_valid():
                return list(form.cleaned_data["installations"])
        else:
            form = InstallationChoiceForm(
                initial={
                    "installations": list(
                        Installation.objects.filter(state=InstallationState.ACTIVE).values_list("pk", flat=True)
                    )
                }
            )
        return TemplateResponse(
            request,
            "providers/admin/choose_installations.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "form": form,
                "queryset": queryset,
                "action": action,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def _report_queued(self, request, provider, registrations, what, action):
        portals = [r.installation.domain for r in registrations]
        if registrations:
            text, level = (
                _g("%(code)s: %(what)s queued on %(portals)s.")
                % {"code": provider.code, "what": what, "portals": ", ".join(portals)},
                messages.SUCCESS,
            )
        else:
            text, level = (
                _g("%(code)s: nothing to do (not on any active portal).") % {"code": provider.code},
                messages.WARNING,
            )
        action_record(instance=provider, action=action, result=text, portals=portals)
        self.message_user(request, text, level)

    # --- actions: each needs its permission (the same as the API's, b24sms/permissions.py) -------
    def has_register_permission(self, request):
        return request.user.has_perm("providers.register_provider")

    def has_check_permission(self, request):
        return request.user.has_perm("providers.check_provider")

    def has_send_test_sms_permission(self, request):
        return request.user.has_perm("providers.send_test_sms")

    @admin.action(description=_("Register on portals"), permissions=["register"])
    def register_action(self, request, queryset):
        chosen = self._choose_installations(request, queryset, "register_action", _g("Register providers on portals"))
        if isinstance(chosen, TemplateResponse):
            return chosen
        for provider in queryset:
            try:
                registrations = registration_services.provider_register(provider=provider, installations=chosen)
            except ValidationError as exc:
                self.message_user(request, f"{provider.code}: {'; '.join(exc.messages)}", messages.ERROR)
                continue
            self._report_queued(request, provider, registrations, _g("registration"), Action.REGISTER)
        return None

    @admin.action(description=_("Push changes to portals (update)"), permissions=["register"])
    def update_action(self, request, queryset):
        for provider in queryset:
            registrations = registration_services.provider_push_update(provider=provider)
            self._report_queued(request, provider, registrations, _g("update"), Action.PUSH_UPDATE)

    @admin.action(description=_("Remove from portals"), permissions=["register"])
    def remove_action(self, request, queryset):
        chosen = self._choose_installations(request, queryset, "remove_action", _g("Remove providers from portals"))
        if isinstance(chosen, TemplateResponse):
            return chosen
        for provider in queryset:
            registrations = registration_services.provider_unregister(provider=provider, installations=chosen)
            self._report_queued(request, provider, registrations, _g("removal"), Action.REMOVE)
        return None

    @admin.action(description=_("Check against the portals (sender.list)"), permissions=["check"])
    def check_action(self, request, queryset):
        for provider in queryset:
            results = registration_services.provider_check(provider=provider)
            action_record(
                instance=provider,
                action=Action.CHECK,
                result="; ".join(f"{row['domain']}: {row['summary']}" for row in results)
                or _g("not registered on any active portal"),
                portals=[row["domain"] for row in results],
            )
            if not results:
                self.message_user(
                    request,
                    _g("%(code)s: not registered on any active portal.") % {"code": provider.code},
                    messages.WARNING,
                )
            for row in results:
                text = f"{provider.code} @ {row['domain']}: {row['summary']}"
                if row["unknown_on_portal"]:
                    text += " " + ngettext(
                        "Unknown code on the portal: %(codes)s.",
                        "Unknown codes on the portal: %(codes)s.",
                        len(row["unknown_on_portal"]),
                    ) % {"codes": ", ".join(row["unknown_on_portal"])}
                if row["missing_on_portal"]:
                    text += " " + _g("Missing on the portal: %(codes)s.") % {
                        "codes": ", ".join(row["missing_on_portal"])
                    }
                ok = (
                    not row["error"]
                    and not row["missing_on_portal"]
                    and not row["unknown_on_portal"]
                    and row["present_on_portal"]
                )
                level = messages.ERROR if row["error"] else (messages.SUCCESS if ok else messages.WARNING)
                self.message_user(request, text, level)


@admin.register(ProviderRegistration)
class ProviderRegistrationAdmin(admin.ModelAdmin):
    # One column for the last repair and the error cut short: the list fits a 1280-px screen (the page has it all).
    list_display = [
        "provider",
        "installation",
        "state_badge",
        "last_error_short",
        "registered_at",
        "checked_at",
        "last_repair",
        "updated_at",
    ]
    list_filter = ["state", "repair_reason", "installation", "provider"]
    list_select_related = ["provider", "installation"]
    search_fields = ["provider__code", "installation__domain"]
    readonly_fields = [
        "provider",
        "installation",
        "state",
        "last_error",
        "registered_at",
        "checked_at",
        "repaired_at",
        "repair_reason",
        "repair_count",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj):
        return _badge(obj.state, obj.get_state_display())

    @admin.display(description=_("last error"))
    def last_error_short(self, obj):
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else (obj.last_error or "—")

    @admin.display(description=_("last repair"), ordering="repaired_at")
    def last_repair(self, obj):
        return _repair_summary(obj)
