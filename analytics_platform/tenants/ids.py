"""Tenant ids: the one check applied wherever an id enters (registry, file path, API)."""

from __future__ import annotations

import re

TENANT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
TENANT_ID_RULE = (
    "a tenant id is 2-40 characters: a lowercase letter, then lowercase letters, digits or '_' "
    "(e.g. 'acme' or 'globex_eu')"
)


class InvalidTenantId(ValueError):
    pass


def is_valid_tenant_id(value: object) -> bool:
    return isinstance(value, str) and TENANT_ID_PATTERN.fullmatch(value) is not None


def validate_tenant_id(value: object) -> str:
    """Return the id unchanged, or raise InvalidTenantId saying what a valid id looks like."""
    if not is_valid_tenant_id(value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise InvalidTenantId(f"invalid tenant id {shown}: {TENANT_ID_RULE}")
    return value  # type: ignore[return-value]
