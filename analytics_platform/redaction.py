"""Credentials masked out of text before it is printed, logged or sent in an alert.

One function, `redact`, for every place that shows a connection string or an error:
the forms are those the platform's libraries accept, so a password that reaches
one of them can be written in any of these ways:

- URL userinfo (libpq `postgresql://`/`postgres://`, clickhouse-connect
  `clickhouse://`/`clickhouses://`/`http(s)://`, requests): everything between
  the first `:` after the user and the last `@` of the authority, so an empty
  user, a user holding `@`, or a percent-encoded password are all covered.
- Query parameters whose name says secret (`?password=`, `&sslpassword=`,
  `?api_key=`, `?token=`...): the value up to the next `&`, `#` or space.
- key=value text, libpq's DSN among it (`password=pw`, `password='a \\' b'`),
  and `key: value` or JSON (`"password": "pw"`): quoted values with their
  backslash escapes, unquoted ones up to ASCII whitespace as libpq reads them.
- `Authorization:` headers (any scheme) and bare `Bearer <token>` / `Basic <token>`.
- The platform's own API keys (`apk_w_...`, `apk_r_...`) anywhere, all but their key id.

It masks more than strictly needed rather than less (`password_reset=...` loses
its value too); text without credentials comes back unchanged.
"""

from __future__ import annotations

import re

MASK = "***"
_NOT_MASKED = rf"(?!{re.escape(MASK)})"

# Words that make a key name a secret: db_password, sslpassword, client_secret, api-key...
_SECRET_WORD = r"(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|credentials?)"
_SECRET_KEY = rf"[\w.-]*{_SECRET_WORD}[\w.-]*"
# A value as libpq reads it: '-quoted with backslash escapes, or unquoted up to ASCII
# whitespace (escapes honoured there too; a `"` is an ordinary character). A "-quoted
# value (JSON, .env files) counts as quoted only when it closes before a delimiter.
_VALUE = (
    r"""(?:'(?:\\.|[^'\\])*'?"""
    r"""|"(?:\\.|[^"\\\n])*"(?=[\s,;}\]]|$)"""
    r"""|(?:\\.|[^ \t\n\r\f\v\\])+)"""
)

_RULES: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host -- the password runs to the LAST @ before the path.
    (
        re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/?#]*:)[^\s/?#]*(?=@)"),
        rf"\1{MASK}",
    ),
    # ?password=... and &token=... inside a URL: the value ends at & or #.
    (re.compile(rf"(?i)([?&;]{_SECRET_KEY}=)[^&#\s]*"), rf"\1{MASK}"),
    # Authorization: <scheme> <credentials>, as a header line or a quoted mapping entry.
    (
        re.compile(
            r"""(?i)(\b(?:proxy-)?authorization["']?\s*[:=]\s*)"""
            r"""(?:'[^'\n]*'|"[^"\n]*"|[^\n,;}]*[^\s,;}])"""
        ),
        rf"\1{MASK}",
    ),
    # password=..., "password": "...", sslpassword='...' (not the user:pw of a URL).
    (
        re.compile(
            rf"""(?i)((?<![\w/.-])["']?{_SECRET_KEY}["']?\s*[=:]\s*){_NOT_MASKED}{_VALUE}"""
        ),
        rf"\1{MASK}",
    ),
    (re.compile(rf"(?i)(\bbearer\s+){_NOT_MASKED}[\w.~+/-]+=*"), rf"\1{MASK}"),
    # Basic <base64>: capitalised and long, so prose ("a basic check") stays as it is.
    (re.compile(r"(\bBasic\s+)[A-Za-z0-9+/]{8,}={0,2}"), rf"\1{MASK}"),
    # An API key (tenants/key_format.py) wherever it is, a beacon's writeKey say: its
    # first 12 characters are its key id, which listings show, so they stay.
    (re.compile(r"(apk_[wr]_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{37,}"), rf"\1{MASK}"),
]


def redact(text: str) -> str:
    """`text` with every password, token and secret it holds replaced by `***`."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
