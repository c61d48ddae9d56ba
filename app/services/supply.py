"""The supply index: matching's candidate search from memory, exact, on PostgreSQL.

Matching asks, for every search, which members of a cooperative offer the service, are active, are
available for the whole slot, hold no overlapping booking and reach the client (DESIGN.md
"Matching"). Probing that member by member in SQL cost more than everything else a search does,
so each process keeps, per cooperative, the half of it that changes rarely:

- **static half** (members with their account and place, offerings, availability windows), loaded
  in ONE statement (one snapshot) together with the cooperative's `supply_version`. Triggers bump
  that counter in the same transaction as any change to those rows (migration 0008), holding its
  row lock until commit, so versions follow commit order: an index loaded at the version a search
  reads is exactly what the database holds now;
- **held bookings** (worker, start, end, minutes of every booking in a holding state from a horizon
  on: the start of the month before the index was loaded), with the snapshot they were read at.
  Triggers write a `held_booking_change` row (cooperative, transaction) in any transaction that
  makes a booking enter or leave the holding states or moves a held one (migration 0010; not a
  start, a completion or a capture). The held bookings are up to date while no such row of the
  cooperative, from a transaction their snapshot did not see, is visible now: exact, in commit
  order, and an acceptance holds no shared row lock for it (a counter row would serialize them).
  They are reloaded at least every `HELD_TTL_SECONDS` too (the sweeper deletes day-old rows).

`GET /matches` (`SupplyIndex.search`) reads the static version and that check in the same statement
as the caller and the search context, reloads a half only if it is behind, and then needs no other
round trip: slots held over the slot and minutes booked in its month are computed on the arrays. A search whose
month or slot reaches before the horizon, and every search made inside a caller's transaction
(`SupplyIndex.pool`: creating a booking, passing it on), read the bookings of the candidates
instead, in the same round trip as the version, from one range of the cooperative's bookings by
start time (it relies on bookings spanning at most 12 hours, which PostgreSQL checks). Only loads
made outside any transaction (on `Database.driver()`) are kept for the held bookings: a load inside
a transaction could see a change that is later rolled back.

The filters are the SQL search's (app/services/matching.py), including its bounding-box prefilter
on each member's radius; the exact distance and the ranking stay in app/domain/matching.py. A test
checks both searches agree (tests/e2e/test_supply_index.py). SQLite keeps the SQL search.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from app.domain import matching, membership
from app.domain.periods import month_bounds
from app.models.marketplace import HOLDING_STATUSES, MAX_BOOKING_MINUTES

_ACTIVE = ", ".join(f"'{s}'" for s in sorted(membership.ACTIVE_STAGES))
_HOLDING = ", ".join(f"'{s}'" for s in HOLDING_STATUSES)
_VERSION = "COALESCE((SELECT version FROM supply_version WHERE cooperative_id = $1), 0)"

# The static half, one snapshot. Members as the SQL search filters them (active stage, not
# suspended, account active, placed); windows and offerings of those members only.
_LOAD = f"""
WITH m AS MATERIALIZED (
    SELECT m.id, u.display_name, m.lat, m.lon, m.radius_km, m.rating_sum, m.rating_count,
           m.fixed_monthly_gross_cents
    FROM member AS m JOIN app_user AS u ON u.id = m.user_id
    WHERE m.cooperative_id = $1 AND m.stage IN ({_ACTIVE}) AND NOT m.suspended AND u.is_active
      AND m.lat IS NOT NULL AND m.lon IS NOT NULL AND m.radius_km IS NOT NULL),
o AS MATERIALIZED (
    SELECT o.member_id, o.service_id, o.hourly_rate_cents FROM offering AS o JOIN m ON m.id = o.member_id
    WHERE o.cooperative_id = $1),
w AS MATERIALIZED (
    SELECT a.member_id, a.starts_at, a.ends_at FROM availability_window AS a JOIN m ON m.id = a.member_id)
SELECT {_VERSION} AS version,
       (SELECT array_agg(ROW(id, display_name, lat, lon, radius_km, rating_sum, rating_count,
                             fixed_monthly_gross_cents)) FROM m) AS members,
       (SELECT array_agg(ROW(member_id, service_id, hourly_rate_cents)) FROM o) AS offerings,
       (SELECT array_agg(ROW(member_id, starts_at, ends_at)) FROM w) AS windows
"""

# The dynamic half, per search, for the members the static half let through ($7): $2, $3 the
# slot; $4, $5 its month; $6 = slot start - the longest booking (a booking overlapping the slot
# starts after it), so one range of the index covers both.
_PER_SEARCH = f"""
SELECT {_VERSION} AS version, array_agg(b.worker_member_id) AS members, array_agg(b.minutes) AS minutes,
       array_agg(b.busy) AS busy
FROM (SELECT worker_member_id,
             COALESCE(sum(duration_minutes) FILTER (WHERE starts_at >= $4 AND starts_at < $5), 0) AS minutes,
             COALESCE(bool_or(starts_at < $3 AND ends_at > $2), false) AS busy
      FROM booking
      WHERE cooperative_id = $1 AND status IN ({_HOLDING}) AND worker_member_id = ANY($7::uuid[])
        AND starts_at >= LEAST($4, $6) AND starts_at < GREATEST($5, $3)
        AND ((starts_at >= $4 AND starts_at < $5) OR (starts_at < $3 AND ends_at > $2))
      GROUP BY worker_member_id) AS b
"""

# The held bookings from a horizon ($2) on, and the snapshot they are read at (the statement's),
# in one statement (an index-only scan of ix_booking_cooperative_id_starts_at); times as µs since
# the epoch.
_LOAD_HELD = f"""
SELECT pg_current_snapshot()::text AS snapshot,
       array_agg(worker_member_id) AS members,
       array_agg((extract(epoch FROM starts_at) * 1000000)::bigint) AS starts,
       array_agg((extract(epoch FROM ends_at) * 1000000)::bigint) AS ends,
       array_agg(duration_minutes) AS minutes
FROM booking
WHERE cooperative_id = $1 AND status IN ({_HOLDING}) AND starts_at >= $2
"""

# Did a transaction the held bookings' snapshot did not see change them? Not seen by a snapshot:
# a transaction from its xmax on ({xmax}), or one in progress when it was taken ({xip}); every
# other one had ended (MVCC shows this statement only the committed ones). Both are index ranges of
# the primary key. A NULL {xmax} (nothing loaded yet) answers false; the search then loads anyway.
HELD_CHANGED = ("EXISTS (SELECT 1 FROM held_booking_change WHERE cooperative_id = {coop} "
                "AND (xact >= {xmax} OR xact = ANY({xip})))")

# What a search needs to know it is fresh, when its caller's statement did not read it.
_FRESHNESS = (f"SELECT COALESCE((SELECT version FROM supply_version WHERE cooperative_id = $1), 0), "
              f"{HELD_CHANGED.format(coop='$1', xmax='$2::bigint', xip='$3::bigint[]')}")

# How long held bookings are kept at most (the sweeper deletes `held_booking_change` rows after a
# day, far beyond it, so a process never needs a deleted row).
HELD_TTL_SECONDS = 600.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _objects(values: list) -> np.ndarray:
    """A 1-D array of the Python objects themselves (never split into characters or sub-arrays)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@dataclass(frozen=True)
class CooperativeSupply:
    """One cooperative's static half, as arrays (position i = member i)."""

    version: int
    member_uuids: tuple[uuid.UUID, ...]
    positions: dict[uuid.UUID, int]
    display_names: np.ndarray  # object: the names themselves, taken for a search's members at C speed
    lat: np.ndarray
    lon: np.ndarray
    radius_km: np.ndarray
    member_id_array: np.ndarray  # str, for the ranking's ties
    rating_sum: np.ndarray
    rating_count: np.ndarray
    expected_gross: np.ndarray  # object: int or None
    offers: dict[uuid.UUID, tuple[np.ndarray, np.ndarray]]  # service -> (member positions, hourly rates)
    window_member: np.ndarray  # window -> member position
    window_start: np.ndarray   # µs since the epoch
    window_end: np.ndarray

    @classmethod
    def from_row(cls, row) -> CooperativeSupply:
        members = sorted(row["members"] or [], key=lambda m: m[0])
        uuids = tuple(uuid.UUID(str(m[0])) for m in members)
        positions = {u: i for i, u in enumerate(uuids)}
        by_service: dict[uuid.UUID, tuple[list[int], list[int]]] = {}
        for member_id, service_id, rate in row["offerings"] or []:
            at, rates = by_service.setdefault(uuid.UUID(str(service_id)), ([], []))
            at.append(positions[member_id])
            rates.append(rate)
        windows = row["windows"] or []
        return cls(
            version=row["version"], member_uuids=uuids, positions=positions,
            display_names=_objects([m[1] for m in members]),
            lat=np.array([m[2] for m in members], dtype=float), lon=np.array([m[3] for m in members], dtype=float),
            radius_km=np.array([m[4] for m in members], dtype=float),
            member_id_array=np.array([str(u) for u in uuids], dtype=str),
            rating_sum=np.array([m[5] for m in members], dtype=np.int64),
            rating_count=np.array([m[6] for m in members], dtype=np.int64),
            expected_gross=_objects([m[7] for m in members]),
            offers={s: (np.array(at, dtype=np.int64), np.array(rates, dtype=np.int64))
                    for s, (at, rates) in by_service.items()},
            window_member=np.array([positions[w[0]] for w in windows], dtype=np.int64),
            window_start=np.array([_micros(w[1]) for w in windows], dtype=np.int64),
            window_end=np.array([_micros(w[2]) for w in windows], dtype=np.int64),
        )


@dataclass(frozen=True)
class HeldBookings:
    """One cooperative's held bookings from `horizon` on, as arrays (position i = booking i), read at
    `snapshot` (PostgreSQL's text form `xmin:xmax:xip,...`)."""

    snapshot: str
    horizon: datetime
    loaded_at: float  # time.monotonic()
    members: tuple[uuid.UUID, ...]
    start_us: np.ndarray
    end_us: np.ndarray
    minutes: np.ndarray

    @classmethod
    def from_row(cls, row, horizon: datetime) -> HeldBookings:
        return cls(row["snapshot"], horizon, time.monotonic(), tuple(row["members"] or ()),
                   np.array(row["starts"] or (), dtype=np.int64), np.array(row["ends"] or (), dtype=np.int64),
                   np.array(row["minutes"] or (), dtype=np.int64))

    @property
    def xmax(self) -> int:
        """The first transaction id the snapshot did not see (it saw none above)."""
        return int(self.snapshot.split(":")[1])

    @property
    def xip(self) -> list[int]:
        """The transactions in progress when the snapshot was taken (it did not see them)."""
        listed = self.snapshot.split(":")[2]
        return [int(x) for x in listed.split(",")] if listed else []

    def expired(self) -> bool:
        return time.monotonic() - self.loaded_at > HELD_TTL_SECONDS


def held_horizon(now: datetime) -> datetime:
    """Where a load of held bookings starts: the first day of the month before `now`'s (UTC), so that
    any search of this month or later, whatever the client's UTC offset (a month starts up to 14 h
    earlier than in UTC) and however long a booking before the slot (12 h), finds all it needs."""
    this_month, _ = month_bounds(now.astimezone(UTC))
    return month_bounds(this_month - timedelta(days=1))[0]


class SupplyIndex:
    """The static halves and held bookings of one process, by cooperative (one per Database)."""

    def __init__(self) -> None:
        self._by_cooperative: dict[uuid.UUID, CooperativeSupply] = {}
        self._held: dict[uuid.UUID, HeldBookings] = {}
        # Held bookings' member positions in the static half they were mapped on.
        self._mapped: dict[uuid.UUID, tuple[CooperativeSupply, HeldBookings, np.ndarray]] = {}
        self.loads = 0  # how many times a cooperative was (re)loaded: for tests and the benchmark
        self.held_loads = 0  # the same, for held bookings

    def held_check(self, cooperative_id: uuid.UUID) -> HeldBookings | None:
        """The held bookings a search of this cooperative would use now: its caller's statement
        checks them (HELD_CHANGED with `check_args`) and hands them back to `search` in `freshness`."""
        return self._held.get(cooperative_id)

    @staticmethod
    def check_args(held: HeldBookings | None) -> tuple[int | None, list[int]]:
        """HELD_CHANGED's parameters (xmax, xip) for `held`."""
        return (None, []) if held is None else (held.xmax, held.xip)

    async def search(self, db, *, cooperative_id: uuid.UUID, service_id: uuid.UUID, starts_at: datetime,
                     ends_at: datetime, lat: float, lon: float, now: datetime,
                     freshness: tuple[int, bool, HeldBookings | None] | None = None) -> matching.Pool | None:
        """The same candidates as matching's SQL search, from memory only. `freshness` is what the
        caller's own statement (outside any transaction) read: the cooperative's static version, and
        HELD_CHANGED for the held bookings `held_check` gave it, with those held bookings (read here
        if not given). Exactly those held bookings are used if unchanged (never another set that
        another request installed meanwhile); a half behind is reloaded on `db.driver()`. None if
        the slot's month or the slot itself reaches before the held bookings' horizon: the caller
        then searches with `pool`."""
        if freshness is None:
            checked = self.held_check(cooperative_id)
            async with db.driver() as driver:
                version, changed = await driver.fetchrow(_FRESHNESS, cooperative_id, *self.check_args(checked))
            freshness = (version, changed, checked)
        static_version, held_changed, held = freshness
        supply = self._by_cooperative.get(cooperative_id)
        stale_held = held is None or held_changed or held.expired()
        if supply is None or supply.version < static_version or stale_held:
            async with db.driver() as driver:
                if supply is None or supply.version < static_version:
                    supply = await self._load(driver, cooperative_id)
                if stale_held:
                    held = await self._load_held(driver, cooperative_id, now)
        month_start, month_end = month_bounds(starts_at)
        if min(month_start, starts_at - timedelta(minutes=MAX_BOOKING_MINUTES)) < held.horizon:
            return None
        at, rates = self._static(supply, service_id=service_id, starts_at=starts_at, ends_at=ends_at, lat=lat,
                                 lon=lon, only_member=None, exclude=None)
        position = self._positions(cooperative_id, supply, held)
        known = position >= 0
        in_month = known & (held.start_us >= _micros(month_start)) & (held.start_us < _micros(month_end))
        booked = np.bincount(position[in_month], weights=held.minutes[in_month],
                             minlength=len(supply.member_uuids)).astype(np.int64)
        over_slot = known & (held.start_us < _micros(ends_at)) & (held.end_us > _micros(starts_at))
        busy = np.zeros(len(supply.member_uuids), dtype=bool)
        busy[position[over_slot]] = True
        keep = ~busy[at]
        return self._as_pool(supply, at[keep], rates[keep], booked[at[keep]])

    def _positions(self, cooperative_id: uuid.UUID, supply: CooperativeSupply, held: HeldBookings) -> np.ndarray:
        """Each held booking's member position in `supply` (-1: not a member matching can offer)."""
        mapped = self._mapped.get(cooperative_id)
        if mapped is not None and mapped[0] is supply and mapped[1] is held:
            return mapped[2]
        positions = supply.positions
        found = np.fromiter((positions.get(m, -1) for m in held.members), dtype=np.int64, count=len(held.members))
        self._mapped[cooperative_id] = (supply, held, found)
        return found

    async def _load_held(self, driver, cooperative_id: uuid.UUID, now: datetime) -> HeldBookings:
        horizon = held_horizon(now)
        held = HeldBookings.from_row(await driver.fetchrow(_LOAD_HELD, cooperative_id, horizon), horizon)
        self.held_loads += 1
        current = self._held.get(cooperative_id)
        if current is None or current.xmax <= held.xmax:  # concurrent loads: keep the later snapshot
            self._held[cooperative_id] = held
        return held

    @staticmethod
    def _as_pool(supply: CooperativeSupply, members: np.ndarray, rates: np.ndarray,
                 booked: np.ndarray) -> matching.Pool:
        return matching.Pool(
            supply.member_id_array[members], supply.display_names[members],
            supply.lat[members], supply.lon[members], supply.radius_km[members], rates,
            supply.rating_sum[members], supply.rating_count[members], booked,
            supply.expected_gross[members])

    async def pool(self, driver, *, cooperative_id: uuid.UUID, service_id: uuid.UUID, starts_at: datetime,
                   ends_at: datetime, lat: float, lon: float, only_member: uuid.UUID | None = None,
                   exclude: set[uuid.UUID] | None = None) -> matching.Pool:
        """The same candidates as matching's SQL search, with the minutes each booked in the slot's month.

        The static filters run on the index held; the per-search read (bookings of the members left)
        also returns the cooperative's version: if the index was behind, it is reloaded and the
        search done again (at most twice: versions only grow)."""
        month_start, month_end = month_bounds(starts_at)
        supply = self._by_cooperative.get(cooperative_id)
        if supply is None:
            supply = await self._load(driver, cooperative_id)
        for _ in range(3):
            at, rates = self._static(supply, service_id=service_id, starts_at=starts_at, ends_at=ends_at, lat=lat,
                                     lon=lon, only_member=only_member, exclude=exclude)
            searched = await driver.fetchrow(_PER_SEARCH, cooperative_id, starts_at, ends_at, month_start, month_end,
                                             starts_at - timedelta(minutes=MAX_BOOKING_MINUTES),
                                             [supply.member_uuids[i] for i in at.tolist()])
            if searched["version"] == supply.version:
                break
            supply = await self._load(driver, cooperative_id)
        else:  # pragma: no cover - supply changing faster than three round trips
            raise RuntimeError("the cooperative's supply kept changing during the search")
        booked = np.zeros(len(at), dtype=np.int64)
        keep = np.ones(len(at), dtype=bool)
        where = {member: k for k, member in enumerate(at.tolist())}
        positions = supply.positions
        for member_id, minutes, busy in zip(searched["members"] or (), searched["minutes"] or (),
                                            searched["busy"] or (), strict=True):
            k = where[positions[member_id]]
            booked[k] = minutes
            keep[k] = not busy
        return self._as_pool(supply, at[keep], rates[keep], booked[keep])

    async def _load(self, driver, cooperative_id: uuid.UUID) -> CooperativeSupply:
        supply = CooperativeSupply.from_row(await driver.fetchrow(_LOAD, cooperative_id))
        self.loads += 1
        current = self._by_cooperative.get(cooperative_id)
        if current is None or current.version <= supply.version:
            self._by_cooperative[cooperative_id] = supply
        return supply

    @staticmethod
    def _static(supply: CooperativeSupply, *, service_id: uuid.UUID, starts_at: datetime, ends_at: datetime,
                lat: float, lon: float, only_member: uuid.UUID | None,
                exclude: set[uuid.UUID] | None) -> tuple[np.ndarray, np.ndarray]:
        """Positions (and rates) of the members offering the service, available for the whole slot,
        inside the SQL search's bounding box on their own radius, `only_member`, not `exclude`d."""
        offered = supply.offers.get(service_id)
        if offered is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        at, rates = offered
        keep = np.zeros(len(supply.member_uuids), dtype=bool)
        start_us, end_us = _micros(starts_at), _micros(ends_at)
        keep[supply.window_member[(supply.window_start <= start_us) & (supply.window_end >= end_us)]] = True
        if only_member is not None:
            only = supply.positions.get(only_member)
            keep &= np.arange(len(keep)) == (only if only is not None else -1)
        for member_id in exclude or ():
            position = supply.positions.get(member_id)
            if position is not None:
                keep[position] = False
        radius = supply.radius_km[at]
        chosen = (keep[at] & (np.abs(supply.lat[at] - lat) * matching.KM_PER_DEGREE_LAT <= radius)
                  & (np.abs(supply.lon[at] - lon) * matching.km_per_degree_lon(lat) <= radius))
        return at[chosen], rates[chosen]


_INDEXES: dict[str, SupplyIndex] = {}


def index_for(database_url: str) -> SupplyIndex:
    """This process's index for a database (each process has its own; versions keep them exact)."""
    index = _INDEXES.get(database_url)
    if index is None:
        index = _INDEXES[database_url] = SupplyIndex()
    return index
