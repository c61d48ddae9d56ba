"""Instructions per request of the hot routes, counted by valgrind (callgrind): a yardstick that
does not move with the machine's load (the wrk ratios of bench/run.py move ±20–30% on this 2-core
box between runs of the same commit; this count moves by well under 1%).

    .venv/bin/python bench/instructions.py                 # matches, accept and their references
    .venv/bin/python bench/instructions.py --only matches  # one route (and its reference)

What is counted: the app's own process only (PostgreSQL, the HTTP parser and the network are not),
from the ASGI call to the last byte of the answer, on the default asyncio loop, after a warm-up.
Each route runs in its own child process under `valgrind --tool=callgrind --instr-atstart=no`; the
child switches counting on (`callgrind_control -i on`) around `--requests` requests only, so the
start-up (OpenFisca, the supply index's first load) is not counted. The marketplace is bench's own
(`seed_market.seed`) at `--scale 0.01`: one cooperative of 1,000 workers, as hard for matching as the
full scale (the full-scale tables only make PostgreSQL's share larger, which is not counted here).

The references are bench/reference_app.py's routes, called in process the same way: `GET
/ref/pk/{id}` for matches and `POST /ref/insert` for accept. The ratio reference ÷ route is the
in-process analogue of bench/run.py's ratio, without PostgreSQL's and the HTTP server's share:
compare it between commits, not with the targets. A run takes 4-6 minutes (valgrind runs Python
about 50× slower). Needs valgrind (Debian's package; on this machine already).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/coopgig_bench_instructions"
JWT_SECRET = "bench-instructions-" + "x" * 32
ROUTES = ("matches", "accept", "ref: pk select", "ref: insert")
REFERENCE_OF = {"matches": "ref: pk select", "accept": "ref: insert"}
WARMUP = 60


# ---- the child: one route, in process, counted ------------------------------------------------


def _scope(method: str, path: str, query: str = "", headers: list | None = None) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"bench"), *(headers or [])], "client": ("127.0.0.1", 1), "server": ("bench", 80)}


def _matches_scopes(market, settings, n: int) -> list[tuple[dict, bytes]]:
    """The queries bench/run.py sends (`run.matches_paths`), as the same client."""
    from app.security import make_access_token
    from bench.run import MATCHES_COOP, matches_paths

    c = MATCHES_COOP
    token = make_access_token(user_id=market.client_ids[c][0], role="client", cooperative_id=market.coop_ids[c],
                              settings=settings, now=dt.datetime.now(dt.UTC))
    headers = [(b"authorization", f"Bearer {token}".encode())]
    scopes = [(_scope("GET", path, query, headers), b"")
              for path, _, query in (p.partition("?") for p in matches_paths(market))]
    return [scopes[i % len(scopes)] for i in range(n)]


async def _accept_scopes(database_url: str, market, settings, n: int) -> list[tuple[dict, bytes]]:
    """n offered bookings, each accepted by its own worker's token (as bench/run.py's one-shot run)."""
    from app.security import make_access_token
    from bench import seed_market

    prepared = await seed_market.offered_bookings(database_url, market, n)
    now = dt.datetime.now(dt.UTC)
    return [(_scope("POST", f"/api/v1/bookings/{p.booking_id}/accept", "", [
        (b"authorization", ("Bearer " + make_access_token(user_id=p.worker.user_id, role="worker",
                                                          cooperative_id=market.coop_ids[p.coop],
                                                          settings=settings, now=now)).encode()),
        (b"content-length", b"0")]), b"") for p in prepared]


def _reference_scopes(route: str, n: int) -> list[tuple[dict, bytes]]:
    from bench import reference_app

    rng = random.Random(3)
    if route == "ref: pk select":
        return [(_scope("GET", f"/ref/pk/{reference_app.pk_id(rng.randint(1, reference_app.PK_ROWS))}"), b"")
                for _ in range(n)]
    body = json.dumps({"payload": "an accepted booking, about this long"}).encode()
    return [(_scope("POST", "/ref/insert", "", [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]), body)
            for _ in range(n)]


async def _child(route: str, database_url: str, market_file: str, requests: int) -> None:
    from asgi_lifespan import LifespanManager

    if route.startswith("ref:"):
        from bench import reference_app

        app, scopes = reference_app.app, _reference_scopes(route, WARMUP + requests)
    else:
        from app.config import Settings
        from app.main import create_app

        settings = Settings()
        market = pickle.loads(Path(market_file).read_bytes())
        if route == "matches":
            scopes = _matches_scopes(market, settings, WARMUP + requests)
        else:
            scopes = await _accept_scopes(database_url, market, settings, WARMUP + requests)
        app = create_app(settings)
    async with LifespanManager(app, startup_timeout=600) as manager:
        state = dict(getattr(manager, "_state", {}))

        async def call(scope: dict, body: bytes) -> None:
            sent: list[dict] = []

            async def receive() -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict) -> None:
                sent.append(message)

            await manager.app(dict(scope, state=state), receive, send)
            if not 200 <= sent[0]["status"] < 300:
                raise SystemExit(f"{route}: {scope['method']} {scope['path']} answered {sent[0]['status']}: "
                                 f"{b''.join(m.get('body', b'') for m in sent[1:])[:300]!r}")

        for scope, body in scopes[:WARMUP]:
            await call(scope, body)
        # Blocking on purpose: counting must switch exactly between two requests, with nothing else running.
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)  # noqa: ASYNC221
        for scope, body in scopes[WARMUP:]:
            await call(scope, body)
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)  # noqa: ASYNC221


# ---- the parent: seed, run each child under valgrind, report -----------------------------------


_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def count(route: str, database_url: str, market_file: str, requests: int, workdir: Path) -> int:
    """Instructions of `requests` requests of `route` (a child process under callgrind)."""
    env = dict(os.environ, DATABASE_URL=database_url, JWT_SECRET=JWT_SECRET, LOG_LEVEL="WARNING",
               BACKGROUND_INTERVAL_SECONDS="0", REF_DATABASE_URL=database_url.replace("+asyncpg", ""),
               REF_POOL_MIN_SIZE="1", REF_POOL_MAX_SIZE="2")
    log = workdir / f"callgrind.{re.sub(r'[^a-z]+', '_', route)}.log"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={workdir}/callgrind.out.%p",
           sys.executable, str(Path(__file__).resolve()), "--child", route, "--database-url", database_url,
           "--market-file", market_file, "--requests", str(requests)]
    with log.open("w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
    text = log.read_text()
    found = _COLLECTED.search(text)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{route}: the counted run failed (exit {done.returncode}); see {log}:\n{text[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("matches", "accept"), action="append", default=[])
    p.add_argument("--requests", type=int, default=200, help="requests counted per route")
    p.add_argument("--scale", type=float, default=0.01)
    p.add_argument("--database-url", default=os.environ.get("BENCH_INSTRUCTIONS_DATABASE_URL", DEFAULT_DATABASE_URL))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--market-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        asyncio.run(_child(args.child, args.database_url, args.market_file, args.requests))
        return 0
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("bench/instructions.py needs valgrind (apt-get install -y valgrind)", file=sys.stderr)
        return 2
    from app import migrate
    from bench import reference_app, seed_market
    from bench import run as bench_run

    parsed = bench_run._check_database_url(args.database_url)
    routes = [r for r in ROUTES if not args.only or r in args.only or any(REFERENCE_OF[o] == r for o in args.only)]
    bench_run.recreate_database(parsed)
    results: dict[str, int] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="coopgig-instructions-") as tmp:
            workdir = Path(tmp)
            t = time.perf_counter()
            os.environ["JWT_SECRET"] = JWT_SECRET
            migrate.upgrade(args.database_url)
            market = asyncio.run(seed_market.seed(args.database_url, scale=args.scale, log=lambda *_: None))
            asyncio.run(reference_app.prepare(args.database_url.replace("+asyncpg", "")))
            market_file = workdir / "market.pickle"
            market_file.write_bytes(pickle.dumps(market))
            print(f"seeded in {time.perf_counter() - t:.0f}s (scale {args.scale}); counting {args.requests} requests "
                  "per route under callgrind", flush=True)
            for route in routes:
                t = time.perf_counter()
                results[route] = count(route, args.database_url, str(market_file), args.requests, workdir) \
                    // args.requests
                print(f"  {route}: {results[route]:,} instructions per request ({time.perf_counter() - t:.0f}s)",
                      flush=True)
    finally:
        bench_run.drop_database(parsed)
    lines = ["| route | instructions per request | reference | ratio (reference ÷ route) |", "|---|---:|---|---:|"]
    for route, ref in REFERENCE_OF.items():
        if route in results:
            ratio = f"{results[ref] / results[route]:.2f}" if ref in results else "—"
            lines.append(f"| {route} | {results[route]:,} | {ref}: {results.get(ref, 0):,} | {ratio} |")
    table = "\n".join(lines)
    print("\n" + table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "instructions.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
