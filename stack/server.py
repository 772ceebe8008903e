"""What every embedded server shares: one child process, stopped, killed or restarted alike."""

from __future__ import annotations

from stack.process import ManagedProcess


class ManagedServer:
    process: ManagedProcess
    # How long a graceful stop may take before SIGKILL.
    stop_timeout_s: float = 10.0

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self.process.stop(timeout if timeout is not None else self.stop_timeout_s)

    def kill(self) -> None:
        """SIGKILL the server and everything it started, like a power cut."""
        self.process.kill()

    async def restart(self, *, hard: bool = False) -> None:
        """Stop (or kill, when `hard`) and start again on the same port and data."""
        if hard:
            self.kill()
        else:
            await self.stop()
        await self.start()
