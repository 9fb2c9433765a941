"""Tenant and site ids: the one check applied wherever an id enters (registry, file path, API)."""

from __future__ import annotations

import re

TENANT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
TENANT_ID_RULE = (
    "a tenant id is 2-40 characters: a lowercase letter, then lowercase letters, digits or '_' "
    "(e.g. 'acme' or 'globex_eu')"
)

# The same rule as the CHECK on platform.tenant_sites.site_id (test_sites pins the two
# together). Every valid tenant id is a valid site id: a tenant's own id is its default site.
SITE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SITE_ID_RULE = (
    "a site id is 1-128 characters: a letter or digit, then letters, digits, '.', '_', ':' "
    "or '-' (e.g. 'acme-eu' or 'shop.example.com')"
)


class InvalidTenantId(ValueError):
    pass


class InvalidSiteId(ValueError):
    pass


def is_valid_tenant_id(value: object) -> bool:
    return isinstance(value, str) and TENANT_ID_PATTERN.fullmatch(value) is not None


def is_valid_site_id(value: object) -> bool:
    return isinstance(value, str) and SITE_ID_PATTERN.fullmatch(value) is not None


def _shown(value: object) -> str:
    """The value as an error message quotes it: repr, cut to 60 characters."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def validate_tenant_id(value: object) -> str:
    """Return the id unchanged, or raise InvalidTenantId saying what a valid id looks like."""
    if not is_valid_tenant_id(value):
        raise InvalidTenantId(f"invalid tenant id {_shown(value)}: {TENANT_ID_RULE}")
    return value  # type: ignore[return-value]


def validate_site_id(value: object) -> str:
    """Return the site id unchanged, or raise InvalidSiteId saying what a valid one looks like."""
    if not is_valid_site_id(value):
        raise InvalidSiteId(f"invalid site id {_shown(value)}: {SITE_ID_RULE}")
    return value  # type: ignore[return-value]
