"""Why a change to the tenant registry was refused; each message says what to do instead."""

from __future__ import annotations


class TenantNotFound(LookupError):
    pass


class TenantStateError(RuntimeError):
    """The tenant is not in a status that allows the requested change."""


class SiteRefused(RuntimeError):
    """A site cannot be added or removed: owned by another tenant, a default site, or absent."""


def not_registered(tenant_id: str) -> TenantNotFound:
    return TenantNotFound(
        f"tenant {tenant_id!r} is not registered: analytics-platform tenants add {tenant_id}"
    )


class KeyRefused(RuntimeError):
    """An API key cannot be created or revoked: unknown kind, not the tenant's, already revoked."""


class OriginRefused(RuntimeError):
    """An allowed origin cannot be added or removed: the tenant lacks it, or is deprovisioned."""
