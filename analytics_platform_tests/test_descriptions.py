"""Every description the Dagster UI shows renders as it was written.

The UI renders descriptions as Markdown and drops what parses as raw HTML, so
`LANDING_DIR/<tenant>/<YYYY-MM-DD>/*.jsonl` showed as "LANDING_DIR///*.jsonl" and
`tenant_<id>.fct_daily_metrics` as "tenant_.fct_daily_metrics". Placeholders go
in code spans (backticks). The walk reads the loaded `Definitions`, so text from
any source (Python, dbt YAML, docstrings) is covered.
"""

from __future__ import annotations

from collections.abc import Iterator

from markdown_it import MarkdownIt
from markdown_it.token import Token

from analytics_platform.definitions import defs

# CommonMark plus the GitHub extensions the UI's renderer understands (tables, ~~strike~~);
# without text_join, escapes and entities stay tokens of their own and can be reported.
_MARKDOWN = MarkdownIt("commonmark").enable(["table", "strikethrough"]).disable("text_join")


def markdown_losses(text: str) -> list[str]:
    """What a Markdown renderer would not show as written: one entry per loss, empty if none.

    Raw HTML (`<tenant>`) is dropped; `*`/`_`/`~` pairs become emphasis and vanish;
    backslash escapes and entities lose characters; a paragraph indented four spaces
    (a docstring's second paragraph) turns into a code block. Fenced code and code
    spans are shown literally and pass.
    """
    losses = []

    def walk(tokens: list[Token]) -> None:
        for token in tokens:
            if token.type in ("html_inline", "html_block"):
                losses.append(f"'{token.content.strip()}' is dropped as an HTML tag")
            elif token.type in ("em_open", "strong_open", "s_open"):
                losses.append(f"'{token.markup}' turns into emphasis and disappears")
            elif token.type == "text_special":
                losses.append(f"'{token.markup}' is read as a Markdown {token.info}")
            elif token.type == "code_block":
                losses.append(f"indented text becomes a code block: '{token.content.strip()[:40]}'")
            walk(token.children or [])

    walk(_MARKDOWN.parse(text))
    return losses


def _config_field_descriptions(config_type, path: str) -> Iterator[tuple[str, str | None]]:
    for name, field in (getattr(config_type, "fields", None) or {}).items():
        yield f"{path}.{name}", field.description
        yield from _config_field_descriptions(field.config_type, f"{path}.{name}")
    for member in getattr(config_type, "type_params", None) or []:
        yield from _config_field_descriptions(member, path)


def user_visible_descriptions() -> Iterator[tuple[str, str]]:
    """(where, text) for every description the UI shows for the code location."""
    repository = defs.get_repository_def()
    for spec in defs.resolve_all_asset_specs():
        asset = spec.key.to_user_string()
        yield f"asset {asset}", spec.description
        schema = spec.metadata.get("dagster/column_schema")
        for column in schema.columns if schema is not None else []:
            yield f"column {asset}.{column.name}", column.description
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        yield f"check {key.to_user_string()}", graph.get_check_spec(key).description
    for job in repository.get_all_jobs():
        yield f"job {job.name}", job.description
        for node in job.graph.node_defs:
            yield f"op {node.name}", node.description
            if node.config_schema is not None:
                yield from (
                    (f"config {where}", text)
                    for where, text in _config_field_descriptions(
                        node.config_schema.config_type, node.name
                    )
                )
    for sensor in repository.sensor_defs:
        yield f"sensor {sensor.name}", sensor.description
    for schedule in repository.schedule_defs:
        yield f"schedule {schedule.name}", schedule.description
    for name, resource in repository.get_top_level_resources().items():
        yield f"resource {name}", resource.description
        yield from (
            (f"config {where}", text)
            for where, text in _config_field_descriptions(resource.config_schema.config_type, name)
        )


def test_markdown_losses_names_what_the_ui_would_eat():
    assert markdown_losses("files under LANDING_DIR/<tenant>/<YYYY-MM-DD>/*.jsonl") == [
        "'<tenant>' is dropped as an HTML tag",
        "'<YYYY-MM-DD>' is dropped as an HTML tag",
    ]
    assert markdown_losses("served as tenant_<id>.fct_daily_metrics") == [
        "'<id>' is dropped as an HTML tag"
    ]
    assert markdown_losses("served as <tenant database>.table") == [
        "'<tenant database>' is dropped as an HTML tag"
    ]
    assert markdown_losses("raw.*_events and staging.*_events") == [
        "'*' turns into emphasis and disappears"
    ]
    assert markdown_losses("a __init__ method") == ["'__' turns into emphasis and disappears"]
    assert markdown_losses(r"a \_source column") == ["'\\_' is read as a Markdown escape"]
    assert markdown_losses("rows &lt; 10") == ["'&lt;' is read as a Markdown entity"]
    assert markdown_losses("One line.\n\n    A docstring's second paragraph.") == [
        "indented text becomes a code block: 'A docstring's second paragraph.'"
    ]


def test_markdown_losses_passes_text_that_renders_literally():
    assert markdown_losses("files under `LANDING_DIR/<tenant>/<YYYY-MM-DD>/*.jsonl`") == []
    assert markdown_losses("`tenant_<id>.fct_sessions`, tenant_day_pipeline, a <= b, a -> b") == []
    assert markdown_losses("#### Raw SQL:\n```sql\nselect * from t where a <b> c\n```") == []
    assert markdown_losses("GET <api_base_url>/events, see <https://docs.dagster.io>") == []


def test_the_walk_reaches_every_kind_of_description():
    found = dict(user_visible_descriptions())
    # One of each kind the UI shows, so a walk that silently finds nothing fails here.
    for where in (
        "asset raw_file_events",
        "asset fct_sessions",  # from the dbt YAML
        "column fct_sessions.session_id",
        "check raw_file_events:rows_read_equal_loaded_plus_quarantined",
        "job tenant_day_pipeline",
        "op provision_tenant_op",
        "config provision_tenant_op.tenant_id",
        "config landing.settle_seconds",
        "sensor landing_file_sensor",
        "schedule raw_retention_schedule",
        "resource landing",
    ):
        assert found.get(where), f"no description found for {where}"


def test_every_description_in_the_code_location_renders_as_written():
    problems = [
        f"{where}: {loss}"
        for where, text in dict.fromkeys(user_visible_descriptions())  # an op is in several jobs
        if text
        for loss in markdown_losses(text)
    ]
    assert problems == [], "put placeholders and paths in `backticks`:\n" + "\n".join(problems)
