"""What a tenant's read-only query may touch, decided from ClickHouse's own parse of it.

`analytics-platform query` runs an analyst's SQL against one tenant's database.
Nothing here parses SQL with regexes: ClickHouse parses the text (`formatQuery`,
which also refuses a second statement), prints its syntax tree (`EXPLAIN AST`)
and, once that passed, its analyzed tree (`EXPLAIN QUERY TREE`). These functions
read those printouts and raise `QueryRefused` naming what to change. They are
the second and third of three walls; the engine runs the query with
`readonly=1`, which refuses every write and every settings change by itself.

The syntax tree is checked before the analyzed one because analysis already
executes scalar subqueries and constant functions (`file(...)`), and an error
message raised there could carry another tenant's value or a file's content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

# Table functions that only produce rows from their arguments, never from storage,
# files or the network; every other one (file, url, s3, remote, mysql, merge, ...)
# is refused, including any added by a newer ClickHouse.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "primes",
        "values",
        "null",
        "generaterandom",
        "format",
    }
)
# Scalar functions that read a table, dictionary, file, the network or the host by a
# name given as a string, which the table checks below cannot see.
DENIED_FUNCTIONS = frozenset(
    {
        "joinget",
        "joingetornull",
        "hascolumnintable",
        "file",
        "catboostevaluate",
        "getserversetting",
        "getmacro",
        "getclienthttpheader",
        "showcertificate",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
    }
)
# dictGet*, dictHas, ...; naiveBayesClassifier* load model files; the AI functions
# (aiGenerate, AIEmbed, ...) call an external model provider. No other function
# starts with these (test_query pins that against the engine's function list).
DENIED_FUNCTION_PREFIXES = ("dict", "naivebayesclassifier", "ai")
# The implicit table of `SELECT 1` (one row, one `dummy` column).
ALLOWED_OTHER_TABLES = frozenset({"system.one"})
# Real tenant tables have plain names; anything else is refused rather than guessed at.
PLAIN_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
TABLE_NAME = re.compile(rf"^(?:(?P<database>{PLAIN_NAME})\.)?(?P<table>{PLAIN_NAME})$")
IN_FUNCTION = re.compile(r"^(global)?(not)?(null)?in(ignoreset)?$", re.IGNORECASE)
AST_LINE = re.compile(r"^(?P<indent> *)(?P<kind>[A-Za-z]+)(?: (?P<detail>.*))?$")
CHILDREN = re.compile(r" ?\(children \d+\)$")
ALIAS = re.compile(r" \(alias .*\)$")


class QueryRefused(ValueError):
    """The query would write, or read outside the tenant's database; the message says what."""


@dataclass
class AstNode:
    """One line of `EXPLAIN AST`: its kind (`TableIdentifier`, `Function`, ...) and the rest."""

    kind: str
    detail: str
    children: list[AstNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The identifier or function name, without `(alias ...)` and `(children N)`."""
        return ALIAS.sub("", CHILDREN.sub("", self.detail))

    def walk(self, parent: AstNode | None = None) -> Iterator[tuple[AstNode, AstNode | None]]:
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


def sql_string(text: str) -> str:
    """`text` as a ClickHouse string literal (so ClickHouse parses the user's SQL as data)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
    return f"'{escaped}'"


def parse_ast(lines: Sequence[str]) -> AstNode:
    """The tree printed by `EXPLAIN AST` (one node per line, one space of indent per level).

    A name holding a line break splits its node over two lines; such a query is
    refused instead of being read wrongly.
    """
    root: AstNode | None = None
    stack: list[tuple[int, AstNode]] = []
    for line in lines:
        match = AST_LINE.match(line)
        depth = len(match["indent"]) if match else -1
        if match is None or (root is None) != (depth == 0) or depth > len(stack):
            raise QueryRefused(
                "names in the query must not contain line breaks or control characters"
            )
        node = AstNode(match["kind"], match["detail"] or "")
        del stack[depth:]
        if stack:
            stack[-1][1].children.append(node)
        else:
            root = node
        stack.append((depth, node))
    if root is None:
        raise QueryRefused("ClickHouse found no statement in the query")
    return root


def statement_kind(root: AstNode, sql: str) -> str:
    """'SELECT', 'SHOW TABLES' or 'DESCRIBE'; anything else is refused, named by its keyword.

    `sql` is ClickHouse's formatting of the query. SHOW DATABASES, SHOW TABLES FROM x
    and SHOW DICTIONARIES print as the same `ShowTables` node, so only the exact
    text `SHOW TABLES` (this database's tables) passes.
    """
    if root.kind == "SelectWithUnionQuery":
        return "SELECT"
    if root.kind == "DescribeQuery":
        return "DESCRIBE"
    if root.kind == "ShowTables" and sql == "SHOW TABLES":
        return "SHOW TABLES"
    words = sql.split()
    keyword = " ".join(words[:2] if words[:1] == ["SHOW"] else words[:1]) or "?"
    raise QueryRefused(
        f"{keyword} statements are refused: this command only reads (SELECT, WITH ... SELECT, "
        "UNION, SHOW TABLES, DESCRIBE TABLE)"
    )


def check_table(name: str, database: str, *, where: str = "") -> None:
    """Refuse a table outside `database`: another tenant's, `system.*`, `default.*`, ..."""
    match = TABLE_NAME.match(name)
    if match is None:
        raise QueryRefused(
            f"table {name!r}{where} is not a plain name: refer to the tenant's tables by "
            f"their names (e.g. fct_daily_metrics or {database}.fct_daily_metrics)"
        )
    if match["database"] in (None, database) or name in ALLOWED_OTHER_TABLES:
        return
    raise QueryRefused(
        f"{name}{where} is outside this tenant's database {database}: a query may only read "
        f"{database} (write fct_sessions, not otherdb.fct_sessions)"
    )


def check_function(name: str) -> None:
    """Refuse scalar functions that read data, files or the network by name (dictGet, file)."""
    lowered = name.lower()
    if lowered in DENIED_FUNCTIONS or lowered.startswith(DENIED_FUNCTION_PREFIXES):
        raise QueryRefused(
            f"function {name}() is refused: it reads dictionaries, tables, files or the network "
            "outside the tenant's tables"
        )


def check_table_function(name: str) -> None:
    if name.lower() not in ALLOWED_TABLE_FUNCTIONS:
        allowed = ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
        raise QueryRefused(
            f"table function {name}() is refused: it reads outside the tenant's tables "
            f"(allowed: {allowed})"
        )


def check_ast(root: AstNode, database: str, table_functions: Iterable[str]) -> None:
    """Refuse what the syntax tree shows: writes, INTO OUTFILE, SETTINGS, foreign tables, ...

    `table_functions` names every table function the server knows (from
    `system.table_functions`), so one used as a scalar (`x IN remote(...)`) is caught.
    """
    if root.kind == "SelectWithUnionQuery" and len(root.children) != 1:
        raise QueryRefused(
            "INTO OUTFILE and FORMAT clauses are refused: choose the output with --format"
        )
    known_table_functions = {name.lower() for name in table_functions}
    for node, parent in root.walk():
        if node.kind == "Set":
            raise QueryRefused("SETTINGS clauses are refused: the query runs with readonly=1")
        if node.kind == "TableIdentifier":
            check_table(node.name, database)
        if node.kind != "Function":
            continue
        name = node.name.split(" ", 1)[0]
        if parent is not None and parent.kind == "TableExpression":
            check_table_function(name)
            continue
        check_function(name)
        if name.lower() in known_table_functions:
            check_table_function(name)
        if IN_FUNCTION.match(name):
            arguments = node.children[0].children if node.children else []
            # `x IN otherdb.t` names a table with a bare identifier, not a TableIdentifier.
            if len(arguments) == 2 and arguments[1].kind == "Identifier":
                check_table(arguments[1].name, database, where=" (on the right of IN)")


TREE_TABLE = re.compile(r"^\s*TABLE id: \d+,")
TREE_TABLE_NAME = re.compile(r"table_name: (?P<name>[^,\s]*)")
TREE_TABLE_FUNCTION = re.compile(r"^\s*TABLE_FUNCTION id: \d+,")
TREE_TABLE_FUNCTION_NAME = re.compile(r"table_function_name: (?P<name>[^,\s]*)")
TREE_FUNCTION = re.compile(r"^\s*FUNCTION id: \d+, function_name: (?P<name>\w+)")


def check_query_tree(lines: Sequence[str], database: str) -> None:
    """Refuse what the analyzed tree resolves to: every table is `database.<t>` (or system.one).

    Here unqualified names are already resolved against the default database,
    and `x IN t` shows which table `t` is.
    """
    for line in lines:
        if TREE_TABLE.match(line):
            # Every name on the line (`final: 1`, `sample_size: ...` may follow it), so
            # an alias spelling a name of its own cannot stand in for the real one.
            for name in TREE_TABLE_NAME.findall(line):
                if "." not in name:
                    raise QueryRefused(f"could not tell which database table {name!r} is in")
                check_table(name, database)
        elif TREE_TABLE_FUNCTION.match(line):
            for name in TREE_TABLE_FUNCTION_NAME.findall(line):
                check_table_function(name)
        elif function := TREE_FUNCTION.match(line):
            check_function(function["name"])
