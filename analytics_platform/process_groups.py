"""Dagster's own processes started from our code, each in a process group of its own.

A webserver starts a code server, which starts run workers, which start dbt: none of
them is a session leader. Started in a new session, the whole tree shares the first
process's group id, so stopping that group by its id ends everything it started and
nothing else (never a search by process name).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process_group(
    args: Sequence[str], *, log: Path, env: Mapping[str, str], cwd: Path
) -> subprocess.Popen:
    """Start `args` as the leader of a new process group, its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the process's group, SIGKILL it after `grace` s; then kill what outlived it."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    # Children that outlived their leader (a run worker, dbt) still carry its group id.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def log_tail(log: Path, lines: int = 30) -> str:
    """The last `lines` lines of a process's log, for an error a person reads."""
    if not log.exists():
        return f"(no log at {log})"
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"last {len(text)} lines of {log}:\n" + "\n".join(text)
