"""SQLModel tables and their API shapes, one module per area. Importing this registers every table."""
from app.models.base import SQLModel
from app.models.fees import FeeScheduleVersion
from app.models.marketplace import (
    Appeal,
    AvailabilityWindow,
    Booking,
    BookingEvent,
    BookingOffer,
    HeldBookingChange,
    Offering,
    SupplyVersion,
    Review,
    Suspension,
)
from app.models.payments import IdempotencyKey, Refund, StripeEvent
from app.models.ledger import LedgerAccount, LedgerEntry, LedgerTransaction
from app.models.tenancy import (
    AuditEvent,
    Cooperative,
    CooperativePublic,
    Member,
    RefreshRequest,
    RefreshToken,
    Service,
    ServiceCreate,
    ServicePublic,
    TokenPair,
    User,
    UserProfilePublic,
    UserPublic,
    UserRegister,
)

__all__ = [
    "SQLModel", "IdempotencyKey", "Refund", "StripeEvent", "Appeal", "AvailabilityWindow", "Booking", "BookingEvent", "BookingOffer", "Offering", "SupplyVersion", "HeldBookingChange", "Review", "Suspension", "FeeScheduleVersion", "LedgerAccount", "LedgerEntry", "LedgerTransaction", "AuditEvent", "Cooperative", "CooperativePublic", "Member", "RefreshRequest", "RefreshToken",
    "Service", "ServiceCreate", "ServicePublic", "TokenPair", "User", "UserProfilePublic", "UserPublic",
    "UserRegister",
]
