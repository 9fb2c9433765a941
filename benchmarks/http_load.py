"""A cheap HTTP/1.1 load generator for benchmarks/collector.py, run as a process of its own.

    .venv/bin/python benchmarks/http_load.py SPEC.json

SPEC is a JSON object: `host`, `port`, `path`, `token` (sent as `Authorization:
Bearer`), `bodies` (a file with one pre-serialized JSON body per line), `batch`
(events per body), `connections`, `seconds`, `warmup_seconds`, and either
`"mode": "closed"` (every connection sends its next request as soon as the previous
answer arrives: the most the server accepts) or `"mode": "open"` with `rate`
(requests per second at a constant arrival rate, whatever the answers do).

It shares the machine's cores with the server it measures, so it does as little as
possible per request: requests are built once as bytes, sent over keep-alive
connections by a bare `asyncio.Protocol` (uvloop when installed), and an answer is
parsed only for its status line, Content-Length and `"accepted": n`. Open-loop
latency is measured from each request's *scheduled* send time, so a server that
stalls cannot hide its queue by slowing the sender (coordinated omission).

Prints one JSON line: requests and events acknowledged (2xx with `accepted`),
statuses, the rate over the measured window, latencies (open loop), and this
process's own CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path

ACCEPTED = re.compile(rb'"accepted"\s*:\s*(\d+)')
# A request not answered within this long counts as a timeout, so no run hangs.
ANSWER_TIMEOUT_SECONDS = 30.0


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection: one request in flight, its answer parsed from the bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: asyncio.Future | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the server closed the connection")
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.answer is None:
            return
        head = bytes(self.buffer[:head_end]).lower()
        length_at = head.find(b"content-length:")
        if length_at < 0:
            raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
        line_end = head.find(b"\r\n", length_at)
        length = int(head[length_at + 15 : line_end if line_end >= 0 else len(head)])
        end = head_end + 4 + length
        if len(self.buffer) < end:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[head_end + 4 : end])
        del self.buffer[:end]
        if not self.answer.done():
            self.answer.set_result((status, body))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.answer, ANSWER_TIMEOUT_SECONDS)


def build_requests(spec: dict) -> list[bytes]:
    """Each body as a complete HTTP request, built once."""
    head = (
        f"POST {spec['path']} HTTP/1.1\r\nHost: {spec['host']}:{spec['port']}\r\n"
        f"Authorization: Bearer {spec['token']}\r\nContent-Type: application/json\r\n"
    ).encode()
    requests = []
    for line in Path(spec["bodies"]).read_bytes().splitlines():
        if line.strip():
            requests.append(head + f"Content-Length: {len(line)}\r\n\r\n".encode() + line)
    if not requests:
        raise SystemExit(f"no bodies in {spec['bodies']}")
    return requests


class Tally:
    """What the server acknowledged, and when (for the measured window)."""

    def __init__(self, window_start: float, window_end: float) -> None:
        self.window = (window_start, window_end)
        self.statuses: dict[str, int] = {}
        self.acked_events = 0
        self.acked_requests = 0
        self.window_events = 0
        self.errors = 0
        self.latencies_ms: list[float] = []

    def record(self, status: int, body: bytes, done: float, latency: float | None) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if not 200 <= status < 300:
            return
        match = ACCEPTED.search(body)
        accepted = int(match.group(1)) if match else 0
        self.acked_events += accepted
        self.acked_requests += 1
        if self.window[0] <= done < self.window[1]:
            self.window_events += accepted
            if latency is not None:
                self.latencies_ms.append(latency * 1000)


async def connect(spec: dict, count: int) -> list[HttpConnection]:
    loop = asyncio.get_running_loop()
    made = []
    for _ in range(count):
        _, protocol = await loop.create_connection(HttpConnection, spec["host"], spec["port"])
        made.append(protocol)
    return made


async def closed_loop(spec: dict, requests: list[bytes], tally: Tally, stop: float) -> None:
    """Every connection sends again as soon as it is answered, until `stop`."""

    async def client(number: int, connection: HttpConnection) -> None:
        index = number
        while time.perf_counter() < stop:
            try:
                status, body = await connection.send(requests[index % len(requests)])
            except (OSError, asyncio.TimeoutError):
                tally.errors += 1
                return
            tally.record(status, body, time.perf_counter(), None)
            index += spec["connections"]

    connections = await connect(spec, spec["connections"])
    await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))


async def open_loop(spec: dict, requests: list[bytes], tally: Tally, stop: float) -> None:
    """Requests scheduled at a constant rate; each latency counts from its scheduled time."""
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    interval = 1.0 / spec["rate"]
    sent = 0

    async def client(connection: HttpConnection) -> None:
        nonlocal sent
        while (scheduled := await queue.get()) is not None:
            number = sent
            sent += 1
            try:
                status, body = await connection.send(requests[number % len(requests)])
            except (OSError, asyncio.TimeoutError):
                tally.errors += 1
                return
            done = time.perf_counter()
            tally.record(status, body, done, done - scheduled)

    connections = await connect(spec, spec["connections"])
    clients = [asyncio.ensure_future(client(c)) for c in connections]
    start = time.perf_counter()
    due = 0
    while (now := time.perf_counter()) < stop:
        # Everything due by now is queued at once: a late wake-up never thins the rate.
        while start + due * interval <= now:
            queue.put_nowait(start + due * interval)
            due += 1
        await asyncio.sleep(min(interval, 0.001))
    for _ in clients:
        queue.put_nowait(None)
    await asyncio.gather(*clients)
    tally.statuses["scheduled"] = due


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None when nothing was measured."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return round(ordered[int(rank) - 1], 2)


def run(spec: dict) -> dict:
    requests = build_requests(spec)
    began = time.perf_counter()
    window_start = began + spec.get("warmup_seconds", 0)
    stop = window_start + spec["seconds"]
    tally = Tally(window_start, stop)
    cpu_before = os.times()
    mode = closed_loop if spec["mode"] == "closed" else open_loop
    try:
        import uvloop

        uvloop.run(mode(spec, requests, tally, stop))
    except ImportError:
        asyncio.run(mode(spec, requests, tally, stop))
    cpu_after = os.times()
    wall = time.perf_counter() - began
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {
        "mode": spec["mode"],
        "batch": spec["batch"],
        "connections": spec["connections"],
        "rate_requested": spec.get("rate"),
        "seconds": spec["seconds"],
        "acked_requests": tally.acked_requests,
        "acked_events": tally.acked_events,
        "events_per_s": round(tally.window_events / spec["seconds"], 1),
        "statuses": tally.statuses,
        "errors": tally.errors,
        "p50_ms": percentile(tally.latencies_ms, 0.50),
        "p99_ms": percentile(tally.latencies_ms, 0.99),
        "max_ms": round(max(tally.latencies_ms), 2) if tally.latencies_ms else None,
        "latency_samples": len(tally.latencies_ms),
        "loadgen_cpu_s": round(cpu, 2),
        "loadgen_cpu_share": round(cpu / wall, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))), flush=True)
