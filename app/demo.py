"""Demo data: one cooperative around Lyon with services, staff, board, 200 worker-members with
rates and availability, and clients — enough for matching to have something to show. Idempotent."""
from __future__ import annotations

import random
from datetime import timedelta

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import utcnow
from app.models import AvailabilityWindow, Member, Offering, Service, User
from app.security import hash_password
from app.services import audit, tenancy

DEMO_SLUG = "demo"
DEMO_PASSWORD = "coopgig-demo-2026"
LYON = (45.7640, 4.8357)
WORKERS = 200
SERVICES = [("Home cleaning", 2000, 2200), ("Gardening", 2000, 2600), ("Tutoring", 0, 3000),
            ("Bike repair", 2000, 2800), ("Home help for the elderly", 550, 2400)]
PEOPLE = [
    ("staff", "staff@demo.coopgig.org", "Camille (support)"),
    ("board", "board@demo.coopgig.org", "Dominique (board)"),
    ("worker", "amina@demo.coopgig.org", "Amina"),
    ("worker", "bastien@demo.coopgig.org", "Bastien"),
    ("worker", "chloe@demo.coopgig.org", "Chloé"),
    ("client", "client1@demo.coopgig.org", "Hélène"),
    ("client", "client2@demo.coopgig.org", "Karim"),
]
FIRST_NAMES = ["Léa", "Hugo", "Inès", "Lucas", "Jade", "Nathan", "Zoé", "Yanis", "Manon", "Adam", "Sarah",
               "Louis", "Lina", "Gabriel", "Emma", "Rayan", "Chloé", "Malik", "Camille", "Théo"]


async def seed(session: AsyncSession, settings: Settings) -> list[tuple[str, str, str]]:
    """Create what is missing of the demo cooperative; return (role, email, password) for each login."""
    coop = await tenancy.cooperative_by_slug(session, DEMO_SLUG)
    if coop is None:
        coop = await tenancy.create_cooperative(session, slug=DEMO_SLUG, name="Coopgig Demo (Lyon)",
                                                iban="FR7630006000011234567890189", bic="AGRIFRPP")
    existing = {s.name: s for s in (await session.execute(
        select(Service).where(Service.cooperative_id == coop.id))).scalars()}
    for name, vat, _ in SERVICES:
        if name not in existing:
            existing[name] = await tenancy.create_service(session, cooperative_id=coop.id, name=name,
                                                          vat_rate_bps=vat, actor_user_id=None)
    emails = set((await session.execute(select(User.email))).scalars())
    for role, email, name in PEOPLE:
        if email not in emails:
            await tenancy.create_user(session, settings, cooperative_slug=DEMO_SLUG, email=email,
                                      password=DEMO_PASSWORD, display_name=name, role=role)
    await _seed_workers(session, settings, coop.id, existing)
    return [(role, email, DEMO_PASSWORD) for role, email, _ in PEOPLE] + [
        ("worker", "worker001@demo.coopgig.org … worker200@", DEMO_PASSWORD)]


async def _seed_workers(session: AsyncSession, settings: Settings, coop_id, services: dict[str, Service]) -> None:
    """200 members spread within ~12 km of Lyon, each offering 1-3 services, free most of next week."""
    count = (await session.execute(select(func.count()).select_from(User).where(
        User.cooperative_id == coop_id, User.email.like("worker%@demo.coopgig.org")))).scalar_one()
    if count >= WORKERS:
        return
    rng = random.Random(2026)
    # One hash for all demo workers: they share the demo password, and 200 argon2 runs would be slow.
    password_hash = await run_in_threadpool(hash_password, DEMO_PASSWORD, settings)
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    for i in range(count + 1, WORKERS + 1):
        user = User(cooperative_id=coop_id, email=f"worker{i:03d}@demo.coopgig.org", password_hash=password_hash,
                    display_name=f"{rng.choice(FIRST_NAMES)} {chr(65 + i % 26)}.", role="worker")
        session.add(user)
        await session.flush()
        member = Member(cooperative_id=coop_id, user_id=user.id, stage=rng.choice(["cape", "cesa", "cesa", "associate"]),
                        lat=LYON[0] + rng.uniform(-0.1, 0.1), lon=LYON[1] + rng.uniform(-0.15, 0.15),
                        radius_km=rng.choice([5.0, 10.0, 15.0, 20.0]),
                        rating_sum=(n := rng.randint(0, 12)) * 4 + rng.randint(0, n), rating_count=n)
        session.add(member)
        await session.flush()
        for name, _, base_rate in rng.sample(SERVICES, rng.randint(1, 3)):
            session.add(Offering(cooperative_id=coop_id, member_id=member.id, service_id=services[name].id,
                                 hourly_rate_cents=base_rate + 100 * rng.randint(0, 15)))
        for d in range(1, 8):
            start = day + timedelta(days=d, hours=rng.choice([7, 8, 9]))
            session.add(AvailabilityWindow(cooperative_id=coop_id, member_id=member.id, starts_at=start,
                                           ends_at=start + timedelta(hours=rng.choice([8, 10, 12]))))
        audit.record(session, action="user.created", target_type="user", target_id=user.id,
                     cooperative_id=coop_id, actor_user_id=None, data={"role": "worker", "demo": True})
    await session.commit()
