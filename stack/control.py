"""`sagactl worker stop|start`: a request to the running `sagactl run`, over a Unix socket.

`run` listens on `<data dir>/supervisor.sock`. A socket rather than a signal
or a pause file: the answer comes back on it (the worker has stopped, with
what exit code, and how to run it by hand), and with no `run` listening the
request fails at once, clearly, instead of waiting for a reader that is not
there. One JSON line each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from stack.errors import StackError

logger = logging.getLogger(__name__)

SOCKET_NAME = "supervisor.sock"
_MAX_PATH_BYTES = 107  # sun_path holds 108 bytes with the terminating NUL
_REPLY_S = 90.0  # a worker's graceful stop may take its 30 s grace, then the kill

Handler = Callable[[str, str], Awaitable[str]]  # (action, app) -> message


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


@contextlib.asynccontextmanager
async def listening(path: Path, handle: Handler) -> AsyncIterator[None]:
    """Answer requests on `path` for the duration of the block."""
    if len(os.fsencode(path)) > _MAX_PATH_BYTES:
        logger.warning("%s is too long a path for a socket: sagactl worker will not work", path)
        yield
        return
    _remove(path)  # a socket left by a run that was killed; a running one holds the data dir
    server = await asyncio.start_unix_server(
        lambda reader, writer: _answer(reader, writer, handle), path=os.fspath(path)
    )
    # Whoever can connect can stop the worker: this user only, whatever the umask.
    os.chmod(path, 0o600)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
        _remove(path)


async def ask(path: Path, action: str, app: str) -> str:
    """Send one request to the `run` listening on `path`; its answer, or StackError."""
    try:
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise StackError(
            f"no `sagactl run` is listening on {path} (is `make run` running with this "
            "SAGA_DATA_DIR?)"
        ) from None
    try:
        writer.write(json.dumps({"action": action, "app": app}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), _REPLY_S)
    finally:
        writer.close()
    if not line:
        raise StackError("`sagactl run` closed the connection without an answer (stopping?)")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise StackError(str(reply.get("message")))
    return str(reply["message"])


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler
) -> None:
    try:
        request = json.loads(await reader.readline())
        reply = {"ok": True, "message": await handle(str(request["action"]), str(request["app"]))}
    except StackError as err:
        reply = {"ok": False, "message": err.summary}
    except OSError as err:  # the app could not be started again; it stays held
        reply = {"ok": False, "message": f"could not start it: {err}"}
    except (ValueError, KeyError, TypeError) as err:
        reply = {"ok": False, "message": f"bad request: {err!r}"}
    # The asker may have given up; the request itself was carried out all the same.
    with contextlib.suppress(ConnectionError):
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
    writer.close()


def _remove(path: Path) -> None:
    # Not async: one unlink in a local directory.
    path.unlink(missing_ok=True)
