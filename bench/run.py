"""coopgig's benchmark harness: `python bench/run.py` (with the project venv's python).

It makes a fresh PostgreSQL database, migrates and seeds it through the app's own services, serves
coopgig and a reference app (bench/reference_app.py) with uvicorn (2 workers each), loads each
endpoint with wrk for a fixed time, prints a markdown table and writes it to bench/results/latest.md,
then stops both servers and drops the database. See bench/README.md.

To benchmark a new endpoint, add an `Endpoint` to ENDPOINTS (at the bottom of the specs section).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import loadgen, reference_app  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/coopgig_bench"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOKEN_TTL_SECONDS = 7 * 24 * 3600  # the run must never outlive its tokens
SEED_PASSWORD = "bench-horse-battery-7"

# The two yardsticks every row is compared with (names of entries of ENDPOINTS).
CONSTANT = "ref: constant"
PK_SELECT = "ref: pk select"


# ---- what the endpoints see -------------------------------------------------------------------


@dataclass
class Context:
    """Everything an endpoint spec may need: settings, seeded ids and tokens, the running servers."""

    database_url: str  # SQLAlchemy URL (postgresql+asyncpg://...)
    ref_dsn: str  # plain asyncpg DSN of the same database
    settings: object  # app.config.Settings used for seeding and minting (same JWT secret as the server)
    workdir: Path  # bench/results/work: Lua scripts, path lists
    vars: dict[str, str] = field(default_factory=dict)  # $name substitutions: tokens, ids...
    app_url: str = ""
    ref_url: str = ""
    servers: dict[str, "Server"] = field(default_factory=dict)  # "app" / "ref" -> running server

    @asynccontextmanager
    async def session(self) -> AsyncIterator[object]:
        """An app session (AsyncSession) on a Database of its own, for seeding in `prepare` hooks."""
        from app.db import Database

        db = Database(self.settings)
        try:
            async with db.sessionmaker() as session:
                yield session
        finally:
            await db.dispose()

    def token(self, user_id, role: str, cooperative_id) -> str:
        from app.security import make_access_token

        return make_access_token(user_id=user_id, role=role, cooperative_id=cooperative_id,
                                 settings=self.settings, now=dt.datetime.now(dt.UTC))


Text = str | Callable[[Context], str]


@dataclass
class Endpoint:
    """One benchmarked endpoint.

    Strings in `path`, `headers` and `body` are string.Template texts: `$token_worker`,
    `${cooperative_id}`... come from Context.vars (write `$$` for a literal dollar). Each may also be
    a function of the Context.
    """

    name: str
    target: str  # "ref" (bench/reference_app.py) or "app" (coopgig)
    method: str = "GET"
    path: Text = "/"
    headers: dict[str, Text] = field(default_factory=dict)
    body: Text | None = None
    # A different path per request: a function returning the list of full paths, picked by wrk
    # "random"-ly or "sequential"-ly (each path once before any repeats: for one-shot actions
    # such as accepting a booking, make at least rps x (warm-up + duration) of them).
    paths: Callable[[Context], list[str]] | None = None
    pick: str = "random"
    lua_path: str | None = None  # or a Lua expression giving the path (wins over `paths`)
    lua_extra: str = ""  # raw Lua appended to the script (request()/response() overrides)
    # Async hook run just before this endpoint is loaded (servers are up): seed rows, add vars.
    prepare: Callable[[Context], Awaitable[None]] | None = None
    preflight: bool = True  # send one request first and check its status (off for one-shot paths)
    expect_status: int = 200
    note: str = ""

    def render(self, ctx: Context) -> tuple[str, dict[str, str], str | None]:
        def text(value: Text) -> str:
            return value(ctx) if callable(value) else Template(value).substitute(ctx.vars)

        headers = {k: text(v) for k, v in self.headers.items()}
        body = None if self.body is None else text(self.body)
        if body is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return text(self.path), headers, body


def _bearer(role: str) -> dict[str, Text]:
    return {"Authorization": f"Bearer ${{token_{role}}}"}


def _pk_paths(_: Context) -> list[str]:
    return [reference_app.PK_PATH_PREFIX + reference_app.pk_id(i) for i in range(1, reference_app.PK_ROWS + 1)]


# ---- the endpoints (add yours here) -----------------------------------------------------------

ENDPOINTS: list[Endpoint] = [
    # References: the framework alone, then the framework + one DB round trip (read / write).
    Endpoint(CONSTANT, "ref", path="/ref/constant", note="FastAPI, constant JSON, no DB"),
    Endpoint(PK_SELECT, "ref", paths=_pk_paths, note="FastAPI + one raw asyncpg PK select (random id of 10,000)"),
    Endpoint("ref: insert", "ref", method="POST", path="/ref/insert", body='{"payload": "benchmark row"}',
             expect_status=201, note="FastAPI + one raw asyncpg one-row INSERT (autocommit)"),
    # coopgig.
    Endpoint("GET /healthz", "app", path="/healthz",
             note="coopgig, no DB: middleware + FastAPI (compare with ref: constant)"),
    Endpoint("GET /api/v1/me", "app", path="/api/v1/me", headers=_bearer("worker"),
             note="coopgig, worker token: JWT + session + user/coop/member join"),
]


# ---- database ---------------------------------------------------------------------------------


def _check_database_url(url: str):
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise SystemExit(f"bench: needs PostgreSQL, got {parsed.drivername}")
    if (parsed.host or "127.0.0.1") not in LOOPBACK:
        raise SystemExit(f"bench: the database must be on this machine (loopback), not {parsed.host}")
    if "bench" not in (parsed.database or ""):
        raise SystemExit(f"bench: refusing to drop and re-create {parsed.database!r}: "
                         "the database name must contain 'bench'")
    return parsed


async def _admin(parsed, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=parsed.host or "127.0.0.1", port=parsed.port or 5432,
                                 user=parsed.username or "postgres", password=parsed.password,
                                 database="postgres", timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def recreate_database(parsed) -> None:
    name = parsed.database.replace('"', '""')
    asyncio.run(_admin(parsed, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_admin(parsed, f'CREATE DATABASE "{name}"'))


def drop_database(parsed) -> None:
    name = parsed.database.replace('"', '""')
    asyncio.run(_admin(parsed, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _db_stats(admin_dsn: str, dbname: str) -> dict[str, int]:
    """Sessions ever opened on the bench database and connections open now (read from `postgres`)."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        sessions = await conn.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = $1", dbname)
        open_now = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", dbname)
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {"sessions": int(sessions or 0), "open": int(open_now or 0), "version": version}


async def seed(ctx: Context) -> None:
    """A cooperative and one user per role we need, through the app's services; tokens minted here."""
    from app.services import tenancy

    async with ctx.session() as s:
        coop = await tenancy.create_cooperative(s, slug="bench", name="Bench Cooperative")
    ctx.vars.update(cooperative_id=str(coop.id), cooperative_slug=coop.slug)
    for role in ("client", "worker", "staff"):
        async with ctx.session() as s:
            user, member, _ = await tenancy.create_user(
                s, ctx.settings, cooperative_slug="bench", email=f"{role}@bench.example.org",
                password=SEED_PASSWORD, display_name=f"Bench {role.title()}", role=role)
        ctx.vars[f"user_id_{role}"] = str(user.id)
        ctx.vars[f"token_{role}"] = ctx.token(user.id, role, coop.id)
        if member is not None:
            ctx.vars[f"member_id_{role}"] = str(member.id)


# ---- servers ----------------------------------------------------------------------------------


def free_port(avoid: set[int] = frozenset()) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    url: str
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_server(name: str, app_ref: str, port: int, env: dict[str, str], workers: int) -> Server:
    log = RESULTS / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "uvicorn", app_ref, "--workers", str(workers), "--port", str(port),
           "--host", "127.0.0.1", "--no-access-log"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # own process group
    return Server(name, proc, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n{server.tail()}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready on {server.url}{path} after {timeout:.0f}s:\n{server.tail()}")


def stop_server(server: Server) -> None:
    """SIGTERM the server's whole process group (uvicorn's supervisor and its workers), then SIGKILL."""
    if server.proc.poll() is None:
        try:
            os.killpg(server.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:  # workers the supervisor may have left behind
        os.killpg(server.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if server.proc.poll() is None:
        server.proc.wait(timeout=5)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every live process in a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process went away
        # after "pid (comm)": state ppid pgrp session ... utime(11) stime(12)
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def preflight(url: str, method: str, headers: dict[str, str], body: str | None, expect: int) -> None:
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=body.encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, text = resp.status, resp.read(500).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read(500).decode(errors="replace")
    if status != expect:
        raise RuntimeError(f"preflight {method} {url}: expected {expect}, got {status}: {text}")


# ---- one endpoint -----------------------------------------------------------------------------


@dataclass
class Row:
    endpoint: Endpoint
    path: str
    result: loadgen.WrkResult
    new_sessions: int
    open_connections: int
    server_cpu_us_per_request: float


def bench_endpoint(ep: Endpoint, ctx: Context, args, wrk: str) -> Row:
    if ep.prepare is not None:
        asyncio.run(ep.prepare(ctx))
    base = {"ref": ctx.ref_url, "app": ctx.app_url}[ep.target]
    path, headers, body = ep.render(ctx)
    slug = "".join(c if c.isalnum() else "_" for c in ep.name).strip("_")
    paths_file = None
    if ep.paths is not None and ep.lua_path is None:
        paths = ep.paths(ctx)
        paths_file = ctx.workdir / f"{slug}.paths"
        paths_file.write_text("\n".join(paths) + "\n")
        path = paths[0]
    req = loadgen.Request(method=ep.method, path=path, headers=headers, body=body, paths_file=paths_file,
                          pick=ep.pick, lua_path=ep.lua_path, lua_extra=ep.lua_extra)
    script = ctx.workdir / f"{slug}.lua"
    script.write_text(loadgen.lua_script(req, threads=args.threads, name=ep.name))
    if ep.preflight:
        preflight(base + path, ep.method, headers, body, ep.expect_status)
    if args.warmup > 0:
        loadgen.run_wrk(wrk, base_url=base, script=script, duration=args.warmup,
                        connections=args.connections, threads=args.threads)
    before = asyncio.run(_db_stats(args.admin_dsn, args.dbname))
    server = ctx.servers[ep.target]
    cpu_before = group_cpu_seconds(server.proc.pid)
    result = loadgen.run_wrk(wrk, base_url=base, script=script, duration=args.duration,
                             connections=args.connections, threads=args.threads)
    cpu = group_cpu_seconds(server.proc.pid) - cpu_before
    open_now = asyncio.run(_db_stats(args.admin_dsn, args.dbname))["open"]
    time.sleep(1.0)  # let backends flush their session counters
    after = asyncio.run(_db_stats(args.admin_dsn, args.dbname))
    (RESULTS / "raw").mkdir(exist_ok=True)
    (RESULTS / "raw" / f"{slug}.txt").write_text(result.raw)
    return Row(ep, path, result, after["sessions"] - before["sessions"], open_now,
               cpu / max(result.requests, 1) * 1e6)


# ---- report -----------------------------------------------------------------------------------


def _ratio(value: float, ref: float | None) -> str:
    return f"{value / ref:.2f}" if ref else "—"


def render(rows: list[Row], meta: dict[str, str]) -> str:
    by_name = {r.endpoint.name: r for r in rows}
    const = by_name[CONSTANT].result.requests_per_sec if CONSTANT in by_name else None
    pk = by_name[PK_SELECT].result.requests_per_sec if PK_SELECT in by_name else None
    out = [f"# coopgig benchmark — {meta['date']}", "",
           " · ".join(f"{k}: {v}" for k, v in meta.items() if k != "date"), "",
           "| endpoint | requests/s | p99 ms | ratio to constant | ratio to pk-select |",
           "|---|---:|---:|---:|---:|"]
    flagged = False
    for r in rows:
        res = r.result
        mark = ""
        if res.non_2xx_3xx or res.socket_error_total:
            mark, flagged = " ⚠", True
        out.append(f"| {r.endpoint.name} | {res.requests_per_sec:,.0f}{mark} | {res.p99_ms:.2f} | "
                   f"{_ratio(res.requests_per_sec, const)} | {_ratio(res.requests_per_sec, pk)} |")
    out.append("")
    out.append("Ratios are requests/s of the row divided by requests/s of the reference (1.00 = as fast).")
    if flagged:
        out.append("⚠ = some responses were errors (non-2xx/3xx) or socket errors: see the details below.")
    out += ["", "<details><summary>Details</summary>", "",
            "| endpoint | request | p50 ms | p90 ms | requests | non-2xx/3xx | socket errors | "
            "server CPU µs/req | new DB sessions | DB conns open | what |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        res, ep = r.result, r.endpoint
        path = r.path if ep.paths is None and ep.lua_path is None else f"{r.path} (…{ep.pick})"
        out.append(f"| {ep.name} | {ep.method} {path} | {res.latency_ms.get(50, float('nan')):.2f} | "
                   f"{res.latency_ms.get(90, float('nan')):.2f} | {res.requests:,} | {res.non_2xx_3xx} | "
                   f"{res.socket_error_total} | {r.server_cpu_us_per_request:,.0f} | {r.new_sessions} | {r.open_connections} | {ep.note} |")
    out += ["", "</details>", ""]
    return "\n".join(out)


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
                   help="SQLAlchemy URL of a throwaway database (dropped and re-created; its name must "
                        "contain 'bench'). Default: %(default)s")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per endpoint")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load before each (0: none)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers of each server")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="only endpoints whose name contains TEXT (repeatable; the references used for the "
                        "ratios are always run)")
    p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the coopgig server, e.g. DB_POOL_SIZE=20 (repeatable; "
                        "for experiments: say so when you quote the numbers)")
    p.add_argument("--list", action="store_true", help="list the endpoints and exit")
    args = p.parse_args(argv)
    if args.duration < 1 or args.duration > 600:
        p.error("--duration must be between 1 and 600 seconds")
    if args.warmup < 0 or args.warmup > 120:
        p.error("--warmup must be between 0 and 120 seconds")
    if args.connections < 1 or args.threads < 1 or args.connections < args.threads:
        p.error("need connections >= threads >= 1")
    if any("=" not in kv for kv in args.app_env):
        p.error("--app-env takes KEY=VALUE")
    return args


def _exit_on_sigterm(*_) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for ep in ENDPOINTS:
            print(f"{ep.name:<28} {ep.target:<4} {ep.note}")
        return 0
    selected = [ep for ep in ENDPOINTS if not args.only or ep.name in (CONSTANT, PK_SELECT)
                or any(t.lower() in ep.name.lower() for t in args.only)]
    names = [ep.name for ep in ENDPOINTS]
    if len(set(names)) != len(names):
        raise SystemExit("bench: two endpoints have the same name")

    parsed = _check_database_url(args.database_url)
    args.dbname = parsed.database
    args.admin_dsn = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    wrk = loadgen.ensure_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / "work"
    workdir.mkdir(exist_ok=True)

    # A SIGTERM (or a CI timeout) must still stop the servers and drop the database.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    from app import migrate
    from app.config import Settings

    jwt_secret = secrets.token_urlsafe(48)
    settings = Settings(environment="development", database_url=args.database_url,
                        password_hash_profile="CHEAPEST", jwt_secret=jwt_secret,
                        access_token_ttl_seconds=TOKEN_TTL_SECONDS, log_level="WARNING")
    ref_dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    ctx = Context(database_url=args.database_url, ref_dsn=ref_dsn, settings=settings, workdir=workdir)

    servers: list[Server] = []
    rows: list[Row] = []
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"bench: warning: the machine is busy (load average {load_before:.2f}); numbers will be noisy",
              flush=True)
    print(f"bench: database {parsed.database} (fresh), wrk {args.threads} threads / {args.connections} "
          f"connections, {args.warmup:g}s warm-up + {args.duration:g}s per endpoint", flush=True)
    recreate_database(parsed)
    try:
        migrate.upgrade(args.database_url)
        asyncio.run(seed(ctx))
        asyncio.run(reference_app.prepare(ref_dsn))

        base_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        app_port = free_port()
        ref_port = free_port({app_port})
        servers.append(start_server("app", "app.main:app", app_port, {
            **base_env, "DATABASE_URL": args.database_url, "JWT_SECRET": jwt_secret, "LOG_LEVEL": "WARNING",
            "ENVIRONMENT": "development", "ACCESS_TOKEN_TTL_SECONDS": str(TOKEN_TTL_SECONDS),
            **dict(kv.split("=", 1) for kv in args.app_env)}, args.workers))
        servers.append(start_server("reference", "bench.reference_app:app", ref_port, {
            **base_env, "REF_DATABASE_URL": ref_dsn}, args.workers))
        wait_ready(servers[0], "/healthz")
        wait_ready(servers[1], "/ref/constant")
        ctx.app_url, ctx.ref_url = servers[0].url, servers[1].url
        ctx.servers = {"app": servers[0], "ref": servers[1]}

        for ep in selected:
            print(f"bench: {ep.name} ...", end=" ", flush=True)
            row = bench_endpoint(ep, ctx, args, wrk)
            rows.append(row)
            res = row.result
            print(f"{res.requests_per_sec:,.0f} req/s, p99 {res.p99_ms:.2f} ms"
                  + (f", {res.non_2xx_3xx} non-2xx" if res.non_2xx_3xx else ""), flush=True)
        db_version = asyncio.run(_db_stats(args.admin_dsn, args.dbname))["version"]
    finally:
        for server in reversed(servers):
            stop_server(server)
        drop_database(parsed)

    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": _git_rev(),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "PostgreSQL": db_version,
        "load": f"{loadgen.wrk_version(wrk).split(' [')[0]}, {args.threads} threads, {args.connections} "
                f"connections, {args.warmup:g}s warm-up + {args.duration:g}s each",
        "servers": f"uvicorn --workers {args.workers} each, wrk on the same machine",
        "load average": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
        **({"app env": " ".join(args.app_env)} if args.app_env else {}),
    }
    report = render(rows, meta)
    print()
    print(report)
    (RESULTS / "latest.md").write_text(report)
    (RESULTS / "latest.json").write_text(json.dumps({"meta": meta, "rows": [
        {"endpoint": r.endpoint.name, "target": r.endpoint.target, "method": r.endpoint.method, "path": r.path,
         "requests_per_sec": r.result.requests_per_sec, "latency_ms": r.result.latency_ms,
         "requests": r.result.requests, "non_2xx_3xx": r.result.non_2xx_3xx,
         "socket_errors": r.result.socket_errors, "new_db_sessions": r.new_sessions,
         "server_cpu_us_per_request": r.server_cpu_us_per_request} for r in rows]}, indent=2))
    print(f"bench: written to {RESULTS / 'latest.md'}")
    return 1 if any(r.result.non_2xx_3xx for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
