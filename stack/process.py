"""A child process we own: its own session, a log file, and shutdown on our terms.

Children run in a new session so a Ctrl-C in the terminal reaches only the
supervisor, which then stops them in dependency order. On Linux they also get
a parent-death signal, so a SIGKILLed supervisor or test run leaves no server
holding its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import pwd
import shlex
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from io import BufferedWriter
from pathlib import Path
from typing import Any

from stack.errors import StackError

logger = logging.getLogger(__name__)

_POLL_S = 0.1
_PR_SET_PDEATHSIG = 1
_TAIL_BYTES = 16_384

ReadinessCheck = Callable[[], Awaitable[object]]


class ReadinessError(StackError):
    """The process exited or missed its deadline before its readiness check passed."""


class ManagedProcess:
    """One child process; `start()` it again after it stopped to restart it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_dir: Path | None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        parent_death_signal: signal.Signals | None = signal.SIGTERM,
    ) -> None:
        """`log_dir=None` lets the child write to our stdout/stderr; `user` needs root."""
        self.name = name
        self.argv = [os.fspath(arg) for arg in argv]
        self.log_path = None if log_dir is None else log_dir / f"{name}.log"
        self._cwd = cwd
        self._env = None if env is None else dict(env)
        self._user = user
        self._stop_signal = stop_signal
        self._parent_death_signal = parent_death_signal
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); negative -N when killed by signal N."""
        if self._proc is None or not self._exited():
            return None
        return self._proc.returncode

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._exited()

    def start(self) -> None:
        """Spawn the child. Call from the event loop's thread: on Linux the
        parent-death signal fires when the *thread* that spawned the child exits."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        log = self._open_log()
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self._cwd,
                env=self._env,
                start_new_session=True,
                preexec_fn=_parent_death_hook(self._parent_death_signal),
                **_user_kwargs(self._user),
            )
        finally:
            if log is not None:
                log.close()  # the child holds its own descriptor
        logger.info("started %s (pid %s)", self.name, self._proc.pid)

    async def wait(self) -> int:
        """Wait until the child exits; returns its exit code."""
        # Polling, not an Event: a child's exit has no awaitable source that works on
        # every loop and platform without a child watcher, and 10 polls/s cost nothing.
        while not self._exited():  # noqa: ASYNC110
            await asyncio.sleep(_POLL_S)
        return self._returncode()

    # `timeout` is the grace period before SIGKILL, not a deadline for the call.
    async def stop(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        sig: signal.Signals | None = None,
    ) -> int | None:
        """Send the stop signal, wait up to `timeout` seconds, then SIGKILL.

        Returns the exit code, or None if it was never started."""
        if self._proc is None:
            return None
        if self._exited():
            return self._returncode()
        sig = sig or self._stop_signal
        logger.info("stopping %s (pid %s) with %s", self.name, self._proc.pid, sig.name)
        # Not Popen.send_signal: it would reap the child and free the group id early.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, sig)
        try:
            return await asyncio.wait_for(self.wait(), timeout)
        except TimeoutError:
            logger.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
            return self.kill()
        except asyncio.CancelledError:
            # Whoever cancelled us is not going to stop it: don't leave it running.
            self.kill()
            raise

    def kill(self) -> int | None:
        """SIGKILL the child and everything in its process group (crash simulation)."""
        if self._proc is None:
            return None
        if not self._exited():
            self._kill_group()
            self._proc.wait(timeout=10)
        return self._returncode()

    async def wait_ready(self, check: ReadinessCheck, deadline_s: float) -> None:
        """Poll `check` until it returns anything but False without raising.

        Fails fast with the log tail when the child exits first, or when
        `deadline_s` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        exited = asyncio.ensure_future(self.wait())
        attempt: asyncio.Future[object] | None = None
        last_error: BaseException | None = None
        try:
            while (remaining := deadline - loop.time()) > 0:
                attempt = asyncio.ensure_future(check())
                await asyncio.wait(
                    {attempt, exited}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if attempt.done() and not attempt.cancelled():
                    last_error = attempt.exception()
                    if last_error is None and attempt.result() is not False and self.alive:
                        return
                if exited.done():
                    raise self._not_ready(
                        f"exited with code {exited.result()} before it was ready", last_error
                    )
                await _cancel(attempt)
                await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
            raise self._not_ready(f"was not ready within {deadline_s:.0f}s", last_error)
        finally:
            await _cancel(attempt)
            await _cancel(exited)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log file ('' when logging to the terminal)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES))
            text = log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _open_log(self) -> BufferedWriter | None:
        if self.log_path is None:
            return None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"--- {stamp} {shlex.join(self.argv)}\n".encode())
        log.flush()
        return log

    def _exited(self) -> bool:
        """Has the child exited? Reaps it, sweeping its process group first."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        if sys.platform == "linux":
            # WNOWAIT leaves the child a zombie, so its pid (= our group id) cannot
            # be recycled while we SIGKILL whatever it left behind in the group.
            try:
                status = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return proc.poll() is not None  # reaped elsewhere; Popen records it
            if status is None:
                return False
            self._kill_group()
        return proc.poll() is not None

    def _kill_group(self) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)

    def _returncode(self) -> int:
        assert self._proc is not None and self._proc.returncode is not None
        return self._proc.returncode

    def _not_ready(self, reason: str, last_error: BaseException | None) -> ReadinessError:
        tail = self.log_tail()
        # The child's last words, not our own "--- <time> <argv>" start marker.
        said = [line.strip() for line in tail.splitlines() if not line.startswith("--- ")]
        where = f" (log: {self.log_path})" if self.log_path else ""
        summary = f"{self.name} {reason}{where}"
        if said and said[-1]:
            summary += f": {said[-1][:200]}"
        details = [summary]
        if last_error is not None:
            details.append(f"last readiness check error: {last_error!r}")
        if tail:
            details.append(f"--- last lines of {self.log_path} ---\n{tail}")
        return ReadinessError("\n".join(details))


async def _cancel(task: asyncio.Future[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _user_kwargs(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    # Drop root's supplementary groups too, not just uid and gid.
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@functools.cache
def _prctl() -> Any:
    # Resolved in the parent: the forked child must not load libraries.
    return ctypes.CDLL(None, use_errno=True).prctl


def _parent_death_hook(sig: signal.Signals | None) -> Callable[[], None] | None:
    if sig is None or sys.platform != "linux":
        return None
    prctl, parent, signum = _prctl(), os.getpid(), int(sig)

    def hook() -> None:
        # Runs in the child after setsid/setuid (which would clear the setting).
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signum)

    return hook
