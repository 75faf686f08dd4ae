"""The transfer log's appends on SQLite, in a process of their own (`GATEWAY_LOG_WRITER`:
`process`, the default; `thread` keeps them on the store's writing thread).

Why a process: an append is Python work between SQLite calls (leaf and subject rows, Merkle
nodes, zlib chunks). On the store's thread it holds the interpreter lock in short bursts while
the event loop wants it, and every burst is a hand-over of the lock between two busy threads.
Measured in the fraud-check benchmark: a check cost about 960 µs of the service's CPU with its
appends, about 630 µs with none, though the appends' own work is about 110 µs a check (group
commits of about four checks at some 450 µs each). The rest was the two threads taking the
lock from each other. In a child process the append runs on the other core with a lock of
its own; the event loop only pickles the records and writes them to a socket.

Only appends of up to CHILD_APPEND_MAX records go to the child: the frequent small ones (a
fraud check's provision and receipt, grouped with whatever other checks are queued) whose
cost is mostly that hand-over. An upload's chunk of 10,000 entries is a few large appends a
second, whose work is mostly SQLite's and zlib's without the lock; measured, moving them to
the child did not speed an upload (14,267 records/s against 13,443), and pickling megabytes
across took memory: the service and its child peaked at 407 MB in the upload benchmark,
over its 300 MB target. Both writers extend one tree: each append reads the stored size
inside its transaction and reloads the frontier when another writer moved it, as between
two instances on one file, and the ledger's single appender never runs two at once.

Protocol, over a socket pair the child inherits: frames of a 4-byte big-endian length and a
pickle. Parent to child: `(records, outbox)`, what `SqliteLedger.append` takes. Child to
parent, in request order: `("ok", first index)`, `("value", message)` (the append's
ValueError: a malformed record) or `("storage", message)`. Pickle is safe here: both ends
are this program, and no other process holds the socket.

Failure semantics:
- The child replies only after its transaction is durable (synchronous=FULL, as on the
  thread), so an `ok` means what a returned append means on the thread.
- When the child dies, every append awaiting a reply fails with StorageError. Such an append
  may or may not have been committed: the same ambiguity as a database connection lost after
  COMMIT was sent, which the PostgreSQL store has too. A job's resume point is written in the
  append's own transaction, so a job resumed afterwards neither skips nor repeats a record.
  The next append starts a new child.
- The child dies with the service: on Linux the kernel kills it when its parent dies, even by
  SIGKILL (`PR_SET_PDEATHSIG`), so an append under way is rolled back, as it is on the thread
  when the process dies. An orphan finishing its append could commit it after a restarted
  service had read the job's resume point, and queue that chunk twice. Elsewhere it exits
  when its socket closes. It ignores SIGINT and SIGTERM, which a terminal or a service
  manager sends to the whole process group: the parent drains its appends first, then closes
  the socket, and the child exits.
- Appends and the store's other writes now come from two connections. SQLite serializes them
  with its write lock; one waits for the other (busy timeout, as between two instances on one
  file), and the ledger reloads its frontier when the size moved (`SqliteLedger.append`).

Checkpoints: SQLite copies the WAL into the database inside whichever commit finds the WAL
past `wal_autocheckpoint` (64 MiB here, set for bulk imports), and that commit waits for the
copy: tens of milliseconds for the fraud checks of that group and every check queued behind
it. The child's connection never checkpoints (`wal_autocheckpoint = 0`); a thread of its own
runs a PASSIVE checkpoint every CHECKPOINT_EVERY_S, which waits for no reader or writer and
takes no lock an append needs, so the WAL stays small too (under appends that never pause,
a WAL past 64 MiB gets a RESTART instead: `checkpoint`). Measured with the fraud benchmark
at 150 checks/s, five A/B pairs: added p99 6.0-8.6 ms against 9.3-16.0 ms without it, added
p50 3.0-3.6 ms against 4.2-5.5 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import pickle
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

import structlog

from gateway.delivery.outbox import SideWrite
from gateway.errors import StorageError
from gateway.ledger.store import LeafRecord
from gateway.logconfig import configure_logging_as_parent
from gateway.storage.sqlite_connect import WAL_CHECKPOINT_PAGES

__all__ = ["CHILD_APPEND_MAX", "LogWriter", "serve_appends"]

CHILD_APPEND_MAX: Final = 1000
"""The most records of an append the store sends to the child; a larger one (an upload's
chunk, its delivery outcomes) stays on the store's writing thread. See the module's doc."""

log = structlog.get_logger("gateway.storage")

_LENGTH: Final = struct.Struct(">I")
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
_SLICE: Final = 256 * 1024
# Small appends touch the right edge of each table; a merge of staged subject rows reads
# more, from the OS's cache.
_CHILD_CACHE_KIB: Final = 16 * 1024
# How often the child's checkpointer copies the WAL into the database (module doc).
CHECKPOINT_EVERY_S: Final = 0.5
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])


class LogWriter:
    """The parent's end: appends go to the child in order and are answered in order. Use it
    on one event loop. The first append starts the child (it opens `path`, which the store
    has migrated): a store that never makes a small append (a command-line tool, an
    upload-only service) never runs one, and a fraud check's first append waits for the
    child's start, about 0.3 s, once."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None: for tests and diagnostics."""
        return None if self._child is None else self._child.process.pid

    async def append(self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite]) -> int:
        """What `SqliteLedger.append` returns, from the child: the first index, once durable.
        Raises ValueError for a malformed record; StorageError when the database failed, or
        when the child died before answering (the append may have been committed)."""
        if self._closed:
            raise StorageError("the SQLite store is closed")
        data = pickle.dumps((records, outbox), protocol=pickle.HIGHEST_PROTOCOL)
        child = await self._started()
        return await child.send(data)

    async def close(self) -> None:
        """Wait for the appends under way, then let the child finish (it exits when its socket
        closes)."""
        self._closed = True
        async with self._starting:
            if self._child is not None:
                await self._child.close()

    async def _started(self) -> _Child:
        """The running child; a new one when none runs. Raises StorageError."""
        if self._child is not None and not self._child.lost:
            return self._child
        async with self._starting:
            if self._child is not None and not self._child.lost:
                return self._child
            if self._closed:
                raise StorageError("the SQLite store is closed")
            self._child = await _Child.start(self._path)
            return self._child


class _Child:
    """One child process, its stream and the appends it has not answered yet."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        stream: asyncio.StreamWriter,
    ) -> None:
        self.process, self._stream = process, stream
        self._pending: deque[asyncio.Future[int]] = deque()
        self.status: int | None = None  # its exit status, once it exited
        self.lost = False  # its socket closed: it exits, and takes no more appends
        self._closing = False
        self._replies = asyncio.create_task(self._read_replies(reader), name="log-writer")

    @classmethod
    async def start(cls, path: Path) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, str(path), str(theirs.fileno()), str(os.getpid()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env=_child_env(),
            )  # fmt: skip
            reader, stream = await asyncio.open_connection(sock=ours)
        except OSError as exc:
            ours.close()
            raise StorageError(f"cannot start the log writer: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
        return cls(process, reader, stream)

    async def send(self, data: bytes) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        if self.status is not None:  # it exited between our start and now
            self._fail_pending()
        else:
            self._stream.write(_LENGTH.pack(len(data)))
            view = memoryview(data)
            with contextlib.suppress(ConnectionError):  # it died: _read_replies fails `future`
                # In slices: the transport copies whatever the socket does not take at once.
                for start in range(0, len(view), _SLICE):
                    self._stream.write(view[start : start + _SLICE])
                    await self._stream.drain()
        return await future

    async def close(self) -> None:
        self._closing = True
        if self._pending:
            await asyncio.wait(list(self._pending))
        self._stream.close()
        await self._replies

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readexactly(_LENGTH.size)
                body = await reader.readexactly(_LENGTH.unpack(head)[0])
                reply = pickle.loads(body)  # noqa: S301 - our own child, on a private socket
                _settle(self._pending.popleft(), reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child closed its end: it exits
        self.lost = True
        self._stream.close()
        status = await self.process.wait()
        if self._pending or not self._closing:
            log.error("log_writer_exited", status=status, appends_under_way=len(self._pending))
        self.status = status
        self._fail_pending()

    def _fail_pending(self) -> None:
        error = StorageError(
            f"the log writer process exited (status {self.status}) before answering: the "
            "append may or may not have been committed"
        )
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(error)


def _settle(future: asyncio.Future[int], reply: tuple[Any, ...]) -> None:
    if future.done():  # its caller was cancelled; the append was made all the same
        return
    kind, value = reply
    if kind == "ok":
        future.set_result(value)
    elif kind == "value":
        future.set_exception(ValueError(value))
    else:
        future.set_exception(StorageError(value))


def _child_env() -> dict[str, str]:
    """The parent's environment, with this copy of the package first on the path: the child
    runs the parent's code, however the parent was started."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


# the child


def serve_appends(path: Path, sock: socket.socket) -> None:
    """Answer appends read from `sock` until it closes. The child's whole life."""
    from gateway.storage.sqlite_connect import connect
    from gateway.storage.sqlite_ledger import SqliteLedger

    conn = connect(path)  # the parent migrated it: the migrations find nothing to do
    conn.execute(f"PRAGMA cache_size = -{_CHILD_CACHE_KIB}")
    # The child's appends never checkpoint the WAL: its own thread does (module doc).
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    threading.Thread(target=_checkpoints, args=(path,), name="checkpointer", daemon=True).start()
    ledger = SqliteLedger()
    incoming, outgoing = sock.makefile("rb"), sock.makefile("wb")
    try:
        while (request := _read_frame(incoming)) is not None:
            records, outbox = pickle.loads(request)  # noqa: S301 - our parent's, see above
            reply: tuple[str, Any]
            try:
                reply = ("ok", ledger.append(conn, records, outbox))
            except ValueError as exc:
                reply = ("value", str(exc))
            except sqlite3.Error as exc:
                reply = ("storage", f"SQLite: {exc}")
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            outgoing.write(_LENGTH.pack(len(data)) + data)
            outgoing.flush()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone: nobody is waiting for the answer
    finally:
        conn.close()


def _checkpoints(path: Path) -> None:
    """`checkpoint` every CHECKPOINT_EVERY_S, on a connection of this thread's own, for the
    child's life (a daemon thread). A checkpoint cut off by the child's death is safe: the WAL
    is kept until one completes."""
    # A RESTART waits at most this long for the append under way; else the next tick tries.
    conn = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    conn.execute("PRAGMA synchronous = FULL")
    while True:
        time.sleep(CHECKPOINT_EVERY_S)
        checkpoint(conn)


def checkpoint(conn: sqlite3.Connection, max_frames: int = WAL_CHECKPOINT_PAGES) -> str:
    """Copy what the WAL holds into the database without waiting for a reader or a writer
    (PASSIVE). Under appends that never pause, a PASSIVE checkpoint may never catch up, and
    SQLite starts the WAL over only once one has; past `max_frames` (the 64 MiB at which
    SQLite itself would checkpoint) it is a RESTART, which waits for the append under way,
    holds the next one back while it copies, and lets the WAL start over: what every append
    used to risk, now only when the WAL has outgrown the passive copies. Returns the mode
    run; a failure (the database busy past the timeout) is left to the next tick."""
    try:
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames <= max_frames:
            return "passive"
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        return "restart"
    except sqlite3.Error:
        return "failed"


def _read_frame(stream: BinaryIO) -> bytes | None:
    """One frame's body; None at the end of the stream (also inside a frame: the parent died
    while sending it, and nobody waits for its answer)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); exit now if it
    already has (it died before the request took effect)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        sys.exit(0)


def main(argv: Sequence[str]) -> int:
    path, fd, parent = Path(argv[0]), int(argv[1]), int(argv[2])
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent drains, then closes the socket
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout = sys.stderr  # nothing but frames may reach the parent, and they go by socket
    # A failure here is a log event on the service's stderr like any other.
    configure_logging_as_parent(os.environ)
    try:
        serve_appends(path, socket.socket(fileno=fd))
    except Exception:
        # The parent fails the appends under way and logs log_writer_exited with this status.
        log.exception("log_writer_failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
