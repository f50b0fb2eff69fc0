"""Who may do what in the REST API: staff *and* the Django permission of what is done.

Being staff only opens the door (as in the admin); every request then needs a model permission,
viewing included, and every action that is not plain CRUD (register a provider on portals, send a
test SMS, submit an application to i-dgtl, ...) needs its own custom permission, declared in the
model's ``Meta.permissions``. The admin checks the same permissions (``@admin.action(permissions=...)``),
so a user can do exactly the same things in both. Default groups: ``b24sms/roles.py``.

A view states what its non-CRUD actions need with ``action_permissions`` (viewset action name ->
permission names); a view without a queryset states ``required_permissions``. Anything not stated
is refused: a new action without declared permissions is a 403, never open to all staff.
"""

from rest_framework.permissions import DjangoModelPermissions

VIEW = "%(app_label)s.view_%(model_name)s"
CRUD_ACTIONS = {"list", "retrieve", "create", "update", "partial_update", "destroy", "metadata"}


class StaffModelPermissions(DjangoModelPermissions):
    """is_staff, plus view for GET/HEAD/OPTIONS, add for POST, change for PUT/PATCH, delete for DELETE;
    for a viewset's extra action, the permissions in ``view.action_permissions[action]``."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": [VIEW], "HEAD": [VIEW], "OPTIONS": [VIEW]}

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_staff and user.is_active):
            return False
        action = getattr(view, "action", None)
        declared = getattr(view, "action_permissions", {})
        if action in declared:
            return user.has_perms(declared[action])
        if action is not None and action not in CRUD_ACTIONS:
            return False  # an extra action nobody declared permissions for
        required = getattr(view, "required_permissions", None)
        if required is not None:
            return user.has_perms(required)
        if not hasattr(view, "get_queryset") and getattr(view, "queryset", None) is None:
            return False  # no model to take permissions from and none stated
        return super().has_permission(request, view)
