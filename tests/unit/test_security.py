"""Passwords, access tokens and refresh tokens (app/security.py), and the login's constant hashing work."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from argon2 import PasswordHasher, extract_parameters

from app.config import Settings
from app.errors import Invalid, Unauthorized
from app.models import User
from app.security import (
    _dummy_hash,
    check_password_strength,
    decode_access_token,
    hash_password,
    hash_refresh_token,
    make_access_token,
    new_refresh_token,
    verify_password,
)
from app.services import auth

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(_env_file=None, environment="test", password_hash_profile="CHEAPEST")


@pytest.fixture
def verify_calls(monkeypatch) -> list[str]:
    """Every call of argon2's PasswordHasher.verify, by the hash it checked against."""
    calls: list[str] = []
    real = PasswordHasher.verify

    def spy(self, hash, password):  # noqa: A002 - argon2's own parameter name
        calls.append(hash if isinstance(hash, str) else hash.decode())
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", spy)
    return calls


# ---- passwords ----------------------------------------------------------------------------------


def test_hash_then_verify(settings):
    hashed = hash_password(PASSWORD, settings)
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert hash_password(PASSWORD, settings) != hashed  # salted
    assert verify_password(PASSWORD, hashed, settings) is True
    assert verify_password(PASSWORD + "x", hashed, settings) is False
    assert verify_password(PASSWORD, "not-an-argon2-hash", settings) is False


def test_a_hash_made_under_another_profile_still_verifies(settings):
    strong = Settings(_env_file=None, environment="test", password_hash_profile="RFC_9106_LOW_MEMORY")
    hashed = hash_password(PASSWORD, strong)
    assert verify_password(PASSWORD, hashed, settings) is True


def test_an_unknown_user_never_verifies(settings):
    assert verify_password(PASSWORD, None, settings) is False
    assert verify_password("", None, settings) is False


def test_unknown_and_known_users_cost_one_argon2_verify_each(settings, verify_calls):
    hashed = hash_password(PASSWORD, settings)
    verify_password("wrong-password-123", hashed, settings)
    verify_password("wrong-password-123", None, settings)
    verify_password(PASSWORD, hashed, settings)
    assert len(verify_calls) == 3
    assert verify_calls[0] == hashed and verify_calls[2] == hashed
    # the unknown user is checked against a dummy hash with the same cost parameters as a real one
    assert verify_calls[1] != hashed
    assert extract_parameters(verify_calls[1]) == extract_parameters(hashed)


def test_the_dummy_hash_follows_the_configured_profile():
    cheap, strong = _dummy_hash("CHEAPEST"), _dummy_hash("RFC_9106_LOW_MEMORY")
    assert extract_parameters(strong).memory_cost > extract_parameters(cheap).memory_cost
    strong_settings = Settings(_env_file=None, environment="test",
                               password_hash_profile="RFC_9106_LOW_MEMORY")
    assert extract_parameters(strong) == extract_parameters(hash_password(PASSWORD, strong_settings))


class _Result:
    def __init__(self, user: User | None) -> None:
        self._user = user

    def scalar_one_or_none(self) -> User | None:
        return self._user


class _Session:
    """Just enough of an AsyncSession for auth.login: one lookup, then add/commit on success."""

    def __init__(self, user: User | None) -> None:
        self.user, self.added, self.commits = user, [], 0

    async def execute(self, _statement) -> _Result:
        return _Result(self.user)

    def add(self, obj) -> None:
        self.added.append(obj)

    async def commit(self) -> None:
        self.commits += 1


def _user(settings: Settings, **overrides) -> User:
    values = dict(id=uuid.uuid4(), cooperative_id=uuid.uuid4(), email="ada@example.org",
                  password_hash=hash_password(PASSWORD, settings), display_name="Ada", role="client",
                  is_active=True)
    values.update(overrides)
    return User(**values)


@pytest.mark.parametrize("case", ["unknown_email", "wrong_password", "inactive_account"])
async def test_login_failures_do_the_same_hashing_work(settings, verify_calls, case):
    user = None if case == "unknown_email" else _user(settings, is_active=case != "inactive_account")
    password = "wrong-password-123" if case == "wrong_password" else PASSWORD
    session = _Session(user)
    with pytest.raises(Unauthorized) as exc:
        await auth.login(session, settings, email="ada@example.org", password=password)
    assert exc.value.code == "invalid_credentials" and exc.value.status == 401
    assert exc.value.message == "Wrong email or password"
    assert len(verify_calls) == 1
    assert session.added == [] and session.commits == 0


async def test_login_success_is_one_verify_too(settings, verify_calls):
    user = _user(settings)
    session = _Session(user)
    pair = await auth.login(session, settings, email=" ADA@example.org ", password=PASSWORD)
    assert len(verify_calls) == 1
    assert session.commits == 1 and len(session.added) == 1
    stored = session.added[0]
    assert stored.user_id == user.id and stored.token_hash == hash_refresh_token(pair.refresh_token)
    claims = decode_access_token(pair.access_token, settings)
    assert (claims.user_id, claims.role, claims.cooperative_id) == (user.id, "client", user.cooperative_id)


# ---- password strength --------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["short-1", "password123", "PASSWORD123", "1234567890", "abababababab",
                                      "my-janedoe-pass"])
def test_weak_passwords_are_refused(password):
    with pytest.raises(Invalid) as exc:
        check_password_strength(password, email="janedoe@example.org")
    assert exc.value.code == "weak_password" and exc.value.status == 422
    assert password not in exc.value.message


@pytest.mark.parametrize("password", [PASSWORD, "Tr0ub4dor&3x", "ten chars!", "bob-is-my-uncle-7"])
def test_reasonable_passwords_pass(password):
    check_password_strength(password, email="bob@example.org")  # a 3-letter local part is not matched


# ---- access tokens ------------------------------------------------------------------------------


def _token(settings: Settings, now: datetime | None = None, **kwargs) -> tuple[str, uuid.UUID, uuid.UUID]:
    user_id, coop_id = uuid.uuid4(), uuid.uuid4()
    token = make_access_token(user_id=user_id, role="worker", cooperative_id=coop_id, settings=settings,
                              now=now or datetime.now(UTC), **kwargs)
    return token, user_id, coop_id


def test_access_token_round_trip(settings):
    token, user_id, coop_id = _token(settings)
    claims = decode_access_token(token, settings)
    assert (claims.user_id, claims.role, claims.cooperative_id) == (user_id, "worker", coop_id)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["exp"] - raw["iat"] == settings.access_token_ttl_seconds
    assert raw["iss"] == settings.jwt_issuer and raw["aud"] == settings.jwt_audience
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_two_tokens_for_the_same_user_differ(settings):
    now = datetime.now(UTC)
    user_id, coop_id = uuid.uuid4(), uuid.uuid4()
    a, b = (make_access_token(user_id=user_id, role="client", cooperative_id=coop_id, settings=settings,
                              now=now) for _ in range(2))
    assert a != b  # distinct jti


def test_an_expired_token_says_so(settings):
    issued = datetime.now(UTC) - timedelta(seconds=settings.access_token_ttl_seconds + 1)
    token, _, _ = _token(settings, now=issued)
    with pytest.raises(Unauthorized) as exc:
        decode_access_token(token, settings)
    assert exc.value.code == "token_expired" and exc.value.status == 401
    assert exc.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_token_about_to_expire_is_still_good(settings):
    issued = datetime.now(UTC) - timedelta(seconds=settings.access_token_ttl_seconds - 30)
    token, _, _ = _token(settings, now=issued)
    decode_access_token(token, settings)


@pytest.mark.parametrize("change", [
    {"jwt_secret": "another-secret-entirely-0123456789"},
    {"jwt_issuer": "someone-else"},
    {"jwt_audience": "another-api"},
])
def test_tokens_of_another_deployment_are_invalid(settings, change):
    other = Settings(_env_file=None, environment="test", **change)
    token, _, _ = _token(other)
    with pytest.raises(Unauthorized) as exc:
        decode_access_token(token, settings)
    assert exc.value.code == "invalid_token"


def _claims(settings: Settings, **overrides) -> dict:
    now = datetime.now(UTC)
    claims = {"sub": str(uuid.uuid4()), "role": "client", "coop": str(uuid.uuid4()),
              "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": int(now.timestamp()),
              "exp": int((now + timedelta(minutes=5)).timestamp())}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("overrides", [
    {"exp": None}, {"sub": None}, {"iat": None}, {"coop": None}, {"role": None},
    {"sub": "not-a-uuid"}, {"coop": "not-a-uuid"}, {"sub": 12345},
])
def test_tokens_with_missing_or_bad_claims_are_invalid(settings, overrides):
    token = jwt.encode(_claims(settings, **overrides), settings.jwt_secret, algorithm="HS256")
    with pytest.raises(Unauthorized) as exc:
        decode_access_token(token, settings)
    assert exc.value.code == "invalid_token"


def test_the_hand_made_claims_are_valid_as_they_are(settings):
    # control for the test above
    decode_access_token(jwt.encode(_claims(settings), settings.jwt_secret, algorithm="HS256"), settings)


@pytest.mark.parametrize("algorithm", ["none", "HS512"])
def test_only_hs256_is_accepted(settings, algorithm):
    key = None if algorithm == "none" else settings.jwt_secret + "-padding-for-hs512-keys-0123456789"
    token = jwt.encode(_claims(settings), key, algorithm=algorithm)
    with pytest.raises(Unauthorized) as exc:
        decode_access_token(token, settings)
    assert exc.value.code == "invalid_token"


@pytest.mark.parametrize("garbage", ["", "a", "a.b.c", "Bearer x", "é.é.é"])
def test_garbage_is_invalid(settings, garbage):
    with pytest.raises(Unauthorized) as exc:
        decode_access_token(garbage, settings)
    assert exc.value.code == "invalid_token"


# ---- refresh tokens -----------------------------------------------------------------------------


def test_refresh_tokens_are_random_and_stored_as_sha256():
    tokens = {new_refresh_token() for _ in range(100)}
    assert len(tokens) == 100
    token = next(iter(tokens))
    assert len(token) >= 43  # 32 random bytes, base64url
    digest = hash_refresh_token(token)
    assert digest == hash_refresh_token(token) and len(digest) == 64 and token not in digest
    assert hash_refresh_token(token + "x") != digest


# ---- verified tokens are kept per process -----------------------------------------------------


def test_a_verified_token_is_served_from_memory_until_it_expires(settings, monkeypatch):
    import app.security as security

    token, user_id, _ = _token(settings)
    first = decode_access_token(token, settings)
    verify_calls = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: verify_calls.append(1) or real_decode(*a, **k))
    assert decode_access_token(token, settings) == first and not verify_calls  # no second signature check
    # its expiry still holds, on the real clock
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    monkeypatch.setattr(security.time, "time", lambda: expires + 1)
    with pytest.raises(Unauthorized) as exc:
        decode_access_token(token, settings)
    assert exc.value.code == "token_expired"


@pytest.mark.parametrize("change", [
    {"jwt_secret": "another-secret-entirely-0123456789"},
    {"jwt_issuer": "someone-else"},
    {"jwt_audience": "another-api"},
])
def test_a_token_verified_for_one_deployment_is_not_accepted_by_another(settings, change):
    token, _, _ = _token(settings)
    decode_access_token(token, settings)  # verified and kept under this deployment's key
    other = settings.model_copy(update=change)
    with pytest.raises(Unauthorized) as exc:
        decode_access_token(token, other)
    assert exc.value.code == "invalid_token"


def test_a_refused_token_is_never_kept(settings):
    import app.security as security

    token, _, _ = _token(settings)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            decode_access_token(tampered, settings)
    assert not any(key[0] == tampered for key in security._VERIFIED)
