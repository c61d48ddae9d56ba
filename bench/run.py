"""coopgig's benchmark harness: `python bench/run.py` (with the project venv's python).

It makes a fresh PostgreSQL database, migrates and seeds it through the app's own services (and,
for the marketplace and payments groups, bulk-loads a marketplace at scale: bench/seed_market.py),
serves coopgig and a reference app (bench/reference_app.py) with uvicorn (2 workers each), and
localstripe when the payments group runs (bench/bench_webhooks.py), loads each endpoint with wrk
for a fixed time (pgbench for its TPC-B row), prints a markdown table and writes it to
bench/results/latest.md, then stops every server and drops the databases. See bench/README.md.

To benchmark a new endpoint, add an `Endpoint` to ENDPOINTS (at the bottom of the specs section).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import json
import math
import os
import platform
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import bench_webhooks, loadgen, reference_app, seed_market  # noqa: E402
from bench import profile as bench_profile  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/coopgig_bench"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOKEN_TTL_SECONDS = 7 * 24 * 3600  # the run must never outlive its tokens
SEED_PASSWORD = "bench-horse-battery-7"

# The yardsticks (names of entries of ENDPOINTS). CONSTANT and PK_SELECT always run.
CONSTANT = "ref: constant"
PK_SELECT = "ref: pk select"
INSERT = "ref: insert"
PGBENCH = "pgbench TPC-B"


# ---- what the endpoints see -------------------------------------------------------------------


@dataclass
class Context:
    """Everything an endpoint spec may need: settings, seeded ids and tokens, the running servers."""

    database_url: str  # SQLAlchemy URL (postgresql+asyncpg://...)
    ref_dsn: str  # plain asyncpg DSN of the same database
    settings: object  # app.config.Settings used for seeding and minting (same JWT secret as the server)
    workdir: Path  # bench/results/work: Lua scripts, path lists
    args: argparse.Namespace | None = None
    vars: dict[str, str] = field(default_factory=dict)  # $name substitutions: tokens, ids...
    app_url: str = ""
    ref_url: str = ""
    stripe_url: str = ""  # localstripe, when the payments group runs
    webhook_secret: str = ""  # STRIPE_WEBHOOK_SECRET of the served app
    servers: dict[str, "Server"] = field(default_factory=dict)  # "app" / "ref" / "stripe" -> running server
    market: seed_market.Market | None = None  # the marketplace at scale (groups marketplace, payments)
    extras: dict[str, object] = field(default_factory=dict)  # anything endpoints share (intent ids...)

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
# One prepared request of a one-shot endpoint: (method, path, headers, body).
RawSpec = tuple[str, str, dict[str, str], str | bytes | None]


@dataclass
class Endpoint:
    """One benchmarked endpoint (or, with `run`, one row measured by another tool: pgbench).

    Strings in `path`, `headers` and `body` are string.Template texts: `$token_worker`,
    `${cooperative_id}`... come from Context.vars (write `$$` for a literal dollar). Each may also be
    a function of the Context.
    """

    name: str
    target: str  # "ref" (bench/reference_app.py), "app" (coopgig), "stripe" (localstripe), "pgbench"
    method: str = "GET"
    path: Text = "/"
    headers: dict[str, Text] = field(default_factory=dict)
    body: Text | None = None
    # A different path per request: a function returning the list of full paths, picked by wrk
    # "random"-ly or "sequential"-ly.
    paths: Callable[[Context], list[str]] | None = None
    pick: str = "random"
    lua_path: str | None = None  # or a Lua expression giving the path (wins over `paths`)
    lua_extra: str = ""  # raw Lua appended to the script (request()/response() overrides)
    # Async hook run just before this endpoint is loaded (servers are up): seed rows, add vars.
    prepare: Callable[[Context], Awaitable[None]] | None = None
    preflight: bool = True  # send one request first and check its status
    expect_status: int = 200
    note: str = ""
    group: str = "core"  # --only matches names and groups: core, marketplace, payments
    ratio_to: str | None = None  # the row this one is compared with (the "ratio" column)
    goal: float | None = None  # the ratio it should reach (the "target" column)
    needs: frozenset[str] = frozenset()  # "market" (seed_market), "stripe" (localstripe), "pgbench"
    # One-shot actions: `oneshot(ctx, n)` makes n requests that each act once (accept a booking,
    # a webhook event). The harness asks for a batch for the preflight, one for the warm-up (sized
    # from `expect_rps`), and one for the measured run (sized from the warm-up's rate), so no request
    # is ever sent twice. Wins over path/paths.
    oneshot: Callable[[Context, int], Awaitable[list[RawSpec]]] | None = None
    expect_rps: float = 300.0
    # Extra check of the preflight answer: returns an error message, or None when it is right.
    check: Callable[[int, str], str | None] | None = None
    # Before the warm-up: this many concurrent requests, again until they all answer within 1 s
    # (loads per-process caches of every uvicorn worker, e.g. the OpenFisca rate card).
    warm_requests: int = 0
    # After the measured run: a line for the details (what the database says happened).
    verify: Callable[[Context, "Row"], Awaitable[str]] | None = None
    # A row measured by something else than wrk: run(ctx, args, seconds) -> loadgen.WrkResult.
    run: Callable[[Context, argparse.Namespace, float], loadgen.WrkResult] | None = None

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


# ---- marketplace endpoints (bench/seed_market.py) --------------------------------------------

MATCHES_COOP = 0  # the cooperative whose client asks for matches (1,000 workers at any scale >= 0.01)


async def prepare_matches(ctx: Context) -> None:
    """A client token of one cooperative and 200 variants of a matches query in its city: a few km
    around the centre, slots of 1-3 hours on the benchmark day inside the published windows."""
    m = ctx.market
    ctx.vars["token_market_client"] = ctx.token(m.client_ids[MATCHES_COOP][0], "client", m.coop_ids[MATCHES_COOP])
    ctx.extras["matches_paths"] = matches_paths(m)


def matches_paths(m: seed_market.Market, n: int = 200) -> list[str]:
    """`n` variants of a matches query in the city of cooperative MATCHES_COOP (also bench/instructions.py's)."""
    c = MATCHES_COOP
    _, clat, clon = m.city(c)
    rng = random.Random(7)
    paths = []
    for _ in range(n):
        start = rng.choice((9, 10, 11, 14, 15))
        minutes = rng.choice((60, 120, 180))
        d_km, angle = rng.uniform(0, 4), rng.uniform(0, 2 * math.pi)
        lat = clat + d_km * math.sin(angle) / 111.32
        lon = clon + d_km * math.cos(angle) / (111.32 * math.cos(math.radians(clat)))
        query = urllib.parse.urlencode({
            "service_id": str(m.service_ids[c][0]),
            "starts_at": (m.slot_day + dt.timedelta(hours=start)).isoformat().replace("+00:00", "Z"),
            "duration_minutes": minutes, "lat": f"{lat:.5f}", "lon": f"{lon:.5f}"})
        paths.append("/api/v1/matches?" + query)
    return paths


def _check_matches(status: int, text: str) -> str | None:
    try:
        found = json.loads(text)
    except ValueError:
        return "not JSON"
    if not isinstance(found, list) or not found:
        return "no match: the seeded market does not fit the query (a benchmark of an empty answer)"
    return None


async def verify_matches(ctx: Context, row: "Row") -> str:
    """EXPLAIN ANALYZE of the matching queries and the split SQL / Python of one request, in process."""
    return await explain_matches(ctx)


async def oneshot_accept(ctx: Context, n: int) -> list[RawSpec]:
    """n offered bookings (inserted directly), each accepted by its own worker's token."""
    prepared = await seed_market.offered_bookings(ctx.database_url, ctx.market, n)
    ctx.extras["accept_prepared"] = int(ctx.extras.get("accept_prepared", 0)) + len(prepared)
    return [("POST", f"/api/v1/bookings/{p.booking_id}/accept",
             {"Authorization": "Bearer " + ctx.token(p.worker.user_id, "worker", ctx.market.coop_ids[p.coop])}, None)
            for p in prepared]


def _check_accept(status: int, text: str) -> str | None:
    try:
        body = json.loads(text)
    except ValueError:
        return "not JSON"
    return None if body.get("status") == "accepted" else f"booking is {body.get('status')!r}, not accepted"


async def verify_accept(ctx: Context, row: "Row") -> str:
    import asyncpg

    conn = await asyncpg.connect(ctx.ref_dsn)
    try:
        accepted = await conn.fetchval(
            "SELECT count(*) FROM booking WHERE payment_intent_id LIKE 'pi_bench_offer_%' AND status = 'accepted'")
        events = await conn.fetchval(
            "SELECT count(*) FROM booking_event WHERE to_status = 'accepted' AND actor_role = 'worker'")
    finally:
        await conn.close()
    return (f"{accepted:,} of {ctx.extras.get('accept_prepared', 0):,} prepared bookings accepted in the database "
            f"(preflight + warm-up + run, of every round so far; {events:,} `accepted` events)")


# ---- payments endpoints (bench/bench_webhooks.py) --------------------------------------------


async def prepare_webhooks(ctx: Context) -> None:
    """Ledger accounts as an established cooperative has them (once)."""
    if not ctx.extras.get("ledger_accounts"):
        ctx.extras["ledger_accounts"] = await seed_market.ledger_accounts(ctx.database_url, ctx.market)


async def oneshot_webhook(ctx: Context, n: int) -> list[RawSpec]:
    """n completed bookings whose capture was requested, each on its own PaymentIntent created,
    confirmed and captured in localstripe, and one signed `payment_intent.succeeded` event for each."""
    specs = seed_market.capture_specs(ctx.market, n)
    t = time.perf_counter()
    intents = await bench_webhooks.captured_intents(ctx.stripe_url, [s.price for s in specs],
                                                    booking_ids=[str(s.booking_id) for s in specs])
    spent = ctx.extras.setdefault("intent_seconds", [0.0, 0])
    spent[0] += time.perf_counter() - t
    spent[1] += len(intents)
    await seed_market.capture_requested_bookings(ctx.database_url, ctx.market, specs, [i.id for i in intents])
    ids = ctx.extras.setdefault("intent_ids", [])
    ids.extend(i.id for i in intents)
    out = []
    for intent in intents:
        path, headers, body = bench_webhooks.webhook_request(intent, ctx.webhook_secret)
        out.append(("POST", path, headers, body))
    return out


def _check_webhook(status: int, text: str) -> str | None:
    try:
        outcome = json.loads(text).get("outcome")
    except (ValueError, AttributeError):
        return "not JSON"
    return None if outcome == "captured: posted to the ledger" else f"outcome {outcome!r}"


async def verify_webhook(ctx: Context, row: "Row") -> str:
    import asyncpg

    conn = await asyncpg.connect(ctx.ref_dsn)
    try:
        outcomes = await conn.fetch("SELECT outcome, count(*) AS n FROM stripe_event GROUP BY outcome ORDER BY 2 DESC")
        txs = await conn.fetchval("SELECT count(*) FROM ledger_transaction")
    finally:
        await conn.close()
    spent = ctx.extras.get("intent_seconds", [0.0, 0])
    made = f"; intents made in localstripe at {spent[1] / spent[0]:,.0f}/s (5 calls each)" if spent[0] else ""
    return ("stripe_event outcomes: " + ", ".join(f"{r['outcome']} {r['n']:,}" for r in outcomes)
            + f"; {txs:,} ledger transactions" + made)


async def prepare_localstripe(ctx: Context) -> None:
    if len(ctx.extras.get("intent_ids", [])) < 50:  # the webhook row did not run: make some
        intents = await bench_webhooks.captured_intents(ctx.stripe_url, [1000 + i for i in range(200)])
        ctx.extras.setdefault("intent_ids", []).extend(i.id for i in intents)


def _localstripe_paths(ctx: Context) -> list[str]:
    return [f"/v1/payment_intents/{pi}?expand%5B0%5D=latest_charge.balance_transaction"
            for pi in ctx.extras["intent_ids"]]


async def prepare_pgbench(ctx: Context) -> None:
    pgbench = bench_webhooks.find_pgbench()
    if pgbench is None:
        raise RuntimeError("pgbench not found (Debian: apt-get install postgresql-client-15, or the server package)")
    ctx.extras["pgbench"] = pgbench
    seconds = bench_webhooks.pgbench_init(pgbench, ctx.args.parsed, scale=ctx.args.pgbench_scale)
    ctx.extras["pgbench_init_seconds"] = seconds


async def verify_pgbench(ctx: Context, row: "Row") -> str:
    return (f"`pgbench -i -s {ctx.args.pgbench_scale}` took {ctx.extras.get('pgbench_init_seconds', 0):.1f}s; "
            f"mean latency {1000 * ctx.args.pgbench_clients / max(row.result.requests_per_sec, 1e-9):.2f} ms "
            f"with {ctx.args.pgbench_clients} clients")


def run_pgbench(ctx: Context, args: argparse.Namespace, seconds: float) -> loadgen.WrkResult:
    return bench_webhooks.run_pgbench(ctx.extras["pgbench"], args.parsed, duration=seconds,
                                      clients=args.pgbench_clients, threads=args.threads,
                                      logdir=RESULTS / "work" / "pgbench")


# ---- the endpoints (add yours here) -----------------------------------------------------------

ENDPOINTS: list[Endpoint] = [
    # References: the framework alone, then the framework + one DB round trip (read / write).
    Endpoint(CONSTANT, "ref", path="/ref/constant", note="FastAPI, constant JSON, no DB"),
    Endpoint(PK_SELECT, "ref", paths=_pk_paths, ratio_to=CONSTANT,
             note="FastAPI + one raw asyncpg PK select (random id of 10,000)"),
    Endpoint(INSERT, "ref", method="POST", path="/ref/insert", body='{"payload": "benchmark row"}',
             expect_status=201, ratio_to=CONSTANT, note="FastAPI + one raw asyncpg one-row INSERT (autocommit)"),
    # coopgig.
    Endpoint("GET /healthz", "app", path="/healthz", ratio_to=CONSTANT,
             note="coopgig, no DB: middleware + FastAPI (compare with ref: constant)"),
    Endpoint("GET /api/v1/me", "app", path="/api/v1/me", headers=_bearer("worker"), ratio_to=PK_SELECT,
             note="coopgig, worker token: JWT + session + user/coop/member join"),
    # Marketplace at scale (bench/seed_market.py).
    Endpoint("GET /api/v1/matches", "app", group="marketplace", needs=frozenset({"market"}),
             paths=lambda ctx: ctx.extras["matches_paths"], headers={"Authorization": "Bearer ${token_market_client}"},
             prepare=prepare_matches, check=_check_matches, warm_requests=4, verify=verify_matches,
             ratio_to=PK_SELECT, goal=0.25,
             note="client of a 1,000-worker cooperative: ranked, priced workers for a slot (200 query variants)"),
    Endpoint("POST /api/v1/bookings/{id}/accept", "app", method="POST", group="marketplace",
             needs=frozenset({"market"}), oneshot=oneshot_accept, expect_rps=1400, check=_check_accept,
             verify=verify_accept, ratio_to=INSERT, goal=0.40,
             note="each request accepts another offered booking, with that offer's worker's token"),
    # Payments (bench/bench_webhooks.py): the yardstick, the webhook, and what the webhook waits on.
    Endpoint(PGBENCH, "pgbench", group="payments", needs=frozenset({"pgbench"}), prepare=prepare_pgbench,
             run=run_pgbench, verify=verify_pgbench, note="pgbench -c 16 -j 2 on its own database (-s 10), same PostgreSQL server"),
    Endpoint("POST /api/v1/payments/stripe/webhook", "app", method="POST", group="payments",
             needs=frozenset({"market", "stripe"}), prepare=prepare_webhooks, oneshot=oneshot_webhook,
             expect_rps=600, check=_check_webhook, verify=verify_webhook, ratio_to=PGBENCH, goal=0.30,
             note="signed payment_intent.succeeded for a completed booking whose capture was requested: "
                  "re-reads the intent from localstripe, posts the capture to the ledger"),
    Endpoint("localstripe: GET payment_intent", "stripe", group="payments", needs=frozenset({"stripe"}),
             paths=_localstripe_paths, prepare=prepare_localstripe,
             headers={"Authorization": f"Bearer {bench_webhooks.STRIPE_TEST_API_KEY}"},
             note="localstripe alone: the retrieve (expand latest_charge.balance_transaction) the webhook makes"),
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


async def _connection_budget(admin_dsn: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        used = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        most = int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()
    return {"max": most, "used": int(used), "free": most - int(used)}


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
    # One listening socket per worker (SO_REUSEPORT, bench/serve.py), not uvicorn --workers' shared
    # one: wrk's connections then split evenly between the workers.
    cmd = [sys.executable, str(ROOT / "bench" / "serve.py"), app_ref, "--workers", str(workers), "--port", str(port),
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
    """User + system CPU time of every live process in a process group."""
    return sum(cpu for _, _, group, cpu in bench_profile.processes() if group == pgid)


def worker_cpu_seconds(pgid: int) -> dict[int, float]:
    """CPU seconds of each process of a server's group except its leader (the uvicorn workers)."""
    return {pid: cpu for pid, _, group, cpu in bench_profile.processes() if group == pgid and pid != pgid}


def balance_note(before: dict[int, float], after: dict[int, float]) -> str | None:
    """The uvicorn workers share one listening socket and wrk opens its connections at once: the
    kernel may hand most of them to one worker, which then saturates its core while the other idles
    (the app's throughput then drops, whatever its cost per request). Said when one worker did more
    than 60% of the work."""
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    total = sum(used.values())
    if len(used) < 2 or total <= 0:
        return None
    shares = sorted((u / total for u in used.values()), reverse=True)
    if shares[0] <= 0.6:
        return None
    return ("⚠ uneven load: the uvicorn workers did " + " / ".join(f"{x:.0%}" for x in shares)
            + " of the app's CPU (wrk's connections landed mostly on one): throughput is capped by one core")


def postgres_cpu_seconds() -> float:
    """User + system CPU time of every live PostgreSQL process (backends, background workers) on
    this machine: the server is shared, so only a difference over a run of one row means anything."""
    return sum(cpu for _, name, _, cpu in bench_profile.processes() if name == "postgres")


def cpu_times() -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs since boot (/proc/stat; (0, 0) elsewhere). Steal is
    time the hypervisor ran something else while this VM wanted the CPU: over a row, its share says
    how much slower than itself the machine was (this box has seen 0% and 30% in one session)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return fields[7], sum(fields)


def steal_note(before: tuple[int, int], after: tuple[int, int]) -> str | None:
    total = after[1] - before[1]
    share = (after[0] - before[0]) / total if total > 0 else 0.0
    if share < 0.01:
        return None
    return (f"⚠ CPU steal {share:.0%} during the measured run (the hypervisor ran something else on these "
            "cores): this row ran on a slower machine than the others may have")


def send(url: str, method: str, headers: dict[str, str], body: str | bytes | None,
         timeout: float = 60) -> tuple[int, str, float]:
    """One request (preflight, warming): (status, body (first MB), seconds)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, text = resp.status, resp.read(1 << 20).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read(1 << 20).decode(errors="replace")
    return status, text, time.perf_counter() - t


def preflight(url: str, method: str, headers: dict[str, str], body: str | bytes | None, expect: int,
              check: Callable[[int, str], str | None] | None = None) -> None:
    status, text, _ = send(url, method, headers, body)
    if status != expect:
        raise RuntimeError(f"preflight {method} {url}: expected {expect}, got {status}: {text[:500]}")
    problem = check(status, text) if check else None
    if problem:
        raise RuntimeError(f"preflight {method} {url}: {problem}: {text[:500]}")


def warm(url_paths: list[str], base: str, method: str, headers: dict[str, str], body, n: int,
         budget_s: float = 90.0) -> float:
    """n concurrent requests at a time until a whole round answers within 1 s; returns the seconds spent."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        for round_ in range(30):
            futures = [pool.submit(send, base + url_paths[(round_ * n + i) % len(url_paths)], method, headers, body)
                       for i in range(n)]
            results = [f.result() for f in futures]
            bad = [r for r in results if r[0] >= 400]
            if bad:
                raise RuntimeError(f"warming: {bad[0][0]}: {bad[0][1][:300]}")
            if max(r[2] for r in results) < 1.0 or time.perf_counter() - start > budget_s:
                break
    return time.perf_counter() - start


# ---- one endpoint -----------------------------------------------------------------------------


@dataclass
class Row:
    endpoint: Endpoint
    path: str
    result: loadgen.WrkResult | None
    new_sessions: int | None = None
    open_connections: int | None = None
    server_cpu_us_per_request: float | None = None
    postgres_cpu_us_per_request: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    round: int = 1  # --rounds: which pass over the endpoints measured it


def _host(base: str) -> str:
    return urllib.parse.urlsplit(base).netloc


def _write_oneshot(ctx: Context, ep: Endpoint, base: str, slug: str, specs: list[RawSpec], tag: str) -> Path:
    raw = ctx.workdir / f"{slug}.{tag}.raw"
    loadgen.write_raw_requests(raw, [loadgen.raw_request(m, p, _host(base), h, b) for m, p, h, b in specs])
    return raw


def bench_endpoint(ep: Endpoint, ctx: Context, args, wrk: str) -> Row:
    if ep.prepare is not None:
        asyncio.run(ep.prepare(ctx))
    slug = "".join(c if c.isalnum() else "_" for c in ep.name).strip("_")
    if ep.run is not None:  # measured by another tool (pgbench)
        if args.warmup > 0:
            ep.run(ctx, args, args.warmup)
        steal_before = cpu_times()
        result = ep.run(ctx, args, args.duration)
        stolen = steal_note(steal_before, cpu_times())
        (RESULTS / "raw").mkdir(exist_ok=True)
        (RESULTS / "raw" / f"{slug}.txt").write_text(result.raw)
        row = Row(ep, "—", result, notes=[stolen] if stolen else [])
        if ep.verify is not None:
            row.notes.append(asyncio.run(ep.verify(ctx, row)))
        return row
    base = {"ref": ctx.ref_url, "app": ctx.app_url, "stripe": ctx.stripe_url}[ep.target]
    notes: list[str] = []

    def wrk_run(script: Path, seconds: float) -> loadgen.WrkResult:
        return loadgen.run_wrk(wrk, base_url=base, script=script, duration=seconds,
                               connections=args.connections, threads=args.threads)

    if ep.oneshot is not None:
        first = asyncio.run(ep.oneshot(ctx, 1))[0]
        path = first[1]
        preflight(base + first[1], first[0], first[2], first[3], ep.expect_status, ep.check)
        script = ctx.workdir / f"{slug}.lua"
        if args.warmup > 0:
            n_warm = max(2 * args.connections, int(ep.expect_rps * args.warmup * 1.5))
            raw = _write_oneshot(ctx, ep, base, slug, asyncio.run(ep.oneshot(ctx, n_warm)), "warmup")
            script.write_text(loadgen.lua_script(loadgen.Request(raw_file=raw, lua_extra=ep.lua_extra),
                                                 threads=args.threads, name=ep.name))
            warm_res = wrk_run(script, args.warmup)
            rate = max(warm_res.requests_per_sec, 1.0)
            if warm_res.repeats:
                notes.append(f"the warm-up repeated {warm_res.repeats:,} requests ({n_warm:,} prepared)")
        else:
            rate = ep.expect_rps
        # Each wrk thread walks its own share, and threads do not go at the same pace (their
        # connections land on different uvicorn workers): a wide margin, and repeats are counted.
        n_run = int(rate * args.duration * 2.5) + 4 * args.connections
        raw = _write_oneshot(ctx, ep, base, slug, asyncio.run(ep.oneshot(ctx, n_run)), "run")
        script.write_text(loadgen.lua_script(loadgen.Request(raw_file=raw, lua_extra=ep.lua_extra),
                                             threads=args.threads, name=ep.name))
        prepared = n_run
    else:
        path, headers, body = ep.render(ctx)
        paths_file = None
        paths = None
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
            preflight(base + path, ep.method, headers, body, ep.expect_status, ep.check)
        if ep.warm_requests:
            spent = warm(paths or [path], base, ep.method, headers, body, ep.warm_requests)
            notes.append(f"caches warmed in {spent:.1f}s before the warm-up")
        if args.warmup > 0:
            wrk_run(script, args.warmup)
        prepared = None
    before = asyncio.run(_db_stats(args.admin_dsn, args.dbname))
    server = ctx.servers[ep.target]
    profiling = bench_profile.start(server.proc.pid, args.duration, RESULTS / "profiles", slug) \
        if args.profile and ep.target == "app" else None
    stripe = ctx.servers.get("stripe") if ep.target == "app" else None
    stripe_before = group_cpu_seconds(stripe.proc.pid) if stripe else 0.0
    cpu_before, pg_before, steal_before = group_cpu_seconds(server.proc.pid), postgres_cpu_seconds(), cpu_times()
    workers_before = worker_cpu_seconds(server.proc.pid)
    result = wrk_run(script, args.duration)
    if stolen := steal_note(steal_before, cpu_times()):
        notes.append(stolen)
    if uneven := balance_note(workers_before, worker_cpu_seconds(server.proc.pid)):
        notes.append(uneven)
    cpu = group_cpu_seconds(server.proc.pid) - cpu_before
    pg_cpu = postgres_cpu_seconds() - pg_before
    if stripe and (stripe_cpu := group_cpu_seconds(stripe.proc.pid) - stripe_before) > 0.05:
        notes.append(f"localstripe used {stripe_cpu / max(result.requests, 1) * 1e6:,.0f} µs of CPU per request")
    if profiling is not None:
        summary = bench_profile.finish(profiling, RESULTS / "profiles", slug)
        notes.append(f"profile (py-spy, bench/results/profiles/{slug}.summary.txt): "
                     + "; ".join(line.strip() for line in summary.splitlines()[2:7]))
    open_now = asyncio.run(_db_stats(args.admin_dsn, args.dbname))["open"]
    time.sleep(1.0)  # let backends flush their session counters
    after = asyncio.run(_db_stats(args.admin_dsn, args.dbname))
    (RESULTS / "raw").mkdir(exist_ok=True)
    (RESULTS / "raw" / f"{slug}.txt").write_text(result.raw)
    if prepared is not None:
        notes.append(f"{prepared:,} one-shot requests prepared for the run, {result.requests:,} sent, "
                     f"{result.repeats if result.repeats is not None else '?'} of them repeats")
        if result.repeats:
            notes.append(f"⚠ {result.repeats:,} requests were repeats (a wrk thread ran out of its share): "
                         "they are not the action measured")
    row = Row(ep, path, result, after["sessions"] - before["sessions"], open_now,
              cpu / max(result.requests, 1) * 1e6, pg_cpu / max(result.requests, 1) * 1e6, notes=notes)
    if ep.verify is not None:
        try:
            row.notes.append(asyncio.run(ep.verify(ctx, row)))
        except Exception as exc:  # noqa: BLE001  (a report line, never a reason to lose the row)
            row.notes.append(f"verify failed: {type(exc).__name__}: {exc}")
    return row


# ---- matching, looked at from inside --------------------------------------------------------


_LONG_ARRAY = re.compile(r"'\{([0-9a-f-]{36},){3}[^']*\}'")


async def explain_matches(ctx: Context, repeats: int = 10) -> str:
    """Where one matches request's time goes in process, on the route's own path: the candidate
    search from the supply index in memory (`SupplyIndex.search`, with its freshness read) vs the
    whole `priced_matches` (that search, ranking and one quote per match shown); and EXPLAIN
    (ANALYZE, BUFFERS) of the route's one statement and of the supply index's loads. Written to
    bench/results/explain_matches.txt."""
    import asyncpg

    from app.db import Database
    from app.deps import PRINCIPAL
    from app.domain.periods import month_bounds
    from app.models import Service
    from app.models.marketplace import MAX_BOOKING_MINUTES
    from app.payouts.rate_card import RateCardCache
    from app.services import bookings, matching, supply

    m = ctx.market
    c = MATCHES_COOP
    _, lat, lon = m.city(c)
    starts = m.slot_day + dt.timedelta(hours=10)
    ends = starts + dt.timedelta(minutes=180)
    db = Database(ctx.settings)
    rate_cards = RateCardCache()
    index = supply.index_for(str(db.engine.url))
    coop = m.coop_ids[c]
    try:
        now = dt.datetime.now(dt.UTC)
        search = dict(cooperative_id=coop, starts_at=starts, ends_at=ends, lat=lat, lon=lon, now=now)
        async with db.sessionmaker(bind=db.autocommit) as s:
            service = await s.get(Service, m.service_ids[c][0])
            found = await index.search(db, service_id=service.id, **search)  # loads the cooperative
            t = time.perf_counter()
            for _ in range(repeats):
                found = await index.search(db, service_id=service.id, **search)
            search_ms = (time.perf_counter() - t) / repeats * 1e3
            held = index.held_check(coop)
            snapshot = matching.Snapshot(db, (index._by_cooperative[coop].version, False, held), now)
            # what the route's one statement reads besides the caller
            context = await bookings.search_context(s, service_id=service.id, cooperative_id=coop, at=now)
            priced_args = dict(cooperative_id=coop, service=context.service, starts_at=starts, duration_minutes=180,
                               lat=lat, lon=lon, now=now, limit=20, context=context, snapshot=snapshot)
            await bookings.priced_matches(s, rate_cards, **priced_args)  # builds the period's rate card (seconds)
            t = time.perf_counter()
            for _ in range(repeats):
                priced = await bookings.priced_matches(s, rate_cards, **priced_args)
            total_ms = (time.perf_counter() - t) / repeats * 1e3
    finally:
        await db.dispose()
    month_start, month_end = month_bounds(starts)
    one_statement = bookings.caller_and_search_context(PRINCIPAL)
    xmax, xip = supply.SupplyIndex.check_args(held)
    statements = [
        ("the route's one statement (caller, service, cooperative, fee schedule, supply freshness)",
         one_statement.sql, one_statement.args({
             "user_id": m.client_ids[c][0], "p_service": service.id, "p_cooperative": coop, "p_at": now,
             "p_held_xmax": xmax, "p_held_xip": xip})),
        ("the load of a cooperative's held bookings (when a change to them committed, or every "
         f"{supply.HELD_TTL_SECONDS:.0f} s)", supply._LOAD_HELD, (coop, supply.held_horizon(now))),
        ("the load of a cooperative's static half (only when its supply_version changed)", supply._LOAD, (coop,)),
        ("the per-search read of searches inside a transaction (creating or passing on a booking)",
         supply._PER_SEARCH,
         (coop, starts, ends, month_start, month_end, starts - dt.timedelta(minutes=MAX_BOOKING_MINUTES),
          [uuid.UUID(x) for x in found.member_ids.tolist()])),
    ]
    conn = await asyncpg.connect(ctx.ref_dsn)
    out, exec_ms = [], []
    try:
        for title, statement, params in statements:
            plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *params)
            lines = [r[0] for r in plan]
            exec_ms += [float(x.split(":")[1].split()[0]) for x in lines if x.startswith("Execution Time")]
            out.append(title + ":\n" + statement + "\n\n" + "\n".join(_LONG_ARRAY.sub("'{...}'", x) for x in lines))
    finally:
        await conn.close()
    text = (f"cooperative {m.coop_slugs[c]} ({m.plan.workers_per_coop} workers), slot {starts.isoformat()} + 180 min, "
            f"client at the centre of {m.city(c)[0]}\n"
            f"in process, mean of {repeats}: SupplyIndex.search {search_ms:.2f} ms ({len(found)} candidates); "
            f"priced_matches {total_ms:.2f} ms ({len(priced)} priced, as the API shows them)\n\n"
            + "\n\n----\n\n".join(out))
    (RESULTS / "explain_matches.txt").write_text(text)
    return (f"{len(found)} candidates per request here; in process: candidate search from memory "
            f"{search_ms:.2f} ms (with a freshness read of its own), priced_matches {total_ms:.2f} ms (the search "
            f"with the freshness the route's statement read, ranking and 20 quotes); EXPLAIN ANALYZE execution: "
            f"the route's one "
            f"statement {exec_ms[0]:.2f} ms, loads of held bookings {exec_ms[1]:.1f} ms and of the static half "
            f"{exec_ms[2]:.1f} ms, the in-transaction per-search read {exec_ms[3]:.2f} ms "
            f"(bench/results/explain_matches.txt)")


# ---- report -----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def render(rows: list[Row], meta: dict[str, str], extra: list[str] | None = None) -> str:
    """The markdown report. With several rounds (--rounds), one line per endpoint: the medians of its
    rounds (requests/s, p99, and the ratio, each round's against its own round's reference) and
    every round's ratio; the details list each round's row."""
    rounds = max((r.round for r in rows), default=1)
    by_key = {(r.round, r.endpoint.name): r for r in rows}

    def rps(round_no: int, name: str | None) -> float | None:
        r = by_key.get((round_no, name)) if name else None
        return r.result.requests_per_sec if r is not None and r.result is not None else None

    out = [f"# coopgig benchmark — {meta['date']}", "",
           " · ".join(f"{k}: {v}" for k, v in meta.items() if k != "date"), "",
           "| endpoint | requests/s | p99 ms | ratio | target | ratio is to |"
           + (" ratio per round |" if rounds > 1 else ""),
           "|---|---:|---:|---:|---:|---|" + ("---|" if rounds > 1 else "")]
    flagged = False
    for name in dict.fromkeys(r.endpoint.name for r in rows):
        mine = [r for r in rows if r.endpoint.name == name]
        ep = mine[0].endpoint
        done = [r for r in mine if r.result is not None]
        goal = f"≥ {ep.goal:.2f}" if ep.goal else ""
        if not done:
            out.append(f"| {ep.name} | failed | — | — | {goal} | {ep.ratio_to or ''} |" + (" |" if rounds > 1 else ""))
            flagged = True
            continue
        mark = ""
        if len(done) < len(mine) or any(
                r.result.non_2xx_3xx or r.result.socket_error_total or (ep.oneshot is not None and r.result.repeats)
                for r in done):
            mark, flagged = " ⚠", True
        ratios = [r.result.requests_per_sec / ref for r in done if (ref := rps(r.round, ep.ratio_to))]
        ratio = statistics.median(ratios) if ratios else None
        target = ""
        if ep.goal is not None:
            ok = ratio is not None and ratio >= ep.goal
            target = f"{goal} {'✓' if ok else '✗'}"
        unit = " (TPS)" if ep.target == "pgbench" else ""
        p99s = [r.result.p99_ms for r in done if r.result.p99_ms is not None]
        line = (f"| {ep.name} | {statistics.median(r.result.requests_per_sec for r in done):,.0f}{unit}{mark} | "
                f"{_fmt(statistics.median(p99s) if p99s else None, '.2f')} | "
                f"{_fmt(ratio, '.2f') if ep.ratio_to else ''} | {target} | {ep.ratio_to or ''} |")
        if rounds > 1:
            line += " " + (", ".join(f"{x:.2f}" for x in ratios) if ep.ratio_to else "") + " |"
        out.append(line)
    out.append("")
    out.append("ratio = requests/s of the row ÷ requests/s of the row named in the last column "
               "(pgbench: transactions/s). ✗ = below its target.")
    if flagged:
        out.append("⚠ = some responses were errors (non-2xx/3xx, pgbench: failed transactions) or socket errors, "
                   "one-shot requests were repeated, or the row failed: see the details below.")
    out += ["", "<details><summary>Details</summary>", "",
            "| endpoint | request | p50 ms | p90 ms | requests | non-2xx/3xx | socket errors | "
            "server CPU µs/req | PostgreSQL CPU µs/req | new DB sessions | DB conns open | what |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]

    def label(r: Row) -> str:
        return f"{r.endpoint.name} (round {r.round})" if rounds > 1 else r.endpoint.name

    for r in rows:
        res, ep = r.result, r.endpoint
        if res is None:
            out.append(f"| {label(r)} | — | — | — | — | — | — | — | — | — | — | FAILED: {r.error} |")
            continue
        if ep.oneshot is not None:
            path = f"{ep.method} {r.path} (…one-shot, one per request)"
        elif ep.run is not None:
            path = "pgbench TPC-B (built-in script)"
        else:
            path = ep.method + " " + (r.path if ep.paths is None and ep.lua_path is None else f"{r.path} (…{ep.pick})")
        out.append(f"| {label(r)} | {path} | {_fmt(res.latency_ms.get(50), '.2f')} | "
                   f"{_fmt(res.latency_ms.get(90), '.2f')} | {res.requests:,} | {res.non_2xx_3xx} | "
                   f"{res.socket_error_total} | {_fmt(r.server_cpu_us_per_request, ',.0f')} | "
                   f"{_fmt(r.postgres_cpu_us_per_request, ',.0f')} | "
                   f"{_fmt(r.new_sessions, 'd')} | {_fmt(r.open_connections, 'd')} | {ep.note} |")
    notes = [(label(r), n) for r in rows for n in r.notes]
    if notes or extra:
        out += ["", "Notes:", ""]
        out += [f"- {line}" for line in (extra or [])]
        out += [f"- **{name}**: {n}" for name, n in notes]
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
    p.add_argument("--threads", type=int, default=2, help="wrk threads (and pgbench -j)")
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers of each server")
    p.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="only endpoints whose name or group (core, marketplace, payments) contains TEXT "
                        "(repeatable; the references their ratios need always run)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="size of the seeded marketplace: 1.0 = 100 cooperatives, 100,000 workers, 1,000,000 "
                        "past bookings; 0.1 = 10 cooperatives of 1,000 workers (default: %(default)s)")
    p.add_argument("--pgbench-scale", type=int, default=10, help="pgbench -i -s (default: %(default)s)")
    p.add_argument("--pgbench-clients", type=int, default=16, help="pgbench -c (default: %(default)s)")
    p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the coopgig server, e.g. DB_POOL_SIZE=20 (repeatable; "
                        "for experiments: say so when you quote the numbers)")
    p.add_argument("--profile", action="store_true",
                   help="sample the app's workers with py-spy during each measured run (bench/profile.py; "
                        "it costs the app a little throughput)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every selected row this many times, in turn (references and endpoints "
                        "interleaved), and report each ratio's median over the rounds, each round's "
                        "ratio taken against its own round's reference (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list the endpoints and exit")
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 9:
        p.error("--rounds must be between 1 and 9")
    if args.duration < 1 or args.duration > 600:
        p.error("--duration must be between 1 and 600 seconds")
    if args.warmup < 0 or args.warmup > 120:
        p.error("--warmup must be between 0 and 120 seconds")
    if args.connections < 1 or args.threads < 1 or args.connections < args.threads:
        p.error("need connections >= threads >= 1")
    if not 0 < args.scale <= 1.0:
        p.error("--scale must be in (0, 1]")
    if not 1 <= args.pgbench_scale <= 100 or not 1 <= args.pgbench_clients <= 64:
        p.error("--pgbench-scale must be 1-100 and --pgbench-clients 1-64")
    if any("=" not in kv for kv in args.app_env):
        p.error("--app-env takes KEY=VALUE")
    return args


def select(only: list[str]) -> list[Endpoint]:
    """The endpoints --only names, the references their ratios need, and the two yardsticks."""
    by_name = {ep.name: ep for ep in ENDPOINTS}
    wanted = {ep.name for ep in ENDPOINTS if not only
              or any(t.lower() in ep.name.lower() or t.lower() == ep.group for t in only)}
    wanted |= {CONSTANT, PK_SELECT}
    while True:
        more = {by_name[n].ratio_to for n in wanted if by_name[n].ratio_to} - wanted
        if not more:
            break
        wanted |= more
    return [ep for ep in ENDPOINTS if ep.name in wanted]


def _exit_on_sigterm(*_) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for ep in ENDPOINTS:
            print(f"{ep.name:<40} {ep.group:<12} {ep.target:<8} {ep.note}")
        return 0
    names = [ep.name for ep in ENDPOINTS]
    if len(set(names)) != len(names):
        raise SystemExit("bench: two endpoints have the same name")
    selected = select(args.only)
    needs = set().union(*(ep.needs for ep in selected))
    if "stripe" in needs and (why := bench_webhooks.localstripe_available()):
        raise SystemExit(f"bench: the payments group needs localstripe: {why}")

    parsed = _check_database_url(args.database_url)
    args.parsed = parsed
    args.dbname = parsed.database
    args.admin_dsn = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    wrk = loadgen.ensure_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / "work"
    workdir.mkdir(exist_ok=True)
    for old in workdir.glob("*.raw"):
        old.unlink()

    # A SIGTERM (or a CI timeout) must still stop the servers and drop the database.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    from app import migrate
    from app.config import Settings

    jwt_secret = secrets.token_urlsafe(48)
    webhook_secret = "whsec_bench_" + secrets.token_hex(16)
    settings = Settings(environment="development", database_url=args.database_url,
                        password_hash_profile="CHEAPEST", jwt_secret=jwt_secret,
                        access_token_ttl_seconds=TOKEN_TTL_SECONDS, log_level="WARNING")
    ref_dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    ctx = Context(database_url=args.database_url, ref_dsn=ref_dsn, settings=settings, workdir=workdir, args=args,
                  webhook_secret=webhook_secret)

    servers: list[Server] = []
    rows: list[Row] = []
    extra: list[str] = []
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"bench: warning: the machine is busy (load average {load_before[0]:.2f}); numbers will be noisy",
              flush=True)
    print(f"bench: database {parsed.database} (fresh), wrk {args.threads} threads / {args.connections} "
          f"connections, {args.warmup:g}s warm-up + {args.duration:g}s per endpoint; "
          f"{len(selected)} rows: {', '.join(ep.name for ep in selected)}", flush=True)
    recreate_database(parsed)
    budget = asyncio.run(_connection_budget(args.admin_dsn))
    if budget["free"] < 70:
        print(f"bench: warning: PostgreSQL has max_connections {budget['max']} and {budget['used']} in use "
              f"elsewhere: the servers' pools may not all fit (errors 'too many clients')", flush=True)
    db_version = "?"
    try:
        migrate.upgrade(args.database_url)
        asyncio.run(seed(ctx))
        asyncio.run(reference_app.prepare(ref_dsn))
        if "market" in needs:
            plan = seed_market.plan_for(args.scale)
            print(f"bench: seeding the marketplace (--scale {args.scale:g}: {plan.cooperatives} cooperatives, "
                  f"{plan.workers:,} workers, {plan.bookings:,} past bookings) ...", flush=True)
            ctx.market = asyncio.run(seed_market.seed(args.database_url, scale=args.scale))
            t = ctx.market.timings
            print("bench: seeded in " + f"{t['total']:.1f}s (" +
                  ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "total") + ")", flush=True)
            extra.append(f"marketplace seeded in {t['total']:.1f}s at --scale {args.scale:g} (COPY; "
                         + ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if k != "total") + "): "
                         + ", ".join(f"{k} {v:,}" for k, v in ctx.market.rows.items()))

        base_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        app_port = free_port()
        ref_port = free_port({app_port})
        stripe_env = {}
        if "stripe" in needs:
            stripe_port = free_port({app_port, ref_port})
            ls = bench_webhooks.start_localstripe(stripe_port, RESULTS / "logs" / "localstripe.log")
            servers.append(Server("localstripe", ls.proc, ls.url, ls.log))
            ctx.stripe_url = ls.url
            ctx.servers["stripe"] = servers[-1]
            stripe_env = {"STRIPE_API_KEY": bench_webhooks.STRIPE_TEST_API_KEY, "STRIPE_API_BASE": ls.url}
        app_server = start_server("app", "app.main:app", app_port, {
            **base_env, "DATABASE_URL": args.database_url, "JWT_SECRET": jwt_secret, "LOG_LEVEL": "WARNING",
            "ENVIRONMENT": "development", "ACCESS_TOKEN_TTL_SECONDS": str(TOKEN_TTL_SECONDS),
            "STRIPE_WEBHOOK_SECRET": webhook_secret, **stripe_env,
            **dict(kv.split("=", 1) for kv in args.app_env)}, args.workers)
        servers.append(app_server)
        ref_server = start_server("reference", "bench.reference_app:app", ref_port, {
            **base_env, "REF_DATABASE_URL": ref_dsn}, args.workers)
        servers.append(ref_server)
        wait_ready(app_server, "/healthz")
        wait_ready(ref_server, "/ref/constant")
        ctx.app_url, ctx.ref_url = app_server.url, ref_server.url
        ctx.servers.update(app=app_server, ref=ref_server)

        passes = [(n, ep) for n in range(1, args.rounds + 1) for ep in selected]
        for i, (round_no, ep) in enumerate(passes):
            if ref_server.proc.poll() is None and all(e.target != "ref" for _, e in passes[i:]):
                # PostgreSQL's connections are few (max_connections, shared with anything else on the
                # server): the reference app's pools are not needed any more.
                stop_server(ref_server)
            label = f" (round {round_no}/{args.rounds})" if args.rounds > 1 else ""
            print(f"bench: {ep.name}{label} ...", end=" ", flush=True)
            try:
                row = bench_endpoint(ep, ctx, args, wrk)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001  (one failed row must not lose the others)
                row = Row(ep, "—", None, error=f"{type(exc).__name__}: {str(exc)[:600]}", round=round_no)
                print(f"FAILED: {row.error}", flush=True)
                rows.append(row)
                continue
            row.round = round_no
            rows.append(row)
            res = row.result
            print(f"{res.requests_per_sec:,.0f} req/s, p99 {_fmt(res.p99_ms, '.2f')} ms"
                  + (f", {res.non_2xx_3xx} non-2xx" if res.non_2xx_3xx else ""), flush=True)
            for n in row.notes:
                print(f"bench:   {n}", flush=True)
        db_version = asyncio.run(_db_stats(args.admin_dsn, args.dbname))["version"]
    finally:
        for server in reversed(servers):
            stop_server(server)
        drop_database(parsed)
        if "pgbench" in needs:
            bench_webhooks.pgbench_drop(parsed)

    load_after = os.getloadavg()
    meta = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": _git_rev(),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "PostgreSQL": db_version,
        "load": f"{loadgen.wrk_version(wrk).split(' [')[0]}, {args.threads} threads, {args.connections} "
                f"connections, {args.warmup:g}s warm-up + {args.duration:g}s each",
        "servers": f"uvicorn --workers {args.workers} each, wrk on the same machine",
        **({"scale": f"{args.scale:g}"} if "market" in needs else {}),
        **({"rounds": f"{args.rounds}, interleaved; each ratio is the median of its rounds' ratios"}
           if args.rounds > 1 else {}),
        "load average (1/5/15 min)": f"{'/'.join(f'{x:.2f}' for x in load_before)} before, "
                                     f"{'/'.join(f'{x:.2f}' for x in load_after)} after",
        **({"app env": " ".join(args.app_env)} if args.app_env else {}),
    }
    report = render(rows, meta, extra)
    print()
    print(report)
    (RESULTS / "latest.md").write_text(report)
    (RESULTS / "latest.json").write_text(json.dumps({"meta": meta, "notes": extra, "rows": [
        {"endpoint": r.endpoint.name, "group": r.endpoint.group, "target": r.endpoint.target,
         "method": r.endpoint.method, "path": r.path, "error": r.error,
         "ratio_to": r.endpoint.ratio_to, "goal": r.endpoint.goal, "notes": r.notes, "round": r.round,
         **({} if r.result is None else {
             "requests_per_sec": r.result.requests_per_sec, "latency_ms": r.result.latency_ms,
             "requests": r.result.requests, "non_2xx_3xx": r.result.non_2xx_3xx,
             "socket_errors": r.result.socket_errors, "new_db_sessions": r.new_sessions,
             "server_cpu_us_per_request": r.server_cpu_us_per_request,
             "postgres_cpu_us_per_request": r.postgres_cpu_us_per_request})} for r in rows]}, indent=2))
    print(f"bench: written to {RESULTS / 'latest.md'}")
    return 1 if any(r.result is None or r.result.non_2xx_3xx for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
