"""A worker process converting blocks of landing file lines: `python -m` this module.

Requests and replies are pickles, each preceded by its length (8 bytes, little
endian), on stdin and stdout: a request is `(FileJob, CSV header or None,
first line number, block of whole lines)`, a reply `("ok", Converted)` or
`("error", traceback text)`. The worker exits at the end of its input. It is
started by `WorkerPool` (load.py) rather than multiprocessing, whose spawned
children would import the parent's `__main__` (Dagster's whole CLI, in a run).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import traceback
from pathlib import Path
from typing import BinaryIO

from analytics_platform.ingest.convert import Converted, FileJob, convert_block

LENGTH = struct.Struct("<Q")


def write_message(stream: BinaryIO, message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_message(stream: BinaryIO) -> object | None:
    """The next message, or None at the end of the stream."""
    prefix = stream.read(LENGTH.size)
    if len(prefix) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack(prefix)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("message cut short")
    return pickle.loads(payload)


class WorkerPool:
    """`processes` converter workers, started when first sent a block; each has at most
    one block in hand."""

    def __init__(self, processes: int):
        self.processes = processes
        self._workers: list[subprocess.Popen | None] = [None] * processes

    def send(self, worker: int, job: FileJob, header: list[str] | None, first: int, block: bytes):
        proc = self._workers[worker]
        if proc is None:
            proc = self._workers[worker] = subprocess.Popen(
                _command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_environment()
            )
        write_message(proc.stdin, (job, header, first, block))

    def receive(self, worker: int) -> Converted:
        proc = self._workers[worker]
        reply = read_message(proc.stdout)
        if reply is None:
            raise RuntimeError(f"landing file worker exited with code {proc.wait()}")
        status, value = reply
        if status != "ok":
            raise RuntimeError(f"landing file worker failed:\n{value}")
        return value

    def _stop(self, worker: int, timeout: float = 10) -> None:
        proc, self._workers[worker] = self._workers[worker], None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the worker exits at the end of its input
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # still busy with a block nobody will read
            proc.wait()
        proc.stdout.close()

    def close(self) -> None:
        for worker in range(self.processes):
            self._stop(worker, timeout=1)


def _command() -> list[str]:
    # -P (3.11+): the worker's sys.path does not start with the current directory.
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *safe_path, "-m", __name__]


def _environment() -> dict[str, str]:
    """The run's environment, with this very package first on the worker's path."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, path]))}


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    while (request := read_message(requests)) is not None:
        try:
            reply = ("ok", convert_block(*request))
        except BaseException:
            reply = ("error", traceback.format_exc())
        write_message(replies, reply)


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
