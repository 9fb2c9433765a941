"""`analytics-platform query`: read-only SQL in one tenant's database, on real chDB.

Two tenants get their databases from the real migrations; the other tenant's
rows carry a value (SECRET) that must never show up in anything the first
tenant's queries print, including error messages.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from filelock import FileLock

from analytics_platform.explore.output import format_result
from analytics_platform.explore.query import (
    QueryFailed,
    ServerReader,
    TenantDatabaseMissing,
    checked_query,
    embedded_session_statements,
    fetch,
    read_only_settings,
    run_query,
    tenant_reader,
)
from analytics_platform.explore.sql_guard import (
    QueryRefused,
    check_function,
    check_query_tree,
    parse_ast,
)
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.migrations import migrate_tenant

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SECRET = 424242


@pytest.fixture(scope="module")
def clickhouse(clickhouse_url: str) -> ClickHouseResource:
    return ClickHouseResource(url=clickhouse_url, lock_timeout_seconds=60)


@pytest.fixture(scope="module")
def tenants(warehouse_url: str, clickhouse: ClickHouseResource) -> Iterator[tuple[str, str]]:
    """(ours, theirs): two migrated tenants; ours has two days, theirs one day of SECRET."""
    ours, theirs = (f"{label}_{uuid.uuid4().hex[:8]}" for label in ("qa", "qb"))
    postgres = PostgresResource(url=warehouse_url)
    with clickhouse.session() as session:
        for tenant in (ours, theirs):
            migrate_tenant(postgres, clickhouse, session, tenant)
        insert = (
            "INSERT INTO {db}.fct_daily_metrics "
            "(tenant_id, event_date, visitors, sessions, page_views, events) VALUES {rows}"
        )
        session.command(
            insert.format(
                db=clickhouse.database_for(ours),
                rows=f"('{ours}', '2026-11-02', 3, 5, 5, 6), ('{ours}', '2026-11-03', 2, 2, 4, 4)",
            )
        )
        session.command(
            insert.format(
                db=clickhouse.database_for(theirs),
                rows=f"('{theirs}', '2026-11-02', {SECRET}, {SECRET}, {SECRET}, {SECRET})",
            )
        )
    yield ours, theirs


def test_a_select_returns_the_tenants_rows_as_table_csv_and_json(clickhouse, tenants):
    ours, _ = tenants
    result = run_query(
        clickhouse,
        ours,
        "SELECT event_date, visitors, round(page_views / events, 2) AS share "
        "FROM fct_daily_metrics ORDER BY event_date",
    )
    assert result.columns == ["event_date", "visitors", "share"]
    assert format_result(result, "table").splitlines() == [
        "event_date  visitors  share",
        "----------  --------  -----",
        "2026-11-02         3   0.83",
        "2026-11-03         2    1.0",
        "(2 rows)",
    ]
    assert format_result(result, "csv").splitlines() == [
        "event_date,visitors,share",
        "2026-11-02,3,0.83",
        "2026-11-03,2,1.0",
    ]
    assert json.loads(format_result(result, "json")) == [
        {"event_date": "2026-11-02", "visitors": 3, "share": 0.83},
        {"event_date": "2026-11-03", "visitors": 2, "share": 1.0},
    ]


def test_comments_joins_ctes_and_show_tables_work_inside_the_tenant(clickhouse, tenants):
    ours, _ = tenants
    db = clickhouse.database_for(ours)
    hidden_keywords = (
        "/* DROP DATABASE x; */ SELECT sum(visitors) AS v -- ; DELETE everything\n"
        f"FROM `{db}`.fct_daily_metrics"
    )
    assert run_query(clickhouse, ours, hidden_keywords).rows == [(5,)]
    joined = (
        "WITH d AS (SELECT event_date, visitors FROM fct_daily_metrics) "
        "SELECT count() AS n FROM d JOIN fct_sessions AS s ON s.session_date = d.event_date "
        "UNION ALL SELECT count() FROM numbers(4) WHERE number IN (SELECT visitors FROM d)"
    )
    assert sorted(run_query(clickhouse, ours, joined).rows) == [(0,), (2,)]
    tables = {row[0] for row in run_query(clickhouse, ours, "SHOW TABLES").rows}
    assert {"fct_daily_metrics", "fct_sessions", "dim_visitors"} <= tables
    described = run_query(clickhouse, ours, "DESCRIBE TABLE fct_daily_metrics").rows
    assert ("visitors", "UInt64") in {row[:2] for row in described}


WRITES = [
    "INSERT INTO fct_daily_metrics (tenant_id, event_date) VALUES ('x', '2026-01-01')",
    "INSERT INTO fct_daily_metrics SELECT * FROM fct_daily_metrics",
    "ALTER TABLE fct_daily_metrics DELETE WHERE 1",
    "DROP TABLE fct_daily_metrics",
    "/* SELECT */ DROP DATABASE {ours}",
    "TRUNCATE TABLE fct_daily_metrics",
    "CREATE TABLE pwned (a UInt8) ENGINE = Memory",
    "RENAME TABLE fct_daily_metrics TO gone",
    "OPTIMIZE TABLE fct_daily_metrics FINAL",
    "SYSTEM DROP DNS CACHE",
    "SET readonly = 0",
    "KILL QUERY WHERE 1",
    "DETACH TABLE fct_daily_metrics",
    "GRANT SELECT ON {theirs}.* TO default",
    "EXPLAIN SELECT * FROM {theirs}.fct_daily_metrics",
]
OTHER_DATABASES = [
    "SELECT 1; DROP DATABASE {theirs}",
    "SELECT * FROM fct_daily_metrics;\nDROP TABLE {theirs}.fct_daily_metrics",
    "SELECT * FROM {theirs}.fct_daily_metrics",
    "SELECT * FROM `{theirs}`.`fct_daily_metrics`",
    'SELECT * FROM "{theirs}"."fct_daily_metrics"',
    "SELECT * FROM /* mine */ {theirs} . fct_daily_metrics",
    "SELECT * FROM (SELECT * FROM {theirs}.fct_daily_metrics)",
    "WITH t AS (SELECT * FROM {theirs}.fct_daily_metrics) SELECT * FROM t",
    "SELECT * FROM fct_daily_metrics AS a JOIN {theirs}.fct_daily_metrics AS b USING event_date",
    "SELECT * FROM fct_daily_metrics, {theirs}.fct_daily_metrics",
    "SELECT visitors FROM fct_daily_metrics "
    "UNION ALL SELECT visitors FROM {theirs}.fct_daily_metrics",
    "SELECT 1 INTERSECT SELECT 1 EXCEPT SELECT visitors FROM {theirs}.fct_daily_metrics",
    "SELECT * FROM fct_daily_metrics WHERE visitors IN {theirs}.fct_daily_metrics",
    "SELECT * FROM fct_daily_metrics WHERE visitors GLOBAL NOT IN "
    "(SELECT visitors FROM {theirs}.fct_daily_metrics)",
    "SELECT EXISTS (SELECT 1 FROM {theirs}.fct_daily_metrics)",
    "SELECT (SELECT max(visitors) FROM {theirs}.fct_daily_metrics)",
    # Analysis would fold this and put the other tenant's value in the error message.
    "SELECT toDate((SELECT toString(max(visitors)) FROM {theirs}.fct_daily_metrics))",
    "SELECT throwIf((SELECT max(visitors) FROM {theirs}.fct_daily_metrics) > 0, 'x')",
    "SELECT * FROM system.tables",
    "SELECT name FROM system.databases",
    "SELECT query FROM system.query_log",
    "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "SELECT * FROM default.anything",
    "SHOW DATABASES",
    "SHOW TABLES FROM {theirs}",
    "SHOW CREATE TABLE {theirs}.fct_daily_metrics",
    "DESCRIBE TABLE {theirs}.fct_daily_metrics",
    "DESCRIBE (SELECT * FROM {theirs}.fct_daily_metrics)",
    "SELECT * FROM `{theirs}.fct_daily_metrics`",
    "SELECT * FROM `ten\\nant`.fct_daily_metrics",
]
TABLE_FUNCTIONS_AND_SETTINGS = [
    "SELECT * FROM fct_daily_metrics SETTINGS readonly = 0",
    "SELECT * FROM fct_daily_metrics SETTINGS max_threads = 1",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a String')",
    "SELECT * FROM remote('127.0.0.1', {theirs}.fct_daily_metrics)",
    "SELECT * FROM cluster('default', {theirs}.fct_daily_metrics)",
    "SELECT * FROM s3('http://127.0.0.1:9/b/k.csv', CSV, 'a String')",
    "SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "SELECT * FROM merge('{theirs}', '.*')",
    "SELECT * FROM merge(REGEXP('^tenant_'), '.*')",
    "SELECT * FROM view(SELECT * FROM {theirs}.fct_daily_metrics)",
    "SELECT * FROM input('a String')",
    "SELECT * FROM executable('cat /etc/passwd', TSV, 'a String')",
    "SELECT * FROM Python(os)",
    "SELECT * FROM loop(fct_daily_metrics)",
    "SELECT * FROM dictionary('{theirs}.d')",
    "SELECT * FROM fct_daily_metrics WHERE visitors IN remote('127.0.0.1', system.one)",
    "SELECT file('/etc/hostname')",
    "SELECT length(file('/etc/passwd')) > 0",
    "SELECT dictGet('{theirs}.dict', 'visitors', toUInt64(1))",
    "SELECT dictGetOrDefault('{theirs}.dict', 'visitors', 1, 0)",
    "SELECT joinGet('{theirs}.j', 'visitors', 1)",
    "SELECT hasColumnInTable('{theirs}', 'fct_daily_metrics', 'visitors')",
    "SELECT * FROM fct_daily_metrics INTO OUTFILE '/tmp/analytics-platform-pwned.csv'",
    "SELECT * FROM fct_daily_metrics FORMAT JSON",
]

REFUSAL_REASONS = (
    r"statements are refused|one statement at a time|outside this tenant's database|"
    r"\) is refused|in readonly mode|INTO OUTFILE|line breaks"
)


@pytest.mark.parametrize("sql", WRITES + OTHER_DATABASES + TABLE_FUNCTIONS_AND_SETTINGS)
def test_hostile_queries_are_refused_and_leak_nothing(clickhouse, tenants, sql):
    ours, theirs = tenants
    statement = sql.format(
        ours=clickhouse.database_for(ours), theirs=clickhouse.database_for(theirs)
    )
    with pytest.raises((QueryRefused, QueryFailed)) as refused:
        run_query(clickhouse, ours, statement)
    # Refused for what it is, not by accident (an unknown table, a syntax error).
    assert re.search(REFUSAL_REASONS, str(refused.value)), str(refused.value)
    assert str(SECRET) not in str(refused.value)
    assert "root:" not in str(refused.value)  # /etc/passwd


def test_refusals_name_the_reason_and_the_tenants_tables(clickhouse, tenants):
    ours, theirs = tenants
    other = clickhouse.database_for(theirs)
    with pytest.raises(QueryRefused, match=f"{other}.fct_daily_metrics is outside") as foreign:
        run_query(clickhouse, ours, f"SELECT * FROM {other}.fct_daily_metrics")
    assert "fct_daily_metrics, fct_experiment_results" in str(foreign.value)
    with pytest.raises(QueryRefused, match="one statement at a time"):
        run_query(clickhouse, ours, f"SELECT 1; DROP DATABASE {other}")
    with pytest.raises(QueryRefused, match="DROP statements are refused"):
        run_query(clickhouse, ours, "DROP TABLE fct_daily_metrics")
    with pytest.raises(QueryFailed, match="Cannot modify 'readonly' setting in readonly mode"):
        run_query(clickhouse, ours, "SELECT 1 SETTINGS readonly = 0")
    with pytest.raises(QueryRefused, match=r"table function url\(\) is refused"):
        run_query(clickhouse, ours, "SELECT * FROM url('http://127.0.0.1:9/', CSV, 'a String')")
    assert not Path("/tmp/analytics-platform-pwned.csv").exists()


def test_nothing_was_written_and_the_other_tenant_is_intact(clickhouse, tenants):
    ours, theirs = tenants
    with pytest.raises((QueryRefused, QueryFailed)):
        run_query(clickhouse, ours, f"SELECT 1; DROP DATABASE {clickhouse.database_for(theirs)}")
    with clickhouse.session() as session:
        kept = session.query_df(
            f"SELECT visitors FROM {clickhouse.database_for(theirs)}.fct_daily_metrics"
        )
        ours_rows = session.query_df(
            f"SELECT count() AS n FROM {clickhouse.database_for(ours)}.fct_daily_metrics"
        )
    assert kept["visitors"].tolist() == [SECRET]
    assert ours_rows["n"].tolist() == [2]


def test_rows_passing_through_the_serving_scratch_are_out_of_every_tenants_reach(
    clickhouse, tenants
):
    """Serving loads every tenant's rows through one scratch table outside the tenants'
    databases; one left behind by a run that died holds another tenant's rows."""
    ours, theirs = tenants
    with clickhouse.session() as session:
        session.command(f"CREATE DATABASE IF NOT EXISTS {clickhouse.scratch_database}")
        session.command(
            f"CREATE TABLE {clickhouse.scratch_database}._load_fct_daily_metrics_left "
            f"AS {clickhouse.database_for(theirs)}.fct_daily_metrics"
        )
        session.command(
            f"INSERT INTO {clickhouse.scratch_database}._load_fct_daily_metrics_left "
            f"SELECT * FROM {clickhouse.database_for(theirs)}.fct_daily_metrics"
        )
    try:
        for sql in (
            f"SELECT * FROM {clickhouse.scratch_database}._load_fct_daily_metrics_left",
            f"SHOW TABLES FROM {clickhouse.scratch_database}",
            f"SELECT * FROM merge('{clickhouse.scratch_database}', '.*')",
        ):
            with pytest.raises(QueryRefused) as refused:
                run_query(clickhouse, ours, sql)
            assert re.search(REFUSAL_REASONS, str(refused.value)), str(refused.value)
            assert str(SECRET) not in str(refused.value)
            assert "_load_" not in str(refused.value).split("Tables of", 1)[-1]
    finally:
        with clickhouse.session() as session:
            session.command(
                f"DROP TABLE {clickhouse.scratch_database}._load_fct_daily_metrics_left"
            )


def test_the_engine_itself_refuses_writes_in_the_read_only_session(clickhouse, tenants):
    """The third wall on its own: statements sent past the checks still cannot write."""
    ours, _ = tenants
    with tenant_reader(clickhouse, ours) as reader:
        assert reader.query_df("SELECT currentDatabase() AS d")["d"].tolist() == [
            clickhouse.database_for(ours)
        ]
        for statement in (
            "INSERT INTO fct_daily_metrics (tenant_id, event_date) VALUES ('x', '2026-01-01')",
            "CREATE TABLE pwned (a UInt8) ENGINE = Memory",
            "DROP TABLE fct_daily_metrics",
            "SELECT * FROM url('http://127.0.0.1:9/', CSV, 'a String')",
            "SELECT 1 SETTINGS readonly = 0",
        ):
            with pytest.raises(Exception, match="readonly mode"):
                reader.query_df(statement)
    # ...and the read-only mode ended with the session: the platform can still write.
    with clickhouse.session() as session:
        scratch = f"{clickhouse.database_for(ours)}.scratch_{uuid.uuid4().hex[:6]}"
        session.command(f"CREATE TABLE {scratch} (a UInt8) ENGINE = Memory")
        session.command(f"DROP TABLE {scratch}")


def test_rows_beyond_max_rows_are_cut_and_said(clickhouse, tenants):
    ours, _ = tenants
    result = run_query(clickhouse, ours, "SELECT number FROM numbers(100000)", max_rows=10)
    assert [row[0] for row in result.rows] == list(range(10))
    assert result.truncated
    assert format_result(result).splitlines()[-1] == "(10 rows, more not shown: raise --max-rows)"


def test_a_tenant_without_a_database_is_told_how_to_add_it(clickhouse):
    with pytest.raises(TenantDatabaseMissing, match="analytics-platform tenants add nobody_here"):
        run_query(clickhouse, "nobody_here", "SELECT 1")


def test_every_alias_of_a_refused_function_is_refused(clickhouse):
    """Pins the function list against this ClickHouse: an alias must not slip through."""
    with clickhouse.session() as session:
        functions = session.query_df("SELECT name, alias_to FROM system.functions")
    refused = set()
    for name, _ in functions.itertuples(index=False):
        try:
            check_function(name)
        except QueryRefused:
            refused.add(name)
    for name, alias_to in functions.itertuples(index=False):
        if alias_to in refused:
            assert name in refused, f"{name} is an alias of refused {alias_to}"
    # The prefixes catch only what they mean to: no ordinary function starts with them.
    assert {"dictGet", "dictHas", "file", "joinGet", "AIGenerate", "aiEmbed"} <= refused
    assert all(
        re.match(r"^(dict|naiveBayesClassifier|ai[A-Z]|AI[A-Z])", n)
        for n in refused
        - {
            "joinGet",
            "joinGetOrNull",
            "hasColumnInTable",
            "file",
            "catboostEvaluate",
            "getServerSetting",
            "getMacro",
            "getClientHTTPHeader",
            "showCertificate",
            "filesystemAvailable",
            "filesystemCapacity",
            "filesystemUnreserved",
        }
    ), sorted(refused)


def test_server_queries_carry_readonly_and_the_row_cap():
    assert read_only_settings() == {"readonly": 1}
    assert read_only_settings(100) == {
        "readonly": 1,
        "max_result_rows": 101,
        "result_overflow_mode": "break",
    }
    # chDB: readonly=1 forbids any later SET, so it is the last setting before USE.
    assert embedded_session_statements("tenant_acme", 5) == [
        "SET max_result_rows = 6",
        "SET result_overflow_mode = 'break'",
        "SET readonly = 1",
        "USE `tenant_acme`",
    ]


def test_the_server_reader_checks_and_reads_through_clickhouse_connect(clickhouse, tenants):
    """clickhouse-connect's chDB interface stands in for a server: the same client code
    (query_df appends FORMAT Native, raw_query sends EXPLAIN as written), without HTTP.

    Per-query readonly=1 is left out here: this interface applies a raw query's settings
    with SET and restores them with SET, which readonly=1 forbids; a server takes them
    as request parameters instead.
    """
    ours, theirs = tenants
    database = clickhouse.database_for(ours)
    with FileLock(clickhouse.url.removeprefix("chdb://") + ".lock", timeout=60):
        client = clickhouse_connect.get_client(dsn=clickhouse.url, database=database)
        try:
            reader = ServerReader(client, {})
            sql = "SELECT event_date, visitors FROM fct_daily_metrics ORDER BY event_date"
            kind, canonical = checked_query(reader, database, sql)
            result = fetch(reader, kind, canonical, max_rows=1)
            assert format_result(result, "csv").splitlines() == [
                "event_date,visitors",
                "2026-11-02,3",
            ]
            assert result.truncated
            other = clickhouse.database_for(theirs)
            for hostile in (
                f"SELECT * FROM (SELECT * FROM {other}.fct_daily_metrics)",
                f"SELECT 1; DROP DATABASE {other}",
                "SELECT * FROM url('http://127.0.0.1:9/', CSV, 'a String')",
                "SELECT * FROM fct_daily_metrics FORMAT JSON",
            ):
                with pytest.raises(QueryRefused):
                    checked_query(reader, database, hostile)
        finally:
            client.close()


def test_an_unreachable_server_is_named_without_its_password():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ClickHouseResource(url=f"http://reader:s3cret@127.0.0.1:{port}")
    with pytest.raises(QueryFailed, match=f"could not reach .*127.0.0.1:{port}") as failed:
        run_query(server, "acme", "SELECT 1")
    assert "s3cret" not in str(failed.value)


def test_cli_prints_rows_and_refuses_writes(clickhouse_url, tenants, tmp_path):
    ours, theirs = tenants
    env = {**os.environ, "CLICKHOUSE_URL": clickhouse_url, "PLATFORM_HOME": str(tmp_path)}
    cli = str(BIN / "analytics-platform")
    select = "SELECT event_date, sessions FROM fct_daily_metrics ORDER BY 1"
    shown = subprocess.run(
        [cli, "query", ours, select, "--format", "csv"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["event_date,sessions", "2026-11-02,5", "2026-11-03,2"]
    refused = subprocess.run(
        [cli, "query", ours, f"DROP DATABASE tenant_{theirs}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert "refused: DROP statements are refused" in refused.stderr


def test_printouts_that_could_be_misread_are_checked_whole():
    """Pure checks on ClickHouse's printouts, for shapes the engine prints rarely."""
    final = "    TABLE id: 3, alias: __table1, table_name: tenant_a.t, final: 1, sample_size: 1 / 2"
    check_query_tree([final], "tenant_a")
    spoofed = "    TABLE id: 3, alias: x, table_name: tenant_a.t, table_name: tenant_b.t"
    with pytest.raises(QueryRefused, match=r"tenant_b\.t is outside"):
        check_query_tree([spoofed], "tenant_a")
    with pytest.raises(QueryRefused, match="function file"):
        check_query_tree(["  FUNCTION id: 4, function_name: file, function_type: ordinary"], "a")
    # A name with a line break splits its node; the stray line is refused, not skipped.
    with pytest.raises(QueryRefused, match="line breaks"):
        parse_ast(["SelectWithUnionQuery (children 1)", " ExpressionList", "b.t"])
    with pytest.raises(QueryRefused, match="line breaks"):
        parse_ast(["SelectWithUnionQuery (children 1)", "   Identifier x"])
