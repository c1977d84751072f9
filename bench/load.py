"""HTTP load generation for the benchmarks: ``wrk`` when it is on PATH, else a Python generator
in a separate process. Either way the load runs outside the server's process, and the
result says which tool produced it.

A load is a list of pre-formatted HTTP/1.1 requests (written to a file), replayed in order
(``cycle``) or at random (``random``) over keep-alive connections for a fixed time. Every
``@@@@@@@@@@@@`` in a request is replaced by a 12-hex-digit number unique to that request, so
requests can carry fresh ids (audit event ids) without a file of millions of requests.

    .venv/bin/python bench/load.py --port 8000 --file reqs.bin --seconds 5   # the Python generator

wrk: ``apt-get install wrk`` (Debian/Ubuntu) or ``brew install wrk``. It is C, event-driven, and
one thread of it generates far more requests per second than any path here serves, so it
takes little of the CPU the server needs; the Python generator needs several times more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MARK = b"@@@@@@@@@@@@"
WRK_HINT = "install wrk for lighter load generation: apt-get install -y wrk (Debian/Ubuntu), brew install wrk"


@dataclass
class LoadResult:
    tool: str  # "wrk" or "python"
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int
    connections: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def brief(self) -> str:
        return (f"{self.rps:,.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
                f"{self.requests} requests, {self.errors} errors, {self.connections} conns [{self.tool}]")


def tool() -> str:
    """Which generator runs: ``wrk`` unless absent or ``BENCH_LOADGEN=python``."""
    if os.environ.get("BENCH_LOADGEN") == "python" or shutil.which("wrk") is None:
        return "python"
    return "wrk"


def format_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if body or method in ("POST", "PUT", "PATCH"):
        if not any(k.lower() == "content-type" for k in headers):
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def write_requests(requests: list[bytes], path: Path) -> None:
    with open(path, "wb") as f:
        for r in requests:
            f.write(b"%d\n" % len(r))
            f.write(r)


def read_requests(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        n = int(data[pos:nl])
        out.append(data[nl + 1 : nl + 1 + n])
        pos = nl + 1 + n
    return out


def run_load(port: int, requests: list[bytes], *, seconds: float, connections: int = 16,
             order: str = "cycle", seed: int = 1, first_number: int = 1) -> LoadResult:
    """Replay ``requests`` against 127.0.0.1:``port`` for ``seconds`` (blocking). The unique
    numbers put in place of ``@@@@@@@@@@@@`` count up from ``first_number``."""
    with tempfile.TemporaryDirectory(prefix="sluice-load-") as tmp:
        path = Path(tmp) / "requests.bin"
        write_requests(requests, path)
        if tool() == "wrk":
            return _run_wrk(port, path, seconds, connections, order, seed, first_number)
        cmd = [sys.executable, str(HERE / "load.py"), "--port", str(port), "--file", str(path),
               "--seconds", str(seconds), "--connections", str(connections), "--order", order,
               "--seed", str(seed), "--first-number", str(first_number)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             timeout=seconds + 120).stdout
        return LoadResult(**json.loads(out.strip().splitlines()[-1]))


async def run_load_async(port: int, requests: list[bytes], **kwargs: Any) -> LoadResult:
    """:func:`run_load` from async code (the event loop stays free meanwhile)."""
    return await asyncio.to_thread(run_load, port, requests, **kwargs)


def combine(results: list[LoadResult]) -> LoadResult:
    """Rounds of one load as one result: total requests over total time; latency
    percentiles of the median round (by throughput)."""
    total_s = sum(r.seconds for r in results)
    total_n = sum(r.requests for r in results)
    mid = sorted(results, key=lambda r: r.rps)[len(results) // 2]
    return LoadResult(mid.tool, total_n, round(total_s, 2), round(total_n / total_s, 1), mid.p50_ms,
                      mid.p90_ms, mid.p99_ms, mid.mean_ms, max(r.max_ms for r in results),
                      sum(r.errors for r in results), mid.connections)


async def run_pair_async(a: tuple[int, list[bytes]], b: tuple[int, list[bytes]], *, seconds: float,
                         rounds: int = 3, **kwargs: Any) -> tuple[LoadResult, LoadResult]:
    """A path and its limit measured in alternating rounds (A, B, A, B, ...), ``seconds`` each in
    total, so a machine whose load drifts during the run slows both alike."""
    got: tuple[list[LoadResult], list[LoadResult]] = ([], [])
    for _ in range(rounds):
        for side, (port, requests) in zip(got, (a, b), strict=True):
            side.append(await run_load_async(port, requests, seconds=seconds / rounds, **kwargs))
    return combine(got[0]), combine(got[1])


def _run_wrk(port: int, path: Path, seconds: float, connections: int, order: str,
             seed: int, first_number: int) -> LoadResult:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
           "-s", str(HERE / "wrk_replay.lua"), f"http://127.0.0.1:{port}", "--", str(path), order,
           str(seed), str(first_number)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-1000:]} {proc.stdout[-1000:]}")
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    return LoadResult("wrk", r["requests"], round(secs, 2), round(r["requests"] / secs, 1),
                      r["p50_us"] / 1000, r["p90_us"] / 1000, r["p99_us"] / 1000,
                      round(r["mean_us"] / 1000, 3), r["max_us"] / 1000, r["errors"], connections)


# --- the Python generator (a separate process: python bench/load.py ...) ------------------

async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    parts: list[bytes] = []
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            return status, b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readline()


async def _generate(port: int, requests: list[bytes], seconds: float, connections: int,
                    order: str, seed: int, first_number: int) -> LoadResult:
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    counter = first_number - 1
    position = 0
    deadline = time.perf_counter() + seconds

    def next_request() -> bytes:
        nonlocal counter, position
        if order == "random":
            req = requests[rng.randrange(len(requests))]
        else:
            req = requests[position % len(requests)]
            position += 1
        if MARK in req:
            counter += 1
            req = req.replace(MARK, b"%012x" % counter)
        return req

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                writer.write(next_request())
                status, _ = await read_response(reader)
                latencies.append(time.perf_counter() - t0)
                if status >= 400:
                    errors += 1
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            errors += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()

    def q(p: float) -> float:
        if not latencies:
            return 0.0
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    mean = 1000 * sum(latencies) / len(latencies) if latencies else 0.0
    return LoadResult("python", len(latencies), round(elapsed, 2), round(len(latencies) / elapsed, 1),
                      q(0.50), q(0.90), q(0.99), round(mean, 3), q(1.0), errors, connections)


def main() -> None:
    p = argparse.ArgumentParser(description="The Python load generator of bench/load.py.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--order", choices=("cycle", "random"), default="cycle")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--first-number", type=int, default=1)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_generate(args.port, read_requests(args.file), args.seconds,
                                   args.connections, args.order, args.seed, args.first_number))
    print(json.dumps(result.as_dict()))


if __name__ == "__main__":
    main()
