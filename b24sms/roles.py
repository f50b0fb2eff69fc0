"""The default groups (roles), created after ``migrate``: "Viewer" and "Operator".

- Viewer: sees everything of b24sms (the view permission of every model of idgtl, sendernames and
  providers; keys and tokens stay masked), changes and runs nothing.
- Operator: the day-to-day work on top of that: adds and changes providers and sender-name
  applications, registers providers on portals (and pushes changes, removes them there), checks
  them against the portals, sends test SMS, submits applications to i-dgtl (which charges for
  them) and asks for their status, files one name with several operators at once, and sets a
  status by hand when i-dgtl cannot be read. Not: i-dgtl accounts and their keys (nor checking them),
  Bitrix24 applications, portal sending settings (installations), deleting anything.
- Everything else (managing accounts, keys, applications; deleting) is for superusers or for
  permissions an administrator grants one by one. So is the audit trail (audit/): it names every
  operator, their addresses and every change of access rights (``audit.view_auditlogentry``).

The names are stable English names (stored data, looked up by name), not translated. A group is
created with its permissions only when it does not exist: an administrator's later edits are kept.
To bring a group back to these defaults, delete it and run ``manage.py migrate``.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import DEFAULT_DB_ALIAS

VIEWER = "Viewer"
OPERATOR = "Operator"
ROLE_APPS = ("idgtl", "sendernames", "providers")
OPERATOR_PERMISSIONS = (
    "providers.add_provider",
    "providers.change_provider",
    "providers.register_provider",
    "providers.check_provider",
    "providers.send_test_sms",
    "sendernames.add_sendernameapplication",
    "sendernames.change_sendernameapplication",
    "sendernames.submit_application",
    "sendernames.refresh_application_status",
    "sendernames.add_sendernamegroup",  # files one name with several operators (submits each at once)
    "sendernames.change_sendernamegroup",  # adds an operator to such a group (files that one)
    "sendernames.set_application_status",  # sets a status read in i-dgtl's cabinet by hand
)


def role_permissions(Permission, using=DEFAULT_DB_ALIAS) -> dict:
    """Group name -> the permissions it is created with."""
    permissions = Permission.objects.using(using).filter(content_type__app_label__in=ROLE_APPS)
    viewer = list(permissions.filter(codename__startswith="view_"))
    wanted = {tuple(name.split(".", 1)) for name in OPERATOR_PERMISSIONS}
    operator = viewer + [
        p for p in permissions.select_related("content_type") if (p.content_type.app_label, p.codename) in wanted
    ]
    return {VIEWER: viewer, OPERATOR: operator}


def ensure_default_groups(using=DEFAULT_DB_ALIAS, apps=global_apps, **kwargs):
    """post_migrate: create the groups that are missing, with their permissions."""
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:  # auth not migrated (a partial migrate)
        return
    for label in ROLE_APPS:  # their permissions may not exist yet: b24sms migrates before these apps
        try:
            create_permissions(global_apps.get_app_config(label), verbosity=0, using=using, apps=apps)
        except LookupError:
            return
    for name, permissions in role_permissions(Permission, using).items():
        group, created = Group.objects.using(using).get_or_create(name=name)
        if created:
            group.permissions.set(permissions)
