"""i-dgtl accounts: an integrator serves several clients, each with its own i-dgtl contract."""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from common.encryption import EncryptedCharField
from common.logging import mask_secret


class IdgtlAccount(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    api_url = models.URLField(_("API URL"), default="https://direct.i-dgtl.ru/api/v1")
    # Both keys are stored encrypted (common/encryption.py).
    sender_names_key = EncryptedCharField(
        _("sender-names key (TOKEN_2)"),
        max_length=512,
        blank=True,
        help_text=_("API key of type TOKEN_2, sent unchanged as 'Authorization: Basic KEY'."),
    )
    messages_key = EncryptedCharField(
        _("messages key (TOKEN_1)"),
        max_length=512,
        blank=True,
        help_text=_("API key of type TOKEN_1, used to send SMS."),
    )
    is_default = models.BooleanField(_("default account"), default=False)
    # The balance, as beat last read it (GET /balance, idgtl/balance.py). Written only by the poll's
    # conditional UPDATEs: save() leaves these fields alone (BALANCE_STATE_FIELDS).
    low_balance_threshold = models.DecimalField(
        _("low-balance threshold"),
        max_digits=16,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=_(
            "When the balance falls below it, the administrators get one e-mail (again only after it "
            "went back above). Empty: no alert."
        ),
    )
    balance = models.DecimalField(_("balance"), max_digits=16, decimal_places=2, null=True, blank=True)
    balance_currency = models.CharField(_("currency"), max_length=8, blank=True)
    balance_at = models.DateTimeField(_("balance read at"), null=True, blank=True)
    balance_checked_at = models.DateTimeField(_("balance last asked for"), null=True, blank=True)
    balance_error = models.TextField(
        _("balance read error"),
        blank=True,
        help_text=_("Why the last read of the balance failed; empty once it works."),
    )
    low_balance_alert_sent_at = models.DateTimeField(
        _("low-balance alert sent"),
        null=True,
        blank=True,
        help_text=_("Set when the alert of the current crossing was sent; cleared when the balance is back above."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    BALANCE_STATE_FIELDS = frozenset(
        {
            "balance",
            "balance_currency",
            "balance_at",
            "balance_checked_at",
            "balance_error",
            "low_balance_alert_sent_at",
        }
    )

    class Meta:
        verbose_name = _("i-dgtl account")
        verbose_name_plural = _("i-dgtl accounts")
        ordering = ["name"]
        permissions = [("check_account_keys", "Can check i-dgtl account keys with i-dgtl")]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="idgtl_one_default_account"
            ),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        """Saving a loaded account (admin form, settings sync) never writes the balance state back: a poll
        may have changed it since the row was read, and writing the old value would re-arm a sent alert."""
        if not self._state.adding and self.pk is not None and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name not in self.BALANCE_STATE_FIELDS
            ]
        super().save(*args, **kwargs)

    @property
    def is_balance_low(self) -> bool:
        return (
            self.balance is not None
            and self.low_balance_threshold is not None
            and self.balance < self.low_balance_threshold
        )

    @property
    def sender_names_key_masked(self) -> str:
        return mask_secret(self.sender_names_key)

    @property
    def messages_key_masked(self) -> str:
        return mask_secret(self.messages_key)
