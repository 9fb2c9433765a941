"""`redact`: every credential form the platform's libraries accept is masked; other text is not."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from analytics_platform.redaction import redact

MASKED = [
    # libpq / psycopg URLs
    ("postgresql://u:p4ss@h/db failed", "postgresql://u:***@h/db failed"),
    ("postgres://u:p4ss@h:5432/db", "postgres://u:***@h:5432/db"),
    ("postgresql://:p4ss@h/db", "postgresql://:***@h/db"),
    ("postgresql://me@corp:p4ss@h/db", "postgresql://me@corp:***@h/db"),
    ("postgresql://me%40corp:p%3As%40s@h/db", "postgresql://me%40corp:***@h/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db?password=p4ss", "postgresql://u@h/db?password=***"),
    (
        "postgresql://u@h/db?sslmode=require&sslpassword=k3y&application_name=ap",
        "postgresql://u@h/db?sslmode=require&sslpassword=***&application_name=ap",
    ),
    # libpq key=value DSNs
    ("host=db port=5432 password=p4ss dbname=wh", "host=db port=5432 password=*** dbname=wh"),
    ("host=db password='a \\' b' dbname=wh", "host=db password=*** dbname=wh"),
    ("host=db password = 'p 4 s s' user=u", "host=db password = *** user=u"),
    ("host=db password=a\\ b user=u", "host=db password=*** user=u"),
    ("sslpassword=k3y sslmode=verify-full", "sslpassword=*** sslmode=verify-full"),
    # clickhouse-connect URLs
    ("clickhouse://default:p4ss@ch:8123/db", "clickhouse://default:***@ch:8123/db"),
    ("clickhouses://default:p4ss@ch:8443", "clickhouses://default:***@ch:8443"),
    ("https://reader:p4ss@ch.example.com:8443/", "https://reader:***@ch.example.com:8443/"),
    ("http://ch:8123/?user=default&password=p4ss", "http://ch:8123/?user=default&password=***"),
    # HTTP: headers, tokens, api keys
    ("Authorization: Bearer abc.def-123", "Authorization: ***"),
    (
        "{'Authorization': 'Token abc123', 'Accept': 'json'}",
        "{'Authorization': ***, 'Accept': 'json'}",
    ),
    ("proxy-authorization: Basic dXNlcjpwYXNz", "proxy-authorization: ***"),
    ("401 for Bearer xyz.123 at line 7", "401 for Bearer *** at line 7"),
    ("sent Basic dXNlcjpwYXNzd29yZA==", "sent Basic ***"),
    (
        "GET https://api.example.com/events?api_key=k3y&page=2",
        "GET https://api.example.com/events?api_key=***&page=2",
    ),
    (
        "https://api.example.com/x?access_token=t0k#frag",
        "https://api.example.com/x?access_token=***#frag",
    ),
    ("failed; token=abc; retry", "failed; token=*** retry"),
    ("client_secret=s3cr3t api-key: k3y", "client_secret=*** api-key: ***"),
    ('{"password": "s\\"3", "user": "u"}', '{"password": ***, "user": "u"}'),
    ("DB_PASSWORD=p4ss make demo", "DB_PASSWORD=*** make demo"),
]

UNCHANGED = [
    "postgresql://u@h:5432/db?sslmode=require",
    "postgresql://h/db",
    "http://ch:8123/?database=tenant_acme",
    "https://api.example.com/events?since=2026-11-01&email=a@b.com",
    "host=db port=5432 dbname=wh user=u sslmode=require passfile=/home/u/.pgpass",
    "tenant acme: raw_file_events failed at line 7 (bad_json)",
    "a basic check of passwordless login",
    "chdb:///work/.platform/clickhouse",
    "partition 2026-11-03|acme, run 1b2c-3d4e",
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_every_credential_form_is_masked(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_credentials_is_left_as_it_is(text):
    assert redact(text) == text


def test_masking_twice_changes_nothing_more():
    once = redact("postgresql://u:p@h/db?password=x&sslmode=require password='y z' Bearer t")
    assert redact(once) == once
    assert "sslmode=require" in once


def _url(scheme: str, user: str, password: str) -> str:
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@db.example.com:5432/wh"


def _query(key: str, password: str) -> str:
    return f"postgresql://u@db.example.com/wh?sslmode=require&{key}={quote(password, safe='')}&x=1"


def _dsn(key: str, password: str) -> str:
    dsn = make_conninfo("", host="db.example.com", **{key: password}, dbname="wh")
    assert conninfo_to_dict(dsn)[key] == password  # written as libpq reads it back
    return f"connection to {dsn} failed"


FORMS = [
    *(lambda pw, s=s: _url(s, "user", pw) for s in ("postgresql", "postgres", "clickhouse")),
    *(lambda pw, s=s: _url(s, "", pw) for s in ("clickhouses", "http", "https")),
    lambda pw: _url("postgresql", "me@corp", pw),
    lambda pw: _url("postgresql", "a:b", pw),
    lambda pw: _query("password", pw),
    lambda pw: _query("sslpassword", pw),
    lambda pw: _query("api_key", pw),
    lambda pw: _dsn("password", pw),
    lambda pw: _dsn("sslpassword", pw),
    lambda pw: f"token={quote(pw, safe='')} secret={quote(pw, safe='')}",
]
TOKEN = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/",
    min_size=8,
)


PASSWORD = st.text(min_size=1, alphabet=st.characters(codec="utf-8", exclude_characters="\0"))


@given(password=PASSWORD)
@example(password="p@ss/wo:rd?#&=")
@example(password="it's \\ a 'quoted' pass")
@example(password=" leading and trailing ")
@pytest.mark.parametrize("form", range(len(FORMS)))
def test_a_generated_password_never_survives_in_any_supported_form(form, password):
    # Whatever the password, the masked text is the same as for a plain one: no part of it
    # (not even a tail after an `&`, a quote or a space) is left.
    reference = redact(FORMS[form]("hunter2"))
    assert "hunter2" not in reference and "***" in reference
    assert redact(FORMS[form](password)) == reference


@given(token=TOKEN)
def test_a_generated_token_never_survives_in_a_header_or_bearer(token):
    for text in (f"Authorization: Bearer {token}", f"retry with Bearer {token} failed"):
        assume(token not in text.replace(token, ""))
        assert token not in redact(text)
