"""What a running sandbox app owns besides its `SandboxState`: background tasks, one client
session for summary callbacks, and the signal that it is stopping.

Background tasks (summary callbacks) are tracked and cancelled when the app shuts down, so none
is left pending ("Task was destroyed but it is pending"); "timeout" faults that are still
hanging wake up at shutdown instead of holding the server's graceful stop for `timeout_s`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from gateway.sandbox.state import SandboxState

CALLBACK_TIMEOUT_S = 30.0


@dataclass
class Runtime:
    """The sandbox app's live resources. `session` exists between startup and cleanup."""

    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    session: aiohttp.ClientSession | None = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background until it ends or the app stops; once the app is
        stopping, `coro` is closed without running."""
        if self.stopping.is_set():
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cancel_tasks(self) -> None:
        """Cancel every background task and wait until they have all ended."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def client(self) -> aiohttp.ClientSession:
        """The session for outgoing calls. Raises RuntimeError outside the app's lifetime."""
        if self.session is None or self.session.closed:
            raise RuntimeError("the sandbox app is not running")
        return self.session


STATE = web.AppKey("sandbox_state", SandboxState)
RUNTIME = web.AppKey("sandbox_runtime", Runtime)


async def runtime_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the client session lives as long as the app."""
    runtime = app[RUNTIME]
    timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S)
    runtime.session = aiohttp.ClientSession(timeout=timeout)
    yield
    await runtime.cancel_tasks()
    await runtime.session.close()


async def on_shutdown(app: web.Application) -> None:
    """Runs before the server waits for in-flight handlers: wake hanging faults, stop tasks."""
    runtime = app[RUNTIME]
    runtime.stopping.set()
    await runtime.cancel_tasks()
