"""API keys and allowed origins: the `tenants keys`/`tenants origins` commands, what is
stored, and the request-time checks the collector relies on (KeyAuthenticator).

Commands run through the installed `analytics-platform` entry point against the
session's real warehouse; the checks run against the same warehouse, with small
cache and touch times where a test is about them.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import psycopg
import pytest

from analytics_platform.settings import SettingsError, key_cache_seconds
from analytics_platform.tenants.errors import KeyRefused, TenantNotFound, TenantStateError
from analytics_platform.tenants.keys import (
    AuthUnavailable,
    KeyAuthenticator,
    KeyRejected,
    Principal,
    create_key,
    list_keys,
    revoke_key,
)
from analytics_platform.tenants.lifecycle import audit_trail, deprovision_tenant
from analytics_platform.tenants.origins import (
    InvalidOrigin,
    add_origins,
    list_origins,
    normalize_origin,
)
from analytics_platform.tenants.registry import register_tenant, transition
from analytics_platform_tests.cli_harness import BIN, run

CLI = str(BIN / "analytics-platform")
SECRET = re.compile(r"apk_[wr]_[A-Za-z0-9_-]{43}")


def tenant_with_status(postgres, tenant: str, status: str = "active") -> str:
    """Register `tenant` and walk it to `status` through the registry's own transitions."""
    register_tenant(postgres, tenant, actor="test")
    path = {"pending": [], "active": ["active"], "suspended": ["active", "suspended"]}[status]
    allowed = {"active": ("pending",), "suspended": ("active",)}
    with postgres.transaction() as conn:
        for step in path:
            transition(conn, tenant, step, allowed_from=allowed[step], actor="test")
    return tenant


def rejection(authenticator: KeyAuthenticator, secret: object, kind: str = "write") -> KeyRejected:
    with pytest.raises(KeyRejected) as caught:
        authenticator.authenticate(secret, kind)  # type: ignore[arg-type]
    return caught.value


def last_used(postgres, key_id: str):
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT last_used_at FROM platform.tenant_keys WHERE key_id = %s", (key_id,)
        ).fetchone()[0]


@pytest.mark.slow  # runs the CLI
def test_keys_commands_print_the_secret_once_and_list_and_revoke(cli_env, postgres, new_tenant):
    tenant = tenant_with_status(postgres, new_tenant("keys"))
    created = run([CLI, "tenants", "keys", "create", tenant], cli_env)
    (secret,) = SECRET.findall(created.stdout)
    assert secret.startswith("apk_w_") and f"{secret}\n" in created.stdout
    assert "only time the key is shown" in created.stdout
    as_json = run([CLI, "tenants", "keys", "create", tenant, "--kind", "read", "--json"], cli_env)
    read = json.loads(as_json.stdout)
    assert read["kind"] == "read" and SECRET.fullmatch(read["secret"]).group().startswith("apk_r_")
    assert read["key_id"] == read["secret"][:12] and "only time" in as_json.stderr

    listed = run([CLI, "tenants", "keys", "list", tenant], cli_env).stdout
    assert not SECRET.search(listed)  # the ids show, never a secret
    assert secret[:12] in listed and read["key_id"] in listed
    revoked = run([CLI, "tenants", "keys", "revoke", tenant, secret[:12]], cli_env)
    assert f"key {secret[:12]} revoked" in revoked.stdout and "KEY_CACHE_SECONDS" in revoked.stdout
    rows = json.loads(run([CLI, "tenants", "keys", "list", tenant, "--json"], cli_env).stdout)
    assert [(r["key_id"], r["kind"], r["revoked_at"] is not None) for r in rows] == [
        (secret[:12], "write", True),
        (read["key_id"], "read", False),
    ]
    assert all(r["created_by"].startswith("cli:") and r["last_used_at"] is None for r in rows)

    def refused(*args: str, code: int = 1) -> str:
        result = run([CLI, "tenants", "keys", *args], cli_env, check=False)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert secret not in result.stdout + result.stderr
        return result.stderr

    assert "already revoked" in refused("revoke", tenant, secret[:12])
    other = tenant_with_status(postgres, new_tenant("other"))
    # Another tenant's key id is refused like one that does not exist, naming the fix.
    foreign = refused("revoke", other, read["key_id"])
    assert f"has no key '{read['key_id']}'" in foreign and f"tenants keys list {other}" in foreign
    assert "'admin' is not one of" in refused("create", tenant, "--kind", "admin", code=2)
    assert [action for action, _, _ in audit_trail(postgres, tenant)][-3:] == [
        "key_created",
        "key_created",
        "key_revoked",
    ]


def test_only_a_hash_of_the_key_is_stored_and_audited_without_it(postgres, new_tenant):
    tenant = tenant_with_status(postgres, new_tenant("hash"))
    key, secret = create_key(postgres, tenant, actor="test")
    revoke_key(postgres, tenant, key.key_id, actor="test")
    random_part = secret[len("apk_w_") :]
    with postgres.connect() as conn:
        columns = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'platform' AND table_name = 'tenant_keys'"
            ).fetchall()
        )
        (row_text,) = conn.execute(
            "SELECT t::text FROM platform.tenant_keys t WHERE key_id = %s", (key.key_id,)
        ).fetchone()
        (stored_hash,) = conn.execute(
            "SELECT key_hash FROM platform.tenant_keys WHERE key_id = %s", (key.key_id,)
        ).fetchone()
        audit_text = conn.execute(
            "SELECT string_agg(t::text, '|') FROM platform.tenant_audit t WHERE tenant_id = %s",
            (tenant,),
        ).fetchone()[0]
    assert columns["key_hash"] == "bytea" and not {"secret", "key", "token"} & set(columns)
    assert bytes(stored_hash) == hashlib.sha256(secret.encode()).digest()
    # No column holds the secret, whole or in part beyond the displayed id.
    assert random_part not in row_text and random_part[6:] not in row_text
    assert key.key_id in audit_text and random_part[6:] not in audit_text


def test_every_rejection_has_its_code_and_reveals_no_tenant(postgres, new_tenant):
    active = tenant_with_status(postgres, new_tenant("ok"))
    suspended = tenant_with_status(postgres, new_tenant("susp"), "suspended")
    pending = tenant_with_status(postgres, new_tenant("pend"), "pending")
    _, write = create_key(postgres, active, "write", actor="test")
    _, read = create_key(postgres, active, "read", actor="test")
    gone_key, gone = create_key(postgres, active, actor="test")
    revoke_key(postgres, active, gone_key.key_id, actor="test")
    _, of_suspended = create_key(postgres, suspended, actor="test")
    _, of_pending = create_key(postgres, pending, actor="test")
    auth = KeyAuthenticator(postgres, cache_seconds=0)

    assert auth.authenticate(write) == Principal(active, "write", write[:12])
    assert auth.authenticate(read, "read") == Principal(active, "read", read[:12])
    assert auth.authenticate(f" {write}\n").tenant_id == active  # pasted with its newline
    assert auth.authenticate(of_pending).tenant_id == pending  # not provisioned yet: accepted
    unknown = "apk_w_" + "A" * 43
    cases = {
        "missing_key": [None, "", "  "],
        "invalid_key": ["abc", write[:-1], write + "x", "Bearer " + write, unknown, 42],
        "key_revoked": [gone],
        "tenant_suspended": [of_suspended],
    }
    for code, secrets in cases.items():
        for secret in secrets:
            rejected = rejection(auth, secret)
            assert (rejected.code, rejected.status) == (code, 403 if "suspended" in code else 401)
    wrong = rejection(auth, read, "write")
    assert (wrong.code, wrong.status) == ("wrong_key_kind", 403)
    assert "takes a write key" in wrong.message
    assert rejection(auth, write, "read").code == "wrong_key_kind"
    everything = [rejection(auth, s).message for s in (None, unknown, gone, of_suspended, read)]
    assert not any(t in m for m in everything for t in (active, suspended))
    assert rejection(auth, None).to_dict() == {
        "error": "missing_key",
        "message": rejection(auth, None).message,
    }
    with pytest.raises(ValueError, match="kind must be one of"):
        auth.authenticate(write, "admin")
    auth.close()


def test_revocation_and_suspension_take_effect_within_cache_seconds(postgres, new_tenant):
    tenant = tenant_with_status(postgres, new_tenant("cache"))
    key, secret = create_key(postgres, tenant, actor="test")
    cache_seconds = 0.4
    auth = KeyAuthenticator(postgres, cache_seconds=cache_seconds)

    def seconds_until_refused() -> float:
        """How long after a change the key is first refused (polled, at most 5 s)."""
        changed = time.monotonic()
        for _ in range(250):
            try:
                auth.authenticate(secret)
            except KeyRejected:
                return time.monotonic() - changed
            time.sleep(0.02)
        raise AssertionError("the change never took effect")

    assert auth.authenticate(secret).key_id == key.key_id  # cached now
    with postgres.transaction() as conn:
        transition(conn, tenant, "suspended", allowed_from=("active",), actor="test")
    assert auth.authenticate(secret).tenant_id == tenant  # the cached state, within the bound
    assert seconds_until_refused() <= cache_seconds + 0.2
    assert rejection(auth, secret).code == "tenant_suspended"

    with postgres.transaction() as conn:
        transition(conn, tenant, "active", allowed_from=("suspended",), actor="test")
    time.sleep(cache_seconds)
    assert auth.authenticate(secret).tenant_id == tenant
    revoke_key(postgres, tenant, key.key_id, actor="test")
    assert seconds_until_refused() <= cache_seconds + 0.2
    assert rejection(auth, secret).code == "key_revoked"
    auth.close()


def test_last_used_is_written_at_most_once_per_touch_seconds(postgres, new_tenant):
    tenant = tenant_with_status(postgres, new_tenant("touch"))
    key, secret = create_key(postgres, tenant, actor="test")
    auth = KeyAuthenticator(postgres, cache_seconds=0, touch_seconds=60)
    assert last_used(postgres, key.key_id) is None
    auth.authenticate(secret)
    first = last_used(postgres, key.key_id)
    assert first is not None
    # A sentinel the UPDATE would overwrite: if it stays, no UPDATE ran.
    with postgres.connect() as conn:
        conn.execute(
            "UPDATE platform.tenant_keys SET last_used_at = '2000-01-01Z' WHERE key_id = %s",
            (key.key_id,),
        )
    for _ in range(20):
        auth.authenticate(secret)
    assert last_used(postgres, key.key_id).year == 2000

    # Another process's authenticator writes only a last-used time older than touch_seconds.
    with postgres.connect() as conn:
        conn.execute(
            "UPDATE platform.tenant_keys SET last_used_at = now() WHERE key_id = %s", (key.key_id,)
        )
    recent = last_used(postgres, key.key_id)
    KeyAuthenticator(postgres, touch_seconds=60).authenticate(secret)
    assert last_used(postgres, key.key_id) == recent

    quick = KeyAuthenticator(postgres, cache_seconds=0, touch_seconds=0.2)
    quick.authenticate(secret)
    time.sleep(0.3)
    quick.authenticate(secret)
    assert last_used(postgres, key.key_id) > recent
    assert [k.last_used_at for k in list_keys(postgres, tenant)] == [
        last_used(postgres, key.key_id)
    ]
    for authenticator in (auth, quick):
        authenticator.close()


class CountingAuthenticator(KeyAuthenticator):
    """Counts the warehouse round trips (the real ones still run)."""

    queries = 0

    def _query(self, fetch):
        self.queries += 1
        return super()._query(fetch)


def test_concurrent_authentications_share_one_lookup_per_key(postgres, new_tenant):
    tenant = tenant_with_status(postgres, new_tenant("threads"))
    good_key, good = create_key(postgres, tenant, actor="test")
    revoked_key, revoked = create_key(postgres, tenant, actor="test")
    revoke_key(postgres, tenant, revoked_key.key_id, actor="test")
    unknown = "apk_w_" + "B" * 43
    auth = CountingAuthenticator(postgres, cache_seconds=60, touch_seconds=60)
    expected = {good: good_key.key_id, revoked: "key_revoked", unknown: "invalid_key"}
    outcomes: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(offset: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(150):
                secret = (good, revoked, unknown)[(i + offset) % 3]
                try:
                    outcomes.append((secret, auth.authenticate(secret).key_id))
                except KeyRejected as rejected:
                    outcomes.append((secret, rejected.code))
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 8 * 150
    assert all(got == expected[secret] for secret, got in outcomes)
    assert auth.queries == 3 + 1  # one lookup per key, one last-used write for the good one
    auth.close()


def test_an_unreachable_warehouse_uses_what_is_cached_else_answers_unavailable(
    fresh_database, new_tenant
):
    from analytics_platform.resources.postgres import PostgresResource

    url = fresh_database("ap_test_keys_down")
    postgres = PostgresResource(url=url)
    tenant = tenant_with_status(postgres, new_tenant("down"))
    _, secret = create_key(postgres, tenant, actor="test")
    cached = KeyAuthenticator(postgres, cache_seconds=0.1, stale_seconds=60)
    strict = KeyAuthenticator(postgres, cache_seconds=0.1, stale_seconds=0)
    for auth in (cached, strict):
        assert auth.authenticate(secret).tenant_id == tenant
    # Through the conninfo, not the URL's text: the embedded server's URL names a socket path.
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    time.sleep(0.15)
    assert cached.authenticate(secret).tenant_id == tenant  # stale, within stale_seconds
    with pytest.raises(AuthUnavailable, match="cannot be reached"):
        cached.authenticate("apk_w_" + "C" * 43)  # nothing cached for this one
    with pytest.raises(AuthUnavailable):
        strict.authenticate(secret)
    assert rejection(strict, "not-a-key").code == "invalid_key"  # no warehouse needed
    assert rejection(strict, None).code == "missing_key"


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("https://shop.example.com", "https://shop.example.com"),
        ("HTTPS://Shop.Example.COM:443/", "https://shop.example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://example.com:80", "http://example.com"),
        ("https://example.com:80", "https://example.com:80"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("https://b\u00fccher.example", "https://xn--bcher-kva.example"),
        ("  https://padded.example  ", "https://padded.example"),
    ],
)
def test_origins_are_normalized_as_browsers_send_them(given, normalized):
    assert normalize_origin(given) == normalized


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("*", "wildcards are refused"),
        ("https://*.example.com", "wildcards are refused"),
        ("ftp://example.com", "scheme must be http or https"),
        ("example.com", "scheme must be http or https"),
        ("null", "scheme must be http or https"),
        ("https://", "no host"),
        ("https://example.com/app", "has a path"),
        ("https://example.com?x=1", "query or fragment"),
        ("https://example.com#top", "query or fragment"),
        ("https://user:pw@example.com", "user or password"),
        ("https://example.com:99999", "Port out of range"),
        ("https://exa mple.com", "characters no host has"),
    ],
)
def test_origins_that_are_not_one_origin_are_refused(given, problem):
    with pytest.raises(InvalidOrigin, match=re.escape(problem)):
        normalize_origin(given)


@pytest.mark.slow  # runs the CLI
def test_origins_commands_and_the_cors_lookups(cli_env, postgres, new_tenant):
    tenant = tenant_with_status(postgres, new_tenant("cors"))
    other = tenant_with_status(postgres, new_tenant("cors"))
    shop = f"https://{tenant}.example"
    added = run(
        [CLI, "tenants", "origins", "add", tenant, shop.upper() + "/", "http://localhost:3000"],
        cli_env,
    )
    assert f"origins allowed: {shop}, http://localhost:3000" in added.stdout
    assert add_origins(postgres, tenant, [shop + ":443"], actor="test") == []  # already there
    listed = json.loads(run([CLI, "tenants", "origins", "list", tenant, "--json"], cli_env).stdout)
    assert [row["origin"] for row in listed] == [shop, "http://localhost:3000"]
    bad = run([CLI, "tenants", "origins", "add", tenant, "https://*.example"], cli_env, check=False)
    assert bad.returncode == 2 and "wildcards are refused" in bad.stderr
    absent = run([CLI, "tenants", "origins", "remove", other, shop], cli_env, check=False)
    assert absent.returncode == 1 and f"tenants origins list {other}" in absent.stderr

    auth = KeyAuthenticator(postgres, cache_seconds=0.2)
    assert auth.origin_allowed(tenant, shop) and auth.origin_allowed(tenant, f"{shop}:443")
    assert not auth.origin_allowed(other, shop)  # another tenant's origin is not this one's
    assert auth.origin_allowed(other, None) and auth.origin_allowed(other, "")  # not a browser
    assert not auth.origin_allowed(tenant, "null") and not auth.origin_allowed(tenant, "*")
    assert auth.any_tenant_allows(shop) and not auth.any_tenant_allows("https://evil.example")
    assert not auth.any_tenant_allows(None)

    removed = run([CLI, "tenants", "origins", "remove", tenant, shop + "/"], cli_env)
    assert f"origin {shop} removed" in removed.stdout
    time.sleep(0.25)  # the cache time
    assert not auth.origin_allowed(tenant, shop) and not auth.any_tenant_allows(shop)
    assert auth.origin_allowed(tenant, "http://localhost:3000")
    assert [a for a, _, d in audit_trail(postgres, tenant) if "origin" in d] == [
        "origin_added",
        "origin_added",
        "origin_removed",
    ]
    auth.close()


def test_deprovisioning_revokes_the_keys_and_forgets_the_origins(
    postgres, clickhouse, instance, new_tenant
):
    tenant = tenant_with_status(postgres, new_tenant("deprov"))
    live, secret = create_key(postgres, tenant, actor="test")
    old, _ = create_key(postgres, tenant, "read", actor="test")
    revoke_key(postgres, tenant, old.key_id, actor="test")
    add_origins(postgres, tenant, [f"https://{tenant}.example"], actor="test")
    auth = KeyAuthenticator(postgres, cache_seconds=0)
    assert auth.any_tenant_allows(f"https://{tenant}.example")

    deprovision_tenant(postgres, clickhouse, instance, tenant, confirm=tenant, actor="ops")
    keys = list_keys(postgres, tenant)
    assert [(k.key_id, k.is_revoked) for k in keys] == [(live.key_id, True), (old.key_id, True)]
    revocations = [
        (detail["key_id"], actor, detail.get("reason"))
        for action, actor, detail in audit_trail(postgres, tenant)
        if action == "key_revoked"
    ]
    assert revocations == [(old.key_id, "test", None), (live.key_id, "ops", "deprovisioned")]
    rejected = rejection(auth, secret)
    assert (rejected.code, rejected.status) == ("invalid_key", 401)  # as if it never existed
    assert list_origins(postgres, tenant) == []
    assert not auth.any_tenant_allows(f"https://{tenant}.example")
    with pytest.raises(TenantStateError, match="register it again"):
        create_key(postgres, tenant, actor="test")
    with pytest.raises(TenantStateError, match="register it again"):
        add_origins(postgres, tenant, ["https://again.example"], actor="test")
    with pytest.raises(KeyRefused, match="already revoked"):
        revoke_key(postgres, tenant, live.key_id, actor="test")
    with pytest.raises(TenantNotFound):
        create_key(postgres, new_tenant("never"), actor="test")
    with pytest.raises(KeyRefused, match="unknown key kind"):
        create_key(postgres, tenant, "admin", actor="test")
    auth.close()


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 5.0), ("", 5.0), ("0", 0.0), ("2.5", 2.5), ("3600", 3600.0)]
)
def test_the_key_cache_time_is_a_setting(value, seconds):
    environ = {} if value is None else {"KEY_CACHE_SECONDS": value}
    assert key_cache_seconds(environ) == seconds


@pytest.mark.parametrize("value", ["-1", "soon", "3601", "nan"])
def test_a_key_cache_time_out_of_range_is_refused_naming_the_variable(value):
    with pytest.raises(SettingsError, match=f"KEY_CACHE_SECONDS={value!r}: use a number"):
        key_cache_seconds({"KEY_CACHE_SECONDS": value})


def test_a_warehouse_from_before_keys_upgrades_in_place(fresh_database):
    """Keys, origins and the receive-time columns arrive with the next migration; the raw
    rows already loaded stay, with no receive time."""
    from analytics_platform.resources.postgres import PostgresResource

    url = fresh_database("ap_test_keys_upgrade")
    PostgresResource(url=url).migrate_warehouse()
    with psycopg.connect(url, autocommit=True) as conn:
        # What the warehouse looked like before: none of the three, and one loaded event.
        conn.execute(
            "DROP TABLE platform.tenant_keys, platform.tenant_origins; "
            "ALTER TABLE raw.file_events DROP COLUMN received_at; "
            "ALTER TABLE raw.api_events DROP COLUMN received_at; "
            "DELETE FROM platform.warehouse_version"
        )
        conn.execute(
            "INSERT INTO raw.file_events (event_id, tenant_id, event_type, occurred_at, "
            "visitor_id, _partition_date, _source, _source_line) "
            "VALUES ('old', 'acme', 'page_view', now(), 'v', current_date, 'f', 1)"
        )
    assert PostgresResource(url=url).migrate_warehouse()
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'raw' AND column_name = 'received_at' ORDER BY 1"
        ).fetchall()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'platform' "
            "AND table_name IN ('tenant_keys', 'tenant_origins')"
        ).fetchone()
        old = conn.execute("SELECT event_id, received_at FROM raw.file_events").fetchall()
    assert columns == [
        ("api_events", "timestamp with time zone"),
        ("file_events", "timestamp with time zone"),
    ]
    assert tables == (2,) and old == [("old", None)]


def test_a_key_is_masked_in_any_text_but_its_key_id():
    from analytics_platform.redaction import redact
    from analytics_platform.tenants.key_format import new_secret

    for kind in ("write", "read"):
        secret = new_secret(kind)
        for text in (
            f'{{"writeKey": "{secret}", "events": []}}',
            f"POST /collect?k={secret} 401",
            f"key {secret}, rejected",
            secret,
        ):
            masked = redact(text)
            assert secret[12:] not in masked and secret[:12] in masked, text
        assert redact(f"Authorization: Bearer {secret}") == "Authorization: ***"
        assert redact(f"sent Bearer {secret}") == "sent Bearer ***"
    assert redact("apk_w_short is no key") == "apk_w_short is no key"
