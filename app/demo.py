"""Demo data: one cooperative, its services, staff, board, worker-members and clients. Idempotent."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Service, User
from app.services import tenancy

DEMO_SLUG = "demo"
DEMO_PASSWORD = "coopgig-demo-2026"
SERVICES = [("Home cleaning", 2000), ("Gardening", 2000), ("Tutoring", 0), ("Bike repair", 2000),
            ("Home help for the elderly", 550)]
PEOPLE = [
    ("staff", "staff@demo.coopgig.org", "Camille (support)"),
    ("board", "board@demo.coopgig.org", "Dominique (board)"),
    ("worker", "amina@demo.coopgig.org", "Amina"),
    ("worker", "bastien@demo.coopgig.org", "Bastien"),
    ("worker", "chloe@demo.coopgig.org", "Chloé"),
    ("client", "client1@demo.coopgig.org", "Hélène"),
    ("client", "client2@demo.coopgig.org", "Karim"),
]


async def seed(session: AsyncSession, settings: Settings) -> list[tuple[str, str, str]]:
    """Create what is missing of the demo cooperative; return (role, email, password) for each login."""
    coop = await tenancy.cooperative_by_slug(session, DEMO_SLUG)
    if coop is None:
        coop = await tenancy.create_cooperative(session, slug=DEMO_SLUG, name="Coopgig Demo (Lyon)",
                                                iban="FR7630006000011234567890189", bic="AGRIFRPP")
    existing = {s.name for s in (await session.execute(
        select(Service).where(Service.cooperative_id == coop.id))).scalars()}
    for name, vat in SERVICES:
        if name not in existing:
            await tenancy.create_service(session, cooperative_id=coop.id, name=name, vat_rate_bps=vat,
                                         actor_user_id=None)
    emails = set((await session.execute(select(User.email))).scalars())
    for role, email, name in PEOPLE:
        if email not in emails:
            await tenancy.create_user(session, settings, cooperative_slug=DEMO_SLUG, email=email,
                                      password=DEMO_PASSWORD, display_name=name, role=role)
    return [(role, email, DEMO_PASSWORD) for role, email, _ in PEOPLE]
