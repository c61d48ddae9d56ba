"""Passwords (argon2id), access tokens (JWT, HS256) and opaque refresh tokens (stored as SHA-256)."""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import Settings
from app.errors import Invalid, Unauthorized

ALGORITHM = "HS256"
MIN_PASSWORD_LENGTH = 10
# A handful of the most common passwords: length alone does not stop "password123".
_COMMON = {
    "password123", "password1234", "1234567890", "12345678910", "qwertyuiop", "azertyuiop",
    "motdepasse", "motdepasse1", "iloveyou12", "0123456789", "aaaaaaaaaa", "changeme123",
}


@lru_cache(maxsize=4)
def _hasher(profile: str) -> PasswordHasher:
    return PasswordHasher.from_parameters(getattr(profiles, profile))


def hash_password(password: str, settings: Settings) -> str:
    return _hasher(settings.password_hash_profile).hash(password)


def verify_password(password: str, password_hash: str | None, settings: Settings) -> bool:
    """Check a password; with no hash (unknown user) burn the same work against a dummy hash."""
    hasher = _hasher(settings.password_hash_profile)
    target = password_hash or _dummy_hash(settings.password_hash_profile)
    try:
        hasher.verify(target, password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


@lru_cache(maxsize=4)
def _dummy_hash(profile: str) -> str:
    return _hasher(profile).hash(secrets.token_urlsafe(16))


def check_password_strength(password: str, *, email: str) -> None:
    """Refuse weak passwords with a 422 that says why (NIST 800-63B style: length + deny-list)."""
    lowered = password.lower()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"The password must have at least {MIN_PASSWORD_LENGTH} characters", code="weak_password")
    if lowered in _COMMON or len(set(password)) < 4:
        raise Invalid("The password is too common or too repetitive", code="weak_password")
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in lowered:
        raise Invalid("The password must not contain the email address", code="weak_password")


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    cooperative_id: uuid.UUID


def make_access_token(*, user_id: uuid.UUID, role: str, cooperative_id: uuid.UUID,
                      settings: Settings, now: datetime) -> str:
    claims = {
        "sub": str(user_id),
        "role": role,
        "coop": str(cooperative_id),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.access_token_ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def decode_access_token(token: str, settings: Settings) -> AccessClaims:
    """The verified claims of an access token (401 `token_expired` / `invalid_token` otherwise).

    A token already verified with the same key, audience and issuer is not verified again (a phone
    sends the same token with every request for 15 minutes): its claims are kept, per process, with
    its expiry, which is still checked on every use. Only successfully verified tokens are kept.
    """
    key = (token, settings.jwt_secret, settings.jwt_audience, settings.jwt_issuer)
    known = _VERIFIED.get(key)
    if known is not None:
        claims, expires_at = known
        if time.time() < expires_at:
            return claims
        raise Unauthorized("The access token has expired", code="token_expired")
    try:
        decoded = jwt.decode(
            token, settings.jwt_secret, algorithms=[ALGORITHM], audience=settings.jwt_audience,
            issuer=settings.jwt_issuer, options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
        claims = AccessClaims(uuid.UUID(decoded["sub"]), str(decoded["role"]), uuid.UUID(decoded["coop"]))
        expires_at = float(decoded["exp"])
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired", code="token_expired") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise Unauthorized("The access token is invalid", code="invalid_token") from None
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()  # bounded; a token verified again costs one signature check
    _VERIFIED[key] = (claims, expires_at)
    return claims


# Verified access tokens of this process: (token, key, audience, issuer) -> (claims, exp).
_VERIFIED: dict[tuple[str, str, str, str], tuple[AccessClaims, float]] = {}
_VERIFIED_MAX = 10_000


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    # A fast hash is right here: the token is 256 random bits, not a guessable password.
    return hashlib.sha256(token.encode()).hexdigest()
