"""A marketplace at scale for the benchmark, bulk-loaded with asyncpg COPY into the real tables.

At `scale` 1.0: 100 cooperatives × 1,000 worker-members (100,000 workers) around five French cities,
each with offerings, availability windows for the coming week and 10 past completed bookings
(1,000,000 bookings), plus 20 clients and one staff user per cooperative. `scale` shrinks the number
of cooperatives first (each keeps 1,000 workers, so a cooperative's matching query is as hard at
0.1 as at 1.0), and below 0.01 the workers of the one cooperative left.

The tables are those the migrations made; every NOT NULL column is filled as the app would fill it
(bookings carry a real quote breakdown and frozen quote terms, from the period's OpenFisca rate
card). Nothing here goes through the app's services: it is COPY, then VACUUM ANALYZE and a
CHECKPOINT, so that autovacuum and the checkpointer do not run during the measurements.

    market = await seed(dsn, scale=1.0)          # bench/run.py calls this once
    python bench/seed_market.py --scale 0.1      # standalone: seed a database and print the timings

Also here: `offered_bookings` (bookings in status `offered`, each with an open offer to one worker,
for POST /bookings/{id}/accept) and `capture_requested_bookings` (completed bookings whose capture
was requested at the payment processor, for the webhook).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

# Cities the cooperatives are in (cooperative i is in CITIES[i % 5]); workers around the centre.
CITIES = [("Paris", 48.8566, 2.3522), ("Lyon", 45.7640, 4.8357), ("Marseille", 43.2965, 5.3698),
          ("Toulouse", 43.6047, 1.4442), ("Lille", 50.6292, 3.0573)]
# (name, VAT bps, share of the workers offering it). Service 0 is the one the benchmark asks for.
SERVICES = [("Home cleaning", 2000, 0.7), ("Gardening", 1000, 0.4), ("Tutoring", 2000, 0.3)]
RATES = list(range(2500, 4501, 100))  # hourly rates excl. VAT (all above the fair-pay floor)
DURATIONS = [60, 90, 120, 180, 240]
# Availability: each day of the next week with this probability, one window of these kinds.
WINDOW_DAY_PROBABILITY = 4 / 7
WINDOW_KINDS = [(8, 13), (13, 19), (8, 19)]
WORKERS_PER_COOP = 1000
BOOKINGS_PER_WORKER = 10
CLIENTS_PER_COOP = 20
SEED_PASSWORD_HASH_OF = "seeded-bench-password-9"  # nobody logs in with it; hashed once
SLOT_DAYS_AHEAD = 2  # the benchmark slot is on this day (UTC), inside the 08:00-19:00 windows
PLACEHOLDER_SCHEDULE = "00000000-0000-4000-8000-0000000000ff"


@dataclass
class Plan:
    cooperatives: int
    workers_per_coop: int
    bookings_per_worker: int = BOOKINGS_PER_WORKER
    clients_per_coop: int = CLIENTS_PER_COOP

    @property
    def workers(self) -> int:
        return self.cooperatives * self.workers_per_coop

    @property
    def bookings(self) -> int:
        return self.workers * self.bookings_per_worker


def plan_for(scale: float) -> Plan:
    if not 0 < scale <= 10:
        raise ValueError("scale must be in (0, 10]")
    total = max(10, round(100_000 * scale))
    coops = max(1, round(total / WORKERS_PER_COOP))
    return Plan(cooperatives=coops, workers_per_coop=max(10, total // coops))


@dataclass
class Worker:
    member_id: uuid.UUID
    user_id: uuid.UUID
    coop: int  # index into Market.coop_ids
    lat: float
    lon: float
    active: bool  # stage in cape/cesa/associate, not suspended, user active
    rates: dict[int, int]  # service index -> hourly rate excl. VAT


@dataclass
class Market:
    plan: Plan
    now: datetime
    slot_day: datetime  # 00:00 UTC of the benchmark day
    coop_ids: list[uuid.UUID]
    coop_slugs: list[str]
    coop_city: list[int]
    fee_schedule_ids: list[uuid.UUID]
    service_ids: list[list[uuid.UUID]]  # [coop][service index]
    client_ids: list[list[uuid.UUID]]  # [coop][i]
    staff_ids: list[uuid.UUID]
    workers: list[Worker]
    quote_json: dict[tuple[int, int, int], tuple[int, int, str, str]]  # (rate, minutes, vat) -> price, excl, breakdown, terms
    timings: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # rows prepared so far per kind (one-shot batches)

    def city(self, coop: int) -> tuple[str, float, float]:
        return CITIES[self.coop_city[coop]]

    def coop_workers(self, coop: int) -> list[Worker]:
        n = self.plan.workers_per_coop
        return self.workers[coop * n:(coop + 1) * n]

    def quote(self, coop: int, rate: int, minutes: int, vat: int) -> tuple[int, int, str, str]:
        """(price incl. VAT, price excl. VAT, breakdown JSON, quote terms JSON) at the coop's schedule."""
        price, excl, breakdown, terms = self.quote_json[(rate, minutes, vat)]
        return price, excl, breakdown, terms.replace(PLACEHOLDER_SCHEDULE, str(self.fee_schedule_ids[coop]))


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _quotes(now: datetime) -> dict[tuple[int, int, int], tuple[int, int, str, str]]:
    """Real quotes (the period's OpenFisca rate card, the founding fee schedule) for every combination
    of rate, duration and VAT the seed uses: the JSON the app itself would store."""
    from app.domain import fees
    from app.domain.periods import period_of
    from app.models.coop_settings import CooperativeSettings
    from app.payouts.rate_card import RateCardCache
    from app.services import quotes
    from app.services.fee_schedules import FOUNDING_SCHEDULE

    coop_settings = CooperativeSettings()
    card = await RateCardCache().get(period_of(now), quotes.employment_settings(coop_settings))
    schedule = fees.FeeSchedule(**{**FOUNDING_SCHEDULE, "contribution_tiers": ()})
    ctx = quotes.QuoteContext(uuid.UUID(PLACEHOLDER_SCHEDULE), schedule, card, "EUR",
                              coop_settings.default_expected_monthly_gross_cents)
    out = {}
    for vat in sorted({v for _, v, _ in SERVICES}):
        for rate in RATES:
            for minutes in DURATIONS:
                q = quotes.quote(ctx, hourly_rate_cents=rate, minutes=minutes, vat_rate_bps=vat)
                out[(rate, minutes, vat)] = (q.breakdown.price_cents, q.price_excl_vat_cents,
                                             json.dumps(q.breakdown.to_dict()), json.dumps(q.terms))
    return out


async def _copy(conn: asyncpg.Connection, table: str, columns: list[str], records, market_rows: dict) -> None:
    records = list(records) if not isinstance(records, list) else records
    await conn.copy_records_to_table(table, columns=columns, records=records)
    market_rows[table] = market_rows.get(table, 0) + len(records)


async def seed(database_url: str, *, scale: float = 1.0, now: datetime | None = None, rng_seed: int = 2026,
               log=print) -> Market:
    """Fill a migrated, otherwise empty database; returns what the endpoints need (ids, coordinates)."""
    from app.config import Settings
    from app.security import hash_password

    t_start = time.perf_counter()
    now = now or datetime.now(UTC)
    plan = plan_for(scale)
    rng = random.Random(rng_seed)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    slot_day = today + timedelta(days=SLOT_DAYS_AHEAD)
    quotes_task = asyncio.create_task(_quotes(now))  # OpenFisca loads in a thread meanwhile
    password_hash = hash_password(SEED_PASSWORD_HASH_OF, Settings(password_hash_profile="CHEAPEST"))
    founded = now - timedelta(days=400)
    timings: dict[str, float] = {}
    rows: dict[str, int] = {}

    conn = await asyncpg.connect(_dsn(database_url))
    try:
        await conn.execute("SET synchronous_commit = off")
        t = time.perf_counter()
        coop_ids = [uuid.uuid4() for _ in range(plan.cooperatives)]
        coop_slugs = [f"seed-coop-{i:03d}" for i in range(plan.cooperatives)]
        coop_city = [i % len(CITIES) for i in range(plan.cooperatives)]
        await _copy(conn, "cooperative", ["id", "slug", "name", "currency", "settings", "created_at"],
                    [(coop_ids[i], coop_slugs[i], f"Seed cooperative {i} ({CITIES[coop_city[i]][0]})", "EUR", "{}",
                      founded) for i in range(plan.cooperatives)], rows)
        from app.services.fee_schedules import FOUNDING_SCHEDULE

        fee_ids = [uuid.uuid4() for _ in coop_ids]
        fs = FOUNDING_SCHEDULE
        await _copy(conn, "fee_schedule", [
            "id", "cooperative_id", "effective_from", "contribution_rate_bps", "contribution_tiers",
            "processing_fee_payer", "processing_fee_bps", "processing_fee_fixed_cents",
            "min_fixed_monthly_gross_cents", "decided_by", "created_by_user_id", "created_at"],
            [(fee_ids[i], c, founded, fs["contribution_rate_bps"], json.dumps(fs["contribution_tiers"]),
              fs["processing_fee_payer"], fs["processing_fee_bps"], fs["processing_fee_fixed_cents"],
              fs["min_fixed_monthly_gross_cents"], "founding default (until the members vote)", None, founded)
             for i, c in enumerate(coop_ids)], rows)
        service_ids = [[uuid.uuid4() for _ in SERVICES] for _ in coop_ids]
        await _copy(conn, "service", ["id", "cooperative_id", "name", "vat_rate_bps", "created_at"],
                    [(service_ids[i][s], c, name, vat, founded) for i, c in enumerate(coop_ids)
                     for s, (name, vat, _) in enumerate(SERVICES)], rows)

        # Users: staff, clients, workers (one password hash for all: nobody logs in here).
        staff_ids = [uuid.uuid4() for _ in coop_ids]
        client_ids = [[uuid.uuid4() for _ in range(plan.clients_per_coop)] for _ in coop_ids]
        users = []
        for i, c in enumerate(coop_ids):
            users.append((staff_ids[i], c, f"staff@{coop_slugs[i]}.bench.example.org", password_hash,
                          f"Staff {i}", "staff", True, founded))
            users += [(u, c, f"client{j}@{coop_slugs[i]}.bench.example.org", password_hash, f"Client {i}-{j}",
                       "client", True, founded) for j, u in enumerate(client_ids[i])]
        workers: list[Worker] = []
        members = []
        offerings = []
        for i, c in enumerate(coop_ids):
            _, clat, clon = CITIES[coop_city[i]]
            kmlon = 111.32 * math.cos(math.radians(clat))
            for j in range(plan.workers_per_coop):
                uid, mid = uuid.uuid4(), uuid.uuid4()
                # Around the centre: most within 10 km, a few up to 25 km out.
                dist = min(25.0, abs(rng.gauss(0, 7.0)))
                angle = rng.random() * 2 * math.pi
                lat, lon = clat + dist * math.sin(angle) / 111.32, clon + dist * math.cos(angle) / kmlon
                stage = rng.choices(("cape", "cesa", "associate", "left"), (40, 30, 25, 5))[0]
                suspended = rng.random() < 0.02
                user_active = stage != "left" or rng.random() < 0.5
                count = rng.choice((0, 0, 1, 3, 5, 8, 12, 20, 35))
                rating_sum = sum(rng.choice((3, 4, 4, 5, 5, 5)) for _ in range(count))
                fixed = rng.random() < 0.1
                signed = founded + timedelta(days=rng.randrange(0, 300))
                users.append((uid, c, f"worker{j}@{coop_slugs[i]}.bench.example.org", password_hash,
                              f"Worker {i}-{j}", "worker", user_active, signed))
                members.append((mid, c, uid, stage, signed if stage != "cape" else None,
                                signed if stage in ("cesa", "associate") else None,
                                signed + timedelta(days=90) if stage == "associate" else None,
                                None, lat, lon, float(rng.choice((5, 8, 10, 12, 15, 20, 25))), None,
                                "fixed" if fixed else "full", rng.randrange(180_000, 300_000, 1000) if fixed else None,
                                rating_sum, count, suspended, signed))
                rates = {}
                for s, (_, _, share) in enumerate(SERVICES):
                    if rng.random() < share or (s == len(SERVICES) - 1 and not rates):
                        rates[s] = rng.choice(RATES)
                        offerings.append((uuid.uuid4(), c, mid, service_ids[i][s], rates[s], signed))
                workers.append(Worker(mid, uid, i, lat, lon,
                                      stage != "left" and not suspended and user_active, rates))
        await _copy(conn, "app_user", ["id", "cooperative_id", "email", "password_hash", "display_name", "role",
                                       "is_active", "created_at"], users, rows)
        await _copy(conn, "member", [
            "id", "cooperative_id", "user_id", "stage", "stage_signed_at", "cesa_signed_at", "associate_signed_at",
            "bio", "lat", "lon", "radius_km", "iban", "salary_mode", "fixed_monthly_gross_cents", "rating_sum",
            "rating_count", "suspended", "created_at"], members, rows)
        await _copy(conn, "offering", ["id", "cooperative_id", "member_id", "service_id", "hourly_rate_cents",
                                       "created_at"], offerings, rows)
        del users, members, offerings
        timings["cooperatives, users, members, offerings"] = time.perf_counter() - t

        t = time.perf_counter()
        windows = []
        for w in workers:
            c = coop_ids[w.coop]
            for d in range(7):
                if rng.random() < WINDOW_DAY_PROBABILITY:
                    a, b = rng.choice(WINDOW_KINDS)
                    day = today + timedelta(days=d)
                    windows.append((uuid.uuid4(), c, w.member_id, day + timedelta(hours=a), day + timedelta(hours=b)))
        await _copy(conn, "availability_window", ["id", "cooperative_id", "member_id", "starts_at", "ends_at"],
                    windows, rows)
        del windows
        timings["availability_window"] = time.perf_counter() - t

        t = time.perf_counter()
        quote_json = await quotes_task
        timings["quotes (OpenFisca rate card, waited for)"] = time.perf_counter() - t
        market = Market(plan, now, slot_day, coop_ids, coop_slugs, coop_city, fee_ids, service_ids, client_ids,
                        staff_ids, workers, quote_json, timings, rows)

        t = time.perf_counter()
        await _copy_past_bookings(conn, _dsn(database_url), market)
        timings["booking (past, completed)"] = time.perf_counter() - t

        t = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for table in ("cooperative", "fee_schedule", "service", "app_user", "member", "offering",
                      "availability_window", "booking"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        timings["VACUUM ANALYZE"] = time.perf_counter() - t
        t = time.perf_counter()
        await conn.execute("CHECKPOINT")
        timings["CHECKPOINT"] = time.perf_counter() - t
    finally:
        await conn.close()
    timings["total"] = time.perf_counter() - t_start
    return market


BOOKING_COLUMNS = [
    "id", "cooperative_id", "client_user_id", "service_id", "worker_member_id", "requested_member_id", "status",
    "starts_at", "ends_at", "duration_minutes", "lat", "lon", "address", "notes", "max_price_cents", "currency",
    "vat_rate_bps", "hourly_rate_cents", "price_cents", "authorized_cents", "price_excl_vat_cents", "breakdown",
    "fee_schedule_id", "quote_terms", "actual_minutes", "final_price_cents", "payment_provider",
    "payment_intent_id", "payment_client_secret", "payment_status", "captured_cents", "refunded_cents",
    "payment_issue", "cancelled_by", "cancel_reason", "offers_expire_at", "created_at", "updated_at"]


def _past_booking_rows(market: Market, part: int, parts: int):
    """Each worker's past bookings, one per day (never overlapping), the latest two days ago."""
    today = market.now.replace(hour=0, minute=0, second=0, microsecond=0)
    per = market.plan.bookings_per_worker
    spacing = max(1, 360 // per)  # spread over the last year
    for wi in range(part, len(market.workers), parts):
        w = market.workers[wi]
        c = w.coop
        coop_id, fee_id = market.coop_ids[c], market.fee_schedule_ids[c]
        clients = market.client_ids[c]
        services = list(w.rates.items())
        for k in range(per):
            s, rate = services[k % len(services)]
            vat = SERVICES[s][1]
            minutes = DURATIONS[(wi + k) % len(DURATIONS)]
            starts = today - timedelta(days=2 + k * spacing + wi % spacing, hours=-(8 + (wi + k) % 9))
            ends = starts + timedelta(minutes=minutes)
            price, excl, breakdown, terms = market.quote(c, rate, minutes, vat)
            created = starts - timedelta(days=3)
            yield (uuid.uuid4(), coop_id, clients[(wi + k) % len(clients)], market.service_ids[c][s], w.member_id,
                   None, "completed", starts, ends, minutes, w.lat + 0.01, w.lon - 0.01, f"{k + 1} rue du Seed",
                   None, None, "EUR", vat, rate, price, price, excl, breakdown, fee_id, terms, minutes, price,
                   "stripe", f"pi_seed_{wi:07d}_{k:03d}", None, "captured", price, 0, None, None, None,
                   created + timedelta(minutes=30), created, ends)


async def _copy_past_bookings(conn: asyncpg.Connection, dsn: str, market: Market) -> None:
    """1,000,000 rows at scale 1: two COPY streams, so that PostgreSQL uses both cores."""
    parts = 2

    async def one(part: int, c: asyncpg.Connection) -> int:
        n = 0
        batch = []
        for row in _past_booking_rows(market, part, parts):
            batch.append(row)
            if len(batch) >= 20_000:
                await c.copy_records_to_table("booking", columns=BOOKING_COLUMNS, records=batch)
                n += len(batch)
                batch = []
        if batch:
            await c.copy_records_to_table("booking", columns=BOOKING_COLUMNS, records=batch)
            n += len(batch)
        return n

    other = await asyncpg.connect(dsn)  # same server and database, second connection
    try:
        await other.execute("SET synchronous_commit = off")
        counts = await asyncio.gather(one(0, conn), one(1, other))
    finally:
        await other.close()
    market.rows["booking"] = market.rows.get("booking", 0) + sum(counts)


# ---- rows for one-shot endpoints (made just before each run) -----------------------------------


@dataclass
class Prepared:
    booking_id: uuid.UUID
    worker: Worker
    coop: int


def _offset_counter(market: Market, key: str, n: int) -> int:
    """A running count per kind of prepared rows, so batches never reuse a (worker, slot)."""
    start = market.counters.get(key, 0)
    market.counters[key] = start + n
    return start


async def offered_bookings(database_url: str, market: Market, n: int) -> list[Prepared]:
    """`n` bookings in status `offered` (payment authorized), each with one open offer to its own
    worker, expiring in 30 days. Workers are taken in turn among the active ones of every
    cooperative; a worker used again gets a slot on a later day (never overlapping). The slots start
    10 days ahead, after every other slot the benchmark uses."""
    active = [w for w in market.workers if w.active]
    start = _offset_counter(market, "offered", n)
    today = market.now.replace(hour=0, minute=0, second=0, microsecond=0)
    now = datetime.now(UTC)
    bookings, offers, events, out = [], [], [], []
    for j in range(start, start + n):
        w = active[j % len(active)]
        c = w.coop
        s, rate = next(iter(w.rates.items()))
        vat = SERVICES[s][1]
        minutes = 120
        price, excl, breakdown, terms = market.quote(c, rate, minutes, vat)
        starts = today + timedelta(days=10 + j // len(active), hours=9)
        bid = uuid.uuid4()
        expires = now + timedelta(days=30)
        bookings.append((bid, market.coop_ids[c], market.client_ids[c][j % market.plan.clients_per_coop],
                         market.service_ids[c][s], None, None, "offered", starts, starts + timedelta(minutes=minutes),
                         minutes, w.lat + 0.005, w.lon + 0.005, "3 place du Bench", None, None, "EUR", vat, None,
                         price, price, excl, breakdown, market.fee_schedule_ids[c], terms, None, None, "stripe",
                         f"pi_bench_offer_{bid.hex}", f"pi_bench_offer_{bid.hex}_secret_x", "authorized", 0, 0,
                         None, None, None, expires, now, now))
        why = json.dumps({"score": 0.8, "distance_km": 0.7, "formula": "bench"})
        offers.append((uuid.uuid4(), bid, market.coop_ids[c], w.member_id, "open", 1, 0.8, why, rate, price,
                       excl, breakdown, terms, expires, None, now))
        events.append((uuid.uuid4(), bid, None, "pending_payment", market.client_ids[c][0], "client",
                       json.dumps({"direct": False, "candidates": 1}), now, time.time_ns()))
        events.append((uuid.uuid4(), bid, "pending_payment", "offered", None, "system",
                       json.dumps({"payment": "authorized"}), now, time.time_ns()))
        out.append(Prepared(bid, w, c))
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("booking", columns=BOOKING_COLUMNS, records=bookings)
            await conn.copy_records_to_table("booking_offer", columns=[
                "id", "booking_id", "cooperative_id", "member_id", "status", "rank", "score", "why",
                "hourly_rate_cents", "price_cents", "price_excl_vat_cents", "breakdown", "quote_terms", "expires_at",
                "responded_at", "created_at"], records=offers)
            await conn.copy_records_to_table("booking_event", columns=[
                "id", "booking_id", "from_status", "to_status", "actor_user_id", "actor_role", "data", "created_at",
                "seq"], records=events)
        await conn.execute("ANALYZE booking_offer")
    finally:
        await conn.close()
    return out


@dataclass
class CaptureSpec:
    booking_id: uuid.UUID
    worker: Worker
    coop: int
    service: int
    rate: int
    minutes: int
    vat: int
    price: int  # what the intent must be captured for (the breakdown's price)
    excl: int
    breakdown: str
    terms: str
    starts_at: datetime


def capture_specs(market: Market, n: int) -> list[CaptureSpec]:
    """What `n` completed bookings awaiting their capture webhook will be (create their intents for
    `price`, then call `capture_requested_bookings`). Each has its own worker while there are enough;
    the slots are yesterday, every 3 hours from 00:00 UTC (never overlapping each other, nor the
    seeded past bookings, which end two days ago at the latest)."""
    start = _offset_counter(market, "captured", n)
    workers = market.workers
    yesterday = market.now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    out = []
    for j in range(start, start + n):
        w = workers[j % len(workers)]
        s, rate = next(iter(w.rates.items()))
        vat = SERVICES[s][1]
        minutes = DURATIONS[j % 4]  # <= 180 minutes: fits a 3-hour slot
        slot = j // len(workers)
        if slot >= 8:
            raise ValueError("too many capture bookings for this scale (8 slots per worker)")
        price, excl, breakdown, terms = market.quote(w.coop, rate, minutes, vat)
        starts = yesterday + timedelta(hours=3 * slot)
        out.append(CaptureSpec(uuid.uuid4(), w, w.coop, s, rate, minutes, vat, price, excl, breakdown, terms, starts))
    return out


async def capture_requested_bookings(database_url: str, market: Market, specs: list[CaptureSpec],
                                     intent_ids: list[str]) -> None:
    """Completed bookings whose capture was requested at the processor (status `completed`,
    payment `capture_requested`), each on its PaymentIntent: the webhook will post them to the ledger."""
    now = datetime.now(UTC)
    rows = []
    for i, (sp, pi) in enumerate(zip(specs, intent_ids, strict=True)):
        c = sp.coop
        # Each capture was requested at its own moment (one shared `updated_at` would make every
        # compare-and-set on it look alike to the planner, which is not what production sees).
        requested_at = now - timedelta(milliseconds=i)
        ends = sp.starts_at + timedelta(minutes=sp.minutes)
        rows.append((sp.booking_id, market.coop_ids[c], market.client_ids[c][sp.worker.coop % market.plan.clients_per_coop],
                     market.service_ids[c][sp.service], sp.worker.member_id, None, "completed", sp.starts_at, ends,
                     sp.minutes, sp.worker.lat, sp.worker.lon, "5 quai du Webhook", None, None, "EUR", sp.vat, sp.rate,
                     sp.price, sp.price, sp.excl, sp.breakdown, market.fee_schedule_ids[c], sp.terms, sp.minutes,
                     sp.price, "stripe", pi, None, "capture_requested", 0, 0, None, None, None,
                     sp.starts_at - timedelta(hours=1), sp.starts_at - timedelta(days=2), requested_at))
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        await conn.copy_records_to_table("booking", columns=BOOKING_COLUMNS, records=rows)
        # Statistics that know these rows, as autovacuum would have them in production (it may be
        # off on the benchmark's server): without them the planner takes the partial index on
        # pending payments for empty and scans it for every capture.
        await conn.execute("ANALYZE booking")
    finally:
        await conn.close()


async def ledger_accounts(database_url: str, market: Market) -> int:
    """Every cooperative's chart accounts and every member's activity account, as an established
    cooperative has them (so a capture posts to existing accounts instead of opening them)."""
    from app.domain import ledger as rules

    now = datetime.now(UTC)
    rows = []
    for c, coop_id in enumerate(market.coop_ids):
        for code, kind in rules.ACCOUNT_KINDS.items():
            rows.append((uuid.uuid4(), coop_id, "EUR", code, kind.value, None, now))
    for w in market.workers:
        code = rules.member_activity(str(w.member_id))
        rows.append((uuid.uuid4(), market.coop_ids[w.coop], "EUR", code, rules.account_kind(code).value,
                     w.member_id, now))
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        await conn.copy_records_to_table("ledger_account", columns=[
            "id", "cooperative_id", "currency", "code", "kind", "member_id", "created_at"], records=rows)
        await conn.execute("ANALYZE ledger_account")
    finally:
        await conn.close()
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Seed a migrated coopgig database with a marketplace (standalone).")
    p.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/coopgig_bench_seed")
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--keep", action="store_true", help="keep the database (default: drop it at the end)")
    args = p.parse_args(argv)
    from bench import run as bench_run
    from app import migrate

    parsed = bench_run._check_database_url(args.database_url)
    bench_run.recreate_database(parsed)
    try:
        t = time.perf_counter()
        migrate.upgrade(args.database_url)
        print(f"migrated in {time.perf_counter() - t:.1f}s")
        market = asyncio.run(seed(args.database_url, scale=args.scale))
        for k, v in market.timings.items():
            print(f"  {k:<45} {v:7.1f}s")
        print("rows:", ", ".join(f"{k} {v:,}" for k, v in market.rows.items()))
    finally:
        if not args.keep:
            bench_run.drop_database(parsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
