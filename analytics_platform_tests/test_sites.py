"""Sites in the tenant registry: the `tenants sites` commands, their audit, refusals, upgrade.

Commands run through the installed `analytics-platform` entry point against the
session's real warehouse; the registry functions are called directly only where
the CLI cannot reach (races, the id rule against the DDL's CHECK).
"""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from analytics_platform.tenants.errors import SiteRefused, TenantStateError
from analytics_platform.tenants.ids import InvalidSiteId, is_valid_site_id, validate_site_id
from analytics_platform.tenants.lifecycle import audit_trail, deprovision_tenant
from analytics_platform.tenants.registry import register_tenant
from analytics_platform.tenants.sites import add_site, add_sites, list_sites, tenant_sites
from analytics_platform_tests.cli_harness import BIN, run

CLI = str(BIN / "analytics-platform")


def owned_rows(postgres, tenant_id: str) -> list[str]:
    """The tenant's rows in platform.tenant_sites (not the implied default of tenant_sites())."""
    with postgres.connect() as conn:
        rows = conn.execute(
            "SELECT site_id FROM platform.tenant_sites WHERE tenant_id = %s ORDER BY site_id",
            (tenant_id,),
        ).fetchall()
    return [site for (site,) in rows]


def registered(postgres, tenant_id: str) -> bool:
    with postgres.connect() as conn:
        row = conn.execute("SELECT 1 FROM platform.tenants WHERE tenant_id = %s", (tenant_id,))
        return row.fetchone() is not None


def actions(postgres, tenant_id: str) -> list[tuple[str, str | None]]:
    """(action, site named in the detail) for each audit row of the tenant, oldest first."""
    return [
        (action, detail.get("site_id")) for action, _, detail in audit_trail(postgres, tenant_id)
    ]


# Hand-picked edges of the rule, then every ASCII character first and second.
SITE_ID_CANDIDATES = [
    "a",
    "A",
    "0",
    "acme-eu",
    "shop.acme.example",
    "app:web_2",
    "x" * 128,
    "x" * 129,
    "",
    "-acme",
    ".acme",
    "_acme",
    ":acme",
    "acme eu",
    "acme/eu",
    "acme\n",
    "\nacme",
    "acmé",
    "\uff41cme",  # a fullwidth a
    "acme;drop",
    *(chr(code) for code in range(1, 128)),
    *(f"a{chr(code)}" for code in range(1, 128)),
]


def test_the_site_id_rule_is_the_one_the_warehouse_checks(postgres, new_tenant):
    tenant = new_tenant("rule")
    register_tenant(postgres, tenant, actor="test")
    accepted_by_postgres = set()
    with postgres.connect() as conn:
        for candidate in SITE_ID_CANDIDATES:
            try:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO platform.tenant_sites (site_id, tenant_id) VALUES (%s, %s)",
                        (candidate, tenant),
                    )
                    accepted_by_postgres.add(candidate)
                    raise psycopg.Rollback()
            except psycopg.errors.CheckViolation:
                pass
    accepted_by_python = {c for c in SITE_ID_CANDIDATES if is_valid_site_id(c)}
    assert accepted_by_python == accepted_by_postgres
    # The rule is neither empty nor everything: 62 first characters, 66 second ones.
    assert {"a", "A", "0", "acme-eu", "x" * 128} <= accepted_by_python
    assert not {"", "x" * 129, "-acme", "acme\n", "acmé", "acme eu"} & accepted_by_python
    with pytest.raises(InvalidSiteId, match=r"invalid site id 'acme eu': a site id is 1-128"):
        validate_site_id("acme eu")


def test_sites_commands_add_list_remove_and_audit(cli_env, postgres, new_tenant):
    tenant = new_tenant("sites")
    web, shop, app = f"{tenant}-web", f"shop.{tenant}.example", f"app:{tenant}"

    added = run([CLI, "tenants", "add", tenant, "--site", web, "--site", shop], cli_env)
    assert f"sites {tenant}, {web}, {shop}" in added.stdout
    assert tenant_sites(postgres, tenant) == {tenant, web, shop}

    more = run([CLI, "tenants", "sites", "add", tenant, app, web], cli_env)
    assert more.stdout.strip() == f"tenant {tenant}: sites added: {app}; already its own: {web}"
    again = run([CLI, "tenants", "sites", "add", tenant, app], cli_env)
    assert again.stdout.strip() == f"tenant {tenant}: sites added: none; already its own: {app}"

    table = run([CLI, "tenants", "sites", "list", tenant], cli_env).stdout.splitlines()
    assert table[0].split() == ["site", "added", "at", "(UTC)", "default"]
    assert [line.split()[0] for line in table[1:]] == [tenant, web, shop, app]
    assert table[1].split()[-1] == "yes" and not table[2].endswith("yes")
    listed = json.loads(run([CLI, "tenants", "sites", "list", tenant, "--json"], cli_env).stdout)
    assert [(s["site_id"], s["default"]) for s in listed] == [
        (tenant, True),
        (web, False),
        (shop, False),
        (app, False),
    ]
    assert all(s["added_at"] for s in listed)

    removed = run([CLI, "tenants", "sites", "remove", tenant, web], cli_env)
    assert removed.stdout.strip() == f"tenant {tenant}: site {web} removed"
    assert owned_rows(postgres, tenant) == sorted([tenant, shop, app])

    overview = run([CLI, "tenants", "list"], cli_env).stdout
    row = next(line.split() for line in overview.splitlines() if line.startswith(tenant + " "))
    assert row[6] == f"{tenant},{shop},{app}"

    # One audit row per change, none for the repeated add; the CLI names the operator.
    assert actions(postgres, tenant) == [
        ("registered", None),
        ("site_added", web),
        ("site_added", shop),
        ("active", None),
        ("site_added", app),
        ("site_removed", web),
    ]
    assert all(actor.startswith("cli:") for _, actor, _ in audit_trail(postgres, tenant))


def test_sites_commands_refuse_with_what_to_do(cli_env, postgres, new_tenant):
    owner, other = new_tenant("owner"), new_tenant("other")
    site = f"{owner}-web"
    run([CLI, "tenants", "add", owner, "--site", site], cli_env)
    run([CLI, "tenants", "add", other], cli_env)
    trail_before = audit_trail(postgres, other)

    def refused(*args: str) -> str:
        result = run([CLI, "tenants", *args], cli_env, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("Error: ")
        return result.stderr

    # Another tenant's site, or another tenant's own id (its default site): refused, and
    # the site that came with it in the same command is not added either.
    assert "site '" + site + "' belongs to another tenant" in refused(
        "sites", "add", other, f"{other}-new", site
    )
    assert f"site '{owner}' belongs to another tenant" in refused("sites", "add", other, owner)
    assert owned_rows(postgres, other) == [other]

    assert "default site" in refused("sites", "remove", owner, owner)
    assert f"has no site '{site}'" in refused("sites", "remove", other, site)
    assert f"tenants sites list {other}" in refused("sites", "remove", other, site)
    nobody = new_tenant("nobody")
    assert f"tenant '{nobody}' is not registered" in refused("sites", "add", nobody, "x")
    assert f"tenant '{nobody}' is not registered" in refused("sites", "list", nobody)
    assert audit_trail(postgres, other) == trail_before
    assert owned_rows(postgres, owner) == sorted([owner, site])

    bad = run([CLI, "tenants", "sites", "add", owner, "bad site"], cli_env, check=False)
    assert bad.returncode == 2 and "a site id is 1-128 characters" in bad.stderr
    bad_tenant = run([CLI, "tenants", "sites", "list", "Bad;Id"], cli_env, check=False)
    assert bad_tenant.returncode == 2 and "lowercase letter" in bad_tenant.stderr


def test_registering_an_id_that_is_another_tenants_site_writes_nothing(
    cli_env, postgres, new_tenant
):
    owner = new_tenant("holder")
    taken = new_tenant("taken")  # a valid tenant id, used as a site of `owner`
    run([CLI, "tenants", "add", owner, "--site", taken], cli_env)

    as_tenant = run([CLI, "tenants", "add", taken], cli_env, check=False)
    assert as_tenant.returncode == 1
    assert f"cannot register tenant '{taken}': '{taken}' is a site of another tenant" in (
        as_tenant.stderr
    )
    assert not registered(postgres, taken) and audit_trail(postgres, taken) == []

    newcomer = new_tenant("newcomer")
    with_site = run([CLI, "tenants", "add", newcomer, "--site", taken], cli_env, check=False)
    assert with_site.returncode == 1 and "belongs to another tenant" in with_site.stderr
    assert not registered(postgres, newcomer) and audit_trail(postgres, newcomer) == []
    assert owned_rows(postgres, owner) == sorted([owner, taken])

    bad = run([CLI, "tenants", "add", newcomer, "--site", "-x"], cli_env, check=False)
    assert bad.returncode == 2 and "--site" in bad.stderr and not registered(postgres, newcomer)


def test_deprovisioning_frees_the_sites_and_refuses_new_ones(
    postgres, clickhouse, instance, new_tenant
):
    tenant, heir = new_tenant("gone"), new_tenant("heir")
    site = f"{tenant}-web"
    register_tenant(postgres, tenant, sites=[site], actor="test")
    register_tenant(postgres, heir, actor="test")
    deprovision_tenant(postgres, clickhouse, instance, tenant, confirm=tenant, actor="test")
    assert owned_rows(postgres, tenant) == [] and list_sites(postgres, tenant) == []
    with pytest.raises(TenantStateError, match=r"deprovisioned.*register it again"):
        add_site(postgres, tenant, f"{tenant}-app", actor="test")
    # Its id stays reserved as its default site; its other site is free for another tenant.
    with pytest.raises(SiteRefused, match="belongs to another tenant"):
        add_site(postgres, heir, tenant, actor="test")
    assert add_site(postgres, heir, site, actor="test") is True

    register_tenant(postgres, tenant, actor="test")
    assert owned_rows(postgres, tenant) == [tenant]


def test_adding_sites_is_all_or_none_and_repeats_change_nothing(postgres, new_tenant):
    tenant, other = new_tenant("atomic"), new_tenant("rival")
    register_tenant(postgres, tenant, actor="test")
    register_tenant(postgres, other, sites=[f"{other}-web"], actor="test")
    with pytest.raises(SiteRefused):
        add_sites(postgres, tenant, [f"{tenant}-a", f"{other}-web"], actor="test")
    assert owned_rows(postgres, tenant) == [tenant]

    assert add_sites(postgres, tenant, [f"{tenant}-a", f"{tenant}-a"], actor="test") == [
        f"{tenant}-a"
    ]
    assert add_site(postgres, tenant, f"{tenant}-a", actor="test") is False
    assert add_site(postgres, tenant, tenant, actor="test") is False
    assert actions(postgres, tenant) == [("registered", None), ("site_added", f"{tenant}-a")]


def test_two_tenants_claiming_one_site_at_once_one_wins(postgres, new_tenant):
    tenants = [new_tenant("race"), new_tenant("race")]
    for tenant in tenants:
        register_tenant(postgres, tenant, actor="test")
    site = f"contested-{tenants[0]}"
    start = threading.Barrier(len(tenants))
    outcomes: dict[str, object] = {}

    def claim(tenant: str) -> None:
        start.wait()
        try:
            outcomes[tenant] = add_site(postgres, tenant, site, actor="test")
        except SiteRefused as err:
            outcomes[tenant] = err

    threads = [threading.Thread(target=claim, args=(t,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [t for t in tenants if outcomes[t] is True]
    losers = [t for t in tenants if isinstance(outcomes[t], SiteRefused)]
    assert len(winners) == 1 and len(losers) == 1
    assert site in owned_rows(postgres, winners[0]) and site not in owned_rows(postgres, losers[0])


def test_upgrading_a_warehouse_gives_each_tenant_its_default_site_once(cli_env, fresh_database):
    """A warehouse from before sites: `analytics-platform migrate` adds the defaults, once."""
    url = fresh_database("ap_test_sites_upgrade")
    env = {**cli_env, "DATABASE_URL": url}
    assert "migrated" in run([CLI, "migrate"], env).stdout
    with psycopg.connect(url, autocommit=True) as conn:
        # What the warehouse looked like before sites: no table, tenants in every status.
        conn.execute("DROP TABLE platform.tenant_sites; DELETE FROM platform.warehouse_version")
        for tenant, status in [
            ("old_live", "active"),
            ("old_paused", "suspended"),
            ("old_pending", "pending"),
            ("old_gone", "deprovisioned"),
        ]:
            conn.execute(
                "INSERT INTO platform.tenants (tenant_id, display_name, status) "
                "VALUES (%s, %s, %s)",
                (tenant, tenant, status),
            )

    def sites() -> list[tuple[str, str]]:
        with psycopg.connect(url) as conn:
            return conn.execute(
                "SELECT tenant_id, site_id FROM platform.tenant_sites ORDER BY 1, 2"
            ).fetchall()

    assert "migrated" in run([CLI, "migrate"], env).stdout
    defaults = [(t, t) for t in ("old_live", "old_paused", "old_pending")]
    assert sites() == defaults

    # A site added since, and the migration applied again: nothing doubled, nothing re-added.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO platform.tenant_sites (site_id, tenant_id) VALUES ('live-web', 'old_live')"
        )
        conn.execute("DELETE FROM platform.warehouse_version")
    assert "migrated" in run([CLI, "migrate"], env).stdout
    assert sites() == sorted([*defaults, ("old_live", "live-web")])
    assert "already current" in run([CLI, "migrate"], env).stdout
