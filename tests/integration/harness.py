"""Running a service shell in-process against the real redis-server fixture."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from shared.runtime import Runtime, Service


@asynccontextmanager
async def running(svc: Service, redis: Redis) -> AsyncIterator[Runtime]:
    """Start ``svc``, run it while the block runs, then stop it and re-raise anything its loop raised."""
    rt = Runtime(svc.name, svc.settings, redis)  # type: ignore[attr-defined]
    await svc.start(rt)
    task = asyncio.create_task(svc.run(rt))
    try:
        yield rt
    finally:
        rt.stopping.set()
        await asyncio.wait_for(task, 5)
        assert task.exception() is None
