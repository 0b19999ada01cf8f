"""The load generator of bench/serve_load.py: closed-loop clients and open-loop arrivals over
httpx's asyncio client, and what each level measured (answers, latency, statuses, CPU)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

WARMUP_S = 2.0
REQUEST_TIMEOUT_S = 60.0
# Open loop: connections the generator may hold, in pools of POOL_CONNECTIONS; requests beyond wait
# for one, their wait counted from the scheduled send. Far above what a server works on at once.
OPEN_LOOP_CONNECTIONS = 512
# httpcore's pool looks at every connection it holds for every request it places (quadratic in the
# pool): one pool of 128 busy connections took 80-98 % of a core here and capped the load at ~70
# requests/s, so clients hold small pools (a closed-loop client one connection of its own).
POOL_CONNECTIONS = 8
ERROR = "error"  # a request that got no HTTP answer: refused, reset, timed out


@dataclass(frozen=True)
class Sample:
    done: float  # perf_counter() when the answer (or the error) came
    latency_s: float
    status: int | str  # the HTTP status, or ERROR


async def send(client: httpx.AsyncClient, path: str, body: dict) -> tuple[int | str, float]:
    """(status or ERROR, seconds a 503 asks to wait before the next request)."""
    try:
        answer = await client.post(path, json=body)
    except httpx.HTTPError:
        return ERROR, 0.0
    retry_after = answer.headers.get("retry-after", "") if answer.status_code == 503 else ""
    return answer.status_code, float(retry_after) if retry_after.isdigit() else 0.0


def http_client(url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S)


async def closed_client(client: httpx.AsyncClient, next_request, end: float, samples: list[Sample],
                        jitter: random.Random) -> None:
    """Requests one after another; after a 503, at least its Retry-After, jittered up to twice it,
    as a well-behaved client waits (turned-away clients then do not all return in one wave)."""
    while time.perf_counter() < end:
        sent = time.perf_counter()
        status, retry_after = await send(client, *next_request())
        done = time.perf_counter()
        samples.append(Sample(done, done - sent, status))
        if retry_after:
            await asyncio.sleep(min(retry_after * (1 + jitter.random()), end - done))


async def closed_level(url: str, next_request, clients: int, seconds: float, pids: dict[str, int]) -> dict:
    """`clients` clients in a loop, each on a connection of its own; the answers that came in the
    measured window. Each client's last request is awaited after the window, so the next level
    starts on an idle server."""
    samples: list[Sample] = []
    async with contextlib.AsyncExitStack() as stack:
        pools = [await stack.enter_async_context(http_client(url, 1)) for _ in range(clients)]
        start = time.perf_counter() + WARMUP_S  # once the clients are made (256 take seconds)
        end = start + seconds
        cpu = asyncio.create_task(cpu_percent(pids, start, end))
        jitter = random.Random(0)
        await asyncio.gather(*(closed_client(pool, next_request, end, samples, jitter) for pool in pools))
    return {"clients": clients, **summary([s for s in samples if start <= s.done <= end], seconds), **await cpu}


async def timed_send(client: httpx.AsyncClient, request: tuple[str, dict], scheduled: float) -> Sample:
    status, _ = await send(client, *request)
    done = time.perf_counter()
    return Sample(done, done - scheduled, status)


async def open_level(url: str, next_request, rate: float, seconds: float, pids: dict[str, int]) -> dict:
    """Poisson arrivals at `rate` per second; of the requests scheduled in the measured window, the
    answers that came before its end, and how many had none yet."""
    arrivals = random.Random(0)
    async with contextlib.AsyncExitStack() as stack:
        pools = [await stack.enter_async_context(http_client(url, POOL_CONNECTIONS))
                 for _ in range(OPEN_LOOP_CONNECTIONS // POOL_CONNECTIONS)]
        now = time.perf_counter()
        start = now + WARMUP_S
        end = start + seconds
        cpu = asyncio.create_task(cpu_percent(pids, start, end))
        sends, lags, at = [], [], now
        while (at := at + arrivals.expovariate(rate)) < end:
            await asyncio.sleep(at - time.perf_counter())
            lags.append(time.perf_counter() - at)
            pool = pools[len(sends) % len(pools)]
            sends.append((at, asyncio.create_task(timed_send(pool, next_request(), at))))
        await asyncio.sleep(end - time.perf_counter())
        measured = [task for scheduled, task in sends if scheduled >= start]
        answered = [task.result() for task in measured if task.done()]
        await drain([task for _, task in sends])
    return {"rate": rate, **summary(answered, seconds), "sent_per_s": round(len(measured) / seconds, 2),
            "unanswered": len(measured) - len(answered),
            "send_lag_p99_ms": round(float(np.percentile(lags, 99)) * 1000, 2) if lags else None, **await cpu}


async def drain(tasks: list[asyncio.Task]) -> None:
    """Let the requests still out finish (not counted), so the next level starts on an idle server."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def cpu_percent(pids: dict[str, int], start: float, end: float) -> dict:
    """CPU of this load generator ("client") and of each process of `pids` during [start, end], in
    percent of one core."""
    await asyncio.sleep(start - time.perf_counter())
    client, before = time.process_time(), {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(end - time.perf_counter())
    wall = end - start
    return {"client_cpu_percent": round(100 * (time.process_time() - client) / wall, 1),
            **{f"{name}_cpu_percent": round(100 * (cpu_seconds(pid) - before[name]) / wall, 1)
               for name, pid in pids.items()}}


def summary(samples: list[Sample], seconds: float) -> dict:
    ok_ms = [s.latency_s * 1000 for s in samples if s.status == 200]
    statuses = Counter(str(s.status) for s in samples if s.status != ERROR)
    return {"seconds": seconds, "requests_per_s": round(len(ok_ms) / seconds, 2),
            "p50_ms": round(float(np.percentile(ok_ms, 50)), 1) if ok_ms else None,
            "p99_ms": round(float(np.percentile(ok_ms, 99)), 1) if ok_ms else None,
            "status": dict(sorted(statuses.items())), "errors": sum(s.status == ERROR for s in samples)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
