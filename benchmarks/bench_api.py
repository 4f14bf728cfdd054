"""API latency and throughput: POST /replenishment against a bare BentoML service in the same run.

Targets (the ordering system's call): p99 <= 25 ms at a steady 100 req/s (with the inventory in the request, and
without: the store's latest counts from the source, kept in memory by the service), and throughput >= 50% of a bare
BentoML service that parses the same requests and returns a constant answer of the same size (a captured real
response). The requests with inventory cycle through ``--variants`` bodies whose counts differ (jittered on hand),
so nothing the service memoises by value sees only one set of numbers.

    .venv/bin/python benchmarks/bench_api.py [--world DIR] [--rate 100] [--seconds 20] [--json]

The world (source, features, champion, forecast cache) is built once with ``serving.devworld`` (small scenario,
~30 s) unless ``--world`` names an existing one. Latency: an open-loop asyncio client (requests start on a fixed
schedule, so a slow server cannot slow the offered load down). Throughput: ``wrk`` when installed, else a closed-loop
asyncio client with ``--concurrency`` connections; the same client measures both services.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BARE = '''
import bentoml
from pathlib import Path
from serving.schemas import ReplenishmentRequest, ReplenishmentResponse

ANSWER = ReplenishmentResponse.model_validate_json(Path(__file__).with_name("answer.json").read_text())


@bentoml.service(name="bare", workers=1)
class Bare:
    @bentoml.api(route="/replenishment")
    async def replenishment(self, req: ReplenishmentRequest, /) -> ReplenishmentResponse:
        return ANSWER
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(target: str, cwd: Path, env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(BIN / "bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"{target} did not get ready; see {log}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Requests started every 1/rate s regardless of answers (cycling through ``bodies``); latency from the
    scheduled start."""
    lat, codes = [], {}
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn, headers={"content-type": "application/json"}) as s:
        async def one(t_sched: float, body: bytes) -> None:
            async with s.post(url, data=body) as r:
                await r.read()
                codes[r.status] = codes.get(r.status, 0) + 1
            lat.append(time.perf_counter() - t_sched)

        for i in range(20):  # warm-up
            await one(time.perf_counter(), bodies[i % len(bodies)])
        lat.clear()
        codes.clear()
        n = int(rate * seconds)
        t0 = time.perf_counter()
        tasks = []
        for i in range(n):
            t = t0 + i / rate
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(t, bodies[i % len(bodies)])))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    return {"rate": rate, "requests": n, "achieved_rps": round(n / wall, 1), "codes": codes,
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}


async def closed_loop(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    done, codes = 0, {}
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers={"content-type": "application/json"}) as s:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                async with s.post(url, data=bodies[done % len(bodies)]) as r:
                    await r.read()
                    codes[r.status] = codes.get(r.status, 0) + 1
                done += 1

        for body in bodies[:10]:
            async with s.post(url, data=body) as r:
                await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"client": "asyncio", "concurrency": concurrency, "rps": round(done / wall, 1), "requests": done,
            "codes": codes}


def wrk(url: str, body: bytes, concurrency: int, seconds: float, tmp: Path) -> dict:
    script = tmp / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"client": "wrk", "concurrency": concurrency, "rps": rps, "requests": n,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children (BentoML's arbiter and workers)."""
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def throughput(url: str, bodies: list[bytes], concurrency: int, seconds: float, tmp: Path, pid: int) -> dict:
    """Closed-loop throughput, plus the server's CPU time per request (load-independent on a shared machine)."""
    c0 = tree_cpu(pid)
    if shutil.which("wrk"):  # one body: wrk's script sends a constant request
        out = wrk(url, bodies[0], concurrency, seconds, tmp)
    else:
        out = asyncio.run(closed_loop(url, bodies, concurrency, seconds))
    out["server_cpu_ms_per_request"] = round(1000 * (tree_cpu(pid) - c0) / max(out["requests"], 1), 3)
    return out


def prepare_world(world_arg: str | None, prefix: str) -> tuple[Path, Path]:
    """A temp folder and a serving dev world ready to serve (built there unless ``world_arg`` names one)."""
    sys.path.insert(0, str(ROOT))
    from serving import devworld

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    world = Path(world_arg) if world_arg else tmp / "world"
    if not (world / "config.yaml").exists():
        devworld.build(world, progress=lambda m: print(m, file=sys.stderr))
    # The build leaves this process with millions of objects (MLflow, LightGBM, pandas); a full collection of them
    # in the client would stall reading 120 kB answers for hundreds of ms and be counted against the server.
    gc.collect()
    gc.freeze()
    devworld.write_config(world, poll_interval_s=30)
    return tmp, world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", help="an existing serving.devworld folder (default: build one in a temp folder)")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--variants", type=int, default=1000, help="request bodies with different counts to cycle through")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args()
    tmp, world = prepare_world(args.world, "bench-api-")
    env = {**os.environ, "REPLENISH_CONFIG": str(world / "config.yaml"), "PYTHONPATH": str(ROOT)}
    env.pop("REPLENISH_API_TOKEN", None)
    results: dict = {"world": str(world), "cpus": os.cpu_count()}
    proc, url = serve("serving.service:Replenishment", ROOT, env, tmp / "service.log")
    try:
        import urllib.request

        status = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{url}/status", data=b"{}", headers={"content-type": "application/json"})).read())
        day = status["order_dates"][0]
        store = status["stores"][0]
        probe = json.dumps({"store_id": store, "order_date": day}).encode()
        first = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"{url}/replenishment", data=probe, headers={"content-type": "application/json"})).read())
        inventory = [{"material_id": ln["material_id"], "on_hand": ln["on_hand_used"], "on_order": ln["on_order"]}
                     for ln in first["lines"]]
        body = json.dumps({"store_id": store, "order_date": day, "inventory": inventory}).encode()
        rng = np.random.default_rng(7)
        bodies = [body] + [json.dumps({"store_id": store, "order_date": day, "inventory": [
            {**item, "on_hand": round(item["on_hand"] * float(rng.uniform(0.5, 1.5)), 1)} for item in inventory]
        }).encode() for _ in range(max(args.variants, 1) - 1)]
        answer = urllib.request.urlopen(urllib.request.Request(
            f"{url}/replenishment", data=body, headers={"content-type": "application/json"})).read()
        (tmp / "answer.json").write_bytes(answer)
        results["request_bytes"], results["response_bytes"] = len(body), len(answer)
        results["lines"] = len(first["lines"])
        results["latency_100rps_with_inventory"] = asyncio.run(open_loop(f"{url}/replenishment", bodies, args.rate,
                                                                         args.seconds))
        results["latency_100rps_source_counts"] = asyncio.run(open_loop(f"{url}/replenishment", [probe], args.rate,
                                                                        args.seconds / 2))
        results["throughput_service"] = throughput(f"{url}/replenishment", bodies, args.concurrency, args.seconds,
                                                   tmp, proc.pid)
    finally:
        stop(proc)
    (tmp / "bare_service.py").write_text(BARE)
    proc, burl = serve("bare_service:Bare", tmp, {**env, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"}, tmp / "bare.log")
    try:
        results["throughput_bare"] = throughput(f"{burl}/replenishment", bodies, args.concurrency, args.seconds,
                                                tmp, proc.pid)
        results["latency_bare_100rps"] = asyncio.run(open_loop(f"{burl}/replenishment", bodies, args.rate,
                                                               args.seconds / 2))
    finally:
        stop(proc)
    ts, tb = results["throughput_service"], results["throughput_bare"]
    results["throughput_ratio"] = round(ts["rps"] / tb["rps"], 3)
    results["cpu_ratio"] = round(tb["server_cpu_ms_per_request"] / ts["server_cpu_ms_per_request"], 3)
    p99 = results["latency_100rps_with_inventory"]["p99_ms"]
    p99_source = results["latency_100rps_source_counts"]["p99_ms"]
    results["targets"] = {"p99_le_25ms": p99 <= 25.0, "p99_source_counts_le_25ms": p99_source <= 25.0,
                          "throughput_ge_50pct_of_bare": results["throughput_ratio"] >= 0.5}
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        lw, ls = results["latency_100rps_with_inventory"], results["latency_100rps_source_counts"]
        print(f"POST /replenishment ({results['lines']} lines, {results['response_bytes']:,} B) at {args.rate:.0f} "
              f"req/s: p50 {lw['p50_ms']} ms, p95 {lw['p95_ms']} ms, p99 {lw['p99_ms']} ms (codes {lw['codes']})")
        print(f"  without inventory (latest counts in memory; {ls['codes']}, {ls['achieved_rps']} req/s): "
              f"p50 {ls['p50_ms']} ms, p95 {ls['p95_ms']} ms, p99 {ls['p99_ms']} ms")
        print(f"throughput: service {ts['rps']} req/s, bare {tb['rps']} req/s -> {results['throughput_ratio']:.0%} "
              f"({ts['client']}, {args.concurrency} connections); server CPU per request "
              f"{ts['server_cpu_ms_per_request']} ms vs {tb['server_cpu_ms_per_request']} ms "
              f"-> {results['cpu_ratio']:.0%}")
        lb = results["latency_bare_100rps"]
        print(f"  bare service at {args.rate:.0f} req/s: p50 {lb['p50_ms']} ms, p95 {lb['p95_ms']} ms, "
              f"p99 {lb['p99_ms']} ms")
        print(f"targets: {results['targets']}; load average at the end {results['load_average']} "
              f"({results['cpus']} CPUs)")
    shutil.rmtree(tmp / "world", ignore_errors=True) if not args.world else None


if __name__ == "__main__":
    main()
