"""Admin for i-dgtl accounts. Keys are write-only: after saving, only ``••••1234`` is ever shown."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import formats
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from audit.services import Action, action_record
from idgtl.balance import Outcome, account_balance_poll
from idgtl.client import IdgtlClient, IdgtlError
from idgtl.models import IdgtlAccount, mask_secret
from idgtl.services import account_url_change_check

SECRET_FIELDS = ("sender_names_key", "messages_key")


class SecretInput(forms.PasswordInput):
    """A password input that never renders the saved value; the placeholder shows it masked."""

    def __init__(self, attrs=None):
        super().__init__(attrs={"autocomplete": "new-password", "size": 60, **(attrs or {})}, render_value=False)


class SecretKeepingForm(forms.ModelForm):
    """A model form whose ``secret_fields`` keep the saved value when left blank.

    Reusable for any model with write-only secrets (i-dgtl keys, a Bitrix24 client_secret): set
    ``secret_fields`` on the subclass. A secret the model requires is required until one is saved.
    """

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            if name not in self.fields:  # the view-only page of a user who may not change: no fields at all
                continue
            field = self.fields[name]
            field.widget = SecretInput()
            saved = getattr(self.instance, name, "") if self.instance.pk else ""
            field.required = not saved and not self._meta.model._meta.get_field(name).blank
            if saved:
                field.widget.attrs["placeholder"] = mask_secret(saved)
                field.help_text = _("Saved: %(masked)s. Leave blank to keep it; type a new value to replace it.") % {
                    "masked": mask_secret(saved)
                }
            self.initial.pop(name, None)

    def clean(self):
        cleaned_data = super().clean()
        for name in self.secret_fields:
            if name in cleaned_data and name in self.fields:
                value = (cleaned_data[name] or "").strip()
                cleaned_data[name] = value or (getattr(self.instance, name, "") if self.instance.pk else "")
        return cleaned_data


class SecretMaskingAdmin(admin.ModelAdmin):
    """For a user who may view but not change: each secret field is shown by its masked display, never
    as the saved value (Django's view-only page would print every field as it is stored)."""

    masked_secrets: dict[str, str] = {}  # secret field -> the admin method that shows it masked

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self.has_change_permission(request, obj):
            fields = [self.masked_secrets.get(name, name) for name in fields]
        return fields


class IdgtlAccountForm(SecretKeepingForm):
    secret_fields = SECRET_FIELDS
    api_url = forms.URLField(
        label=_("API URL"),
        max_length=200,
        assume_scheme="https",
        help_text=_(
            "Changing it asks for the saved keys again: a saved key is only sent to the address it was saved with."
        ),
    )

    def clean(self):
        entered = {
            name: self.cleaned_data.get(name) or "" for name in self.secret_fields
        }  # before blanks keep the saved keys
        cleaned_data = super().clean()
        if cleaned_data.get("api_url"):
            try:
                account_url_change_check(account=self.instance, api_url=cleaned_data["api_url"], entered_keys=entered)
            except ValidationError as exc:
                self.add_error(None, exc)
        return cleaned_data

    def _get_validation_exclusions(self):
        # "one default account" is kept by save_model (the new default replaces the old one), not refused here
        return super()._get_validation_exclusions() | {"is_default"}

    class Meta:
        model = IdgtlAccount
        fields = ["name", "api_url", "sender_names_key", "messages_key", "is_default", "low_balance_threshold"]


@admin.register(IdgtlAccount)
class IdgtlAccountAdmin(SecretMaskingAdmin):
    form = IdgtlAccountForm
    masked_secrets = {"sender_names_key": "sender_names_key_display", "messages_key": "messages_key_display"}
    list_display = [
        "name",
        "api_url",
        "is_default",
        "sender_names_key_display",
        "messages_key_display",
        "balance_display",
        "balance_at",
        "low_balance_threshold",
        "updated_at",
    ]
    list_filter = ["is_default"]
    search_fields = ["name", "api_url"]
    readonly_fields = [
        "balance_display",
        "balance_at",
        "balance_checked_at",
        "balance_error",
        "low_balance_alert_sent_at",
        "created_at",
        "updated_at",
    ]
    actions = ["check_keys", "read_balance"]

    @admin.display(description=_("balance"), ordering="balance")
    def balance_display(self, obj):
        """The last balance read (in red below the threshold), and the last read's error when it failed."""
        if obj.balance is None:
            shown = format_html("{}", "—")
        else:
            amount = (
                f"{formats.number_format(obj.balance, 2, use_l10n=True, force_grouping=True)} {obj.balance_currency}"
            )
            shown = (
                format_html(
                    '<strong class="b24-balance-low" style="color: var(--error-fg, #ba2121)">{}</strong> {}',
                    amount,
                    gettext("(below the threshold)"),
                )
                if obj.is_balance_low
                else format_html("{}", amount)
            )
        if obj.balance_error:
            return format_html(
                '{}<div class="b24-balance-error" style="color: var(--error-fg, #ba2121)" title="{}">{}</div>',
                shown,
                obj.balance_error,
                gettext("Last read failed: %(error)s") % {"error": obj.balance_error[:120]},
            )
        return shown

    @admin.display(description=_("sender-names key (TOKEN_2)"))
    def sender_names_key_display(self, obj):
        return obj.sender_names_key_masked or "—"

    @admin.display(description=_("messages key (TOKEN_1)"))
    def messages_key_display(self, obj):
        return obj.messages_key_masked or "—"

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            if obj.is_default:  # one default account: the new default replaces the old one
                IdgtlAccount.objects.filter(is_default=True).exclude(pk=obj.pk).update(is_default=False)
            super().save_model(request, obj, form, change)

    def has_check_keys_permission(self, request):
        return request.user.has_perm("idgtl.check_account_keys")

    @admin.action(description=_("Read the balance from i-dgtl now"), permissions=["check_keys"])
    def read_balance(self, request, queryset):
        """What beat does every IDGTL_BALANCE_POLL_INTERVAL, at once (an alert of a crossing included)."""
        for account in queryset:
            outcome = account_balance_poll(account=account)
            account.refresh_from_db()
            if outcome == Outcome.ERROR:
                text, level = (
                    gettext("%(account)s: the balance could not be read: %(error)s")
                    % {"account": account, "error": account.balance_error},
                    messages.ERROR,
                )
            else:
                text, level = (
                    gettext("%(account)s: balance %(balance)s %(currency)s.")
                    % {"account": account, "balance": account.balance, "currency": account.balance_currency},
                    (messages.WARNING if account.is_balance_low else messages.SUCCESS),
                )
            action_record(instance=account, action=Action.READ_BALANCE, result=text)
            self.message_user(request, text, level)

    @admin.action(description=_("Check the keys with i-dgtl"), permissions=["check_keys"])
    def check_keys(self, request, queryset):
        """One read per key with the endpoint of its type, so a key of the wrong type shows as such (4030)."""
        for account in queryset:
            checks = (
                (
                    gettext("sender-names key"),
                    account.sender_names_key,
                    IdgtlClient.for_sender_names,
                    lambda client: client.list_sender_names(per_page=1),
                ),
                (
                    gettext("messages key"),
                    account.messages_key,
                    IdgtlClient.for_messages,
                    lambda client: client.get_messages(per_page=1),
                ),
            )
            outcomes = []

            def say(text, level):
                outcomes.append(text)  # noqa: B023 (called within this iteration only)
                self.message_user(request, text, level)

            for label, key, make_client, read in checks:
                context = {"account": account, "key": label}
                if not key:
                    say(gettext("%(account)s: %(key)s is not set.") % context, messages.WARNING)
                    continue
                with make_client(account, max_retries=0, timeout=10) as client:
                    try:
                        read(client)
                    except IdgtlError as exc:
                        say(
                            gettext("%(account)s: %(key)s failed: %(error)s") % {**context, "error": exc},
                            messages.ERROR,
                        )
                        continue
                say(gettext("%(account)s: %(key)s works.") % context, messages.SUCCESS)
            action_record(instance=account, action=Action.CHECK_KEYS, result=" ".join(outcomes))
