"""The design the collector replaces, for benchmarks/collector.py: insert events as they arrive.

    DATABASE_URL=... BASELINE_WRITE_KEY=... BASELINE_TENANT=... \\
        .venv/bin/python benchmarks/per_request_insert.py --port 8011

`POST /v1/events` takes the same bodies as the collector (a JSON array or NDJSON,
`Authorization: Bearer <write key>`) and inserts every event into Postgres with
SQLAlchemy 2.0, one transaction and one commit per request, before it answers
`{"accepted": n}`: the FastAPI `/collect` endpoint this platform replaces, on the
collector's own stack (Starlette under uvicorn, one worker, uvloop and httptools),
so the comparison is about the design and not the framework. `--style orm` (the
default) is how such an endpoint is usually written: one mapped object per event added
to a `Session`, committed once per request (SQLAlchemy 2.0 sends the flush's INSERTs
batched, "insertmanyvalues", not one round trip per event). `--style core` is kinder
to the old design: one Core `insert()` executemany of the request's rows, no ORM
objects. Either way the key is checked against its hash in memory, not by a query.

Not part of the package: it exists only to be measured against.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import os

import orjson
import uvicorn
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, registry
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

metadata = MetaData()
events = Table(
    "per_request_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tenant_id", Text, nullable=False),
    Column("event_id", Text),
    Column("event_type", Text),
    Column("occurred_at", DateTime(timezone=True)),
    Column("visitor_id", Text),
    Column("session_id", Text),
    Column("url", Text),
    Column("payload", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), server_default=func.now()),
)


class StoredEvent:
    """One event row, as the ORM endpoint builds it."""

    def __init__(self, **columns: object) -> None:
        for name, value in columns.items():
            setattr(self, name, value)


registry().map_imperatively(StoredEvent, events)


def sqlalchemy_url(database_url: str) -> str:
    """DATABASE_URL with the psycopg 3 driver named, as SQLAlchemy 2.0 wants it."""
    return database_url.replace("postgresql://", "postgresql+psycopg://", 1)


def parse_body(body: bytes) -> list[dict]:
    """A JSON array, one JSON object, or NDJSON: the events, or ValueError."""
    text = body.strip()
    if text.startswith(b"["):
        parsed = orjson.loads(text)
    elif b"\n" in text:
        parsed = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    else:
        parsed = [orjson.loads(text)]
    if not all(isinstance(event, dict) for event in parsed):
        raise ValueError("every event must be a JSON object")
    return parsed


def occurred_at(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def row(tenant: str, event: dict) -> dict:
    return {
        "tenant_id": tenant,
        "event_id": event.get("eventId") or event.get("event_id"),
        "event_type": event.get("eventType") or event.get("event_type"),
        "occurred_at": occurred_at(event.get("timestamp") or event.get("occurred_at")),
        "visitor_id": event.get("visitorId") or event.get("visitor_id"),
        "session_id": event.get("sessionId") or event.get("session_id"),
        "url": event.get("url"),
        "payload": event,
    }


def build_app(database_url: str, tenant: str, write_key: str, style: str) -> Starlette:
    engine = create_engine(sqlalchemy_url(database_url), pool_size=20, max_overflow=10)
    metadata.create_all(engine)
    key_hash = hashlib.sha256(write_key.encode()).digest()

    async def post_events(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = hashlib.sha256(token.encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, key_hash):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            parsed = parse_body(await request.body())
        except ValueError as err:
            return JSONResponse({"error": f"not JSON: {err}"}, status_code=400)
        rows = [row(tenant, event) for event in parsed]
        # Blocking SQLAlchemy in Starlette's thread pool, as FastAPI runs a sync endpoint.
        await run_in_threadpool(insert_rows, rows)
        return JSONResponse({"accepted": len(rows)})

    def insert_rows(rows: list[dict]) -> None:
        # One transaction per request, committed before the answer.
        if style == "core":
            with engine.begin() as conn:
                conn.execute(insert(events), rows)
            return
        with Session(engine) as session, session.begin():
            session.add_all([StoredEvent(**r) for r in rows])

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/events", post_events, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--style", choices=("orm", "core"), default="orm")
    args = parser.parse_args()
    app = build_app(
        os.environ["DATABASE_URL"],
        os.environ["BASELINE_TENANT"],
        os.environ["BASELINE_WRITE_KEY"],
        args.style,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
