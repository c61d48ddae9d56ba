"""Auth through the HTTP API (API.md "Auth"): registration, login, /me, refresh rotation, logout, tokens."""
from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import update

from app.db import utcnow
from app.models import RefreshToken, User
from app.security import make_access_token
from tests.factories import PASSWORD, login, make_cooperative, make_user

ROLES = ("client", "worker", "staff", "board", "admin")


def _register_body(coop: str, **overrides) -> dict:
    body = {"email": f"someone-{uuid.uuid4().hex[:8]}@example.org", "password": PASSWORD,
            "display_name": "Someone", "role": "client", "cooperative": coop}
    body.update(overrides)
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(account, settings, coop_id: uuid.UUID, **overrides) -> dict:
    now = datetime.now(UTC)
    claims = {"sub": account.id, "role": account.role, "coop": str(coop_id), "iss": settings.jwt_issuer,
              "aud": settings.jwt_audience, "iat": int(now.timestamp()),
              "exp": int((now + timedelta(minutes=5)).timestamp()), "jti": uuid.uuid4().hex}
    claims.update(overrides)
    return claims


async def _coop_id(db, user_id: str) -> uuid.UUID:
    async with db.sessionmaker() as s:
        return (await s.get(User, uuid.UUID(user_id))).cooperative_id


# ---- registration -------------------------------------------------------------------------------


async def test_register_client(client, db):
    coop = await make_cooperative(db)
    resp = await client.post("/auth/register", json=_register_body(
        coop, email="Alice@Example.org", display_name="Alice"))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    uuid.UUID(body["id"])
    assert body["email"] == "alice@example.org"
    assert body["display_name"] == "Alice" and body["role"] == "client" and body["cooperative"] == coop
    assert body.get("member_id") is None and body.get("membership_stage") is None
    assert "password" not in resp.text and "password_hash" not in body


async def test_register_worker_starts_in_cape_with_a_member_id(client, db):
    coop = await make_cooperative(db)
    resp = await client.post("/auth/register", json=_register_body(coop, role="worker"))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["role"] == "worker" and body["membership_stage"] == "cape"
    assert uuid.UUID(body["member_id"]) != uuid.UUID(body["id"])


@pytest.mark.parametrize("role", ["staff", "board", "admin"])
async def test_privileged_roles_cannot_self_register(client, db, role):
    coop = await make_cooperative(db)
    body = _register_body(coop, role=role)
    resp = await client.post("/auth/register", json=body)
    _assert_error(resp, 422, "validation_error")
    # and no account was made: the email cannot sign in
    resp = await client.post("/auth/token", data={"username": body["email"], "password": PASSWORD})
    _assert_error(resp, 401, "invalid_credentials")


async def test_duplicate_email_is_409(client, db):
    coop = await make_cooperative(db)
    body = _register_body(coop, email="dup@example.org")
    assert (await client.post("/auth/register", json=body)).status_code == 201
    _assert_error(await client.post("/auth/register", json=body), 409, "email_taken")


async def test_duplicate_email_differing_only_in_case_is_409(client, db):
    coop, other = await make_cooperative(db), await make_cooperative(db)
    assert (await client.post("/auth/register", json=_register_body(coop, email="case@example.org"))
            ).status_code == 201
    # Emails are unique across the deployment (a login names no cooperative).
    resp = await client.post("/auth/register", json=_register_body(other, email="CASE@Example.ORG",
                                                                     role="worker"))
    _assert_error(resp, 409, "email_taken")


async def test_concurrent_registrations_with_one_email_exactly_one_wins(client, db):
    coop = await make_cooperative(db)
    body = _register_body(coop, email="race@example.org")
    responses = await asyncio.gather(*(client.post("/auth/register", json=body) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    _assert_error(loser, 409, "email_taken")


@pytest.mark.parametrize("password", [
    "short1!",             # under 10 characters
    "password123",         # on the deny-list
    "aaaaaaaaaaaaaaaaaaa",  # too repetitive
    "xx-johndoe-2024!",    # contains the email's local part
])
async def test_weak_password_is_422(client, db, password):
    coop = await make_cooperative(db)
    body = _register_body(coop, email="johndoe@example.org", password=password)
    resp = await client.post("/auth/register", json=body)
    _assert_error(resp, 422, "weak_password")
    assert password not in resp.text


async def test_unknown_cooperative_is_422(client, db):
    await make_cooperative(db)
    resp = await client.post("/auth/register", json=_register_body("no-such-coop"))
    _assert_error(resp, 422, "unknown_cooperative")


# ---- login and /me ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_login_and_me_for_every_role(client, db, settings, role):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop, role=role, display_name=f"The {role}")
    tokens = await login(client, account.email)
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == settings.access_token_ttl_seconds
    assert tokens["access_token"] and tokens["refresh_token"]

    resp = await client.get("/me", headers=_bearer(tokens["access_token"]))
    assert resp.status_code == 200, resp.text
    me = resp.json()
    assert me["id"] == account.id and me["email"] == account.email
    assert me["display_name"] == f"The {role}" and me["role"] == role and me["cooperative"] == coop
    if role == "worker":
        assert me["member_id"] == account.member_id and me["membership_stage"] == "cape"
    else:
        assert me.get("member_id") is None and me.get("membership_stage") is None
    assert "password_hash" not in me


async def test_login_email_is_case_insensitive(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    tokens = await login(client, f"  {account.email.upper()} ")
    me = await client.get("/me", headers=_bearer(tokens["access_token"]))
    assert me.json()["id"] == account.id


async def test_wrong_password_and_unknown_email_look_the_same(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    wrong = await client.post("/auth/token",
                              data={"username": account.email, "password": "not-the-password-1"})
    unknown = await client.post("/auth/token", data={"username": "nobody@example.org", "password": PASSWORD})
    _assert_error(wrong, 401, "invalid_credentials")
    _assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate") == "Bearer"


async def test_unsupported_grant_type_is_422(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    resp = await client.post("/auth/token", data={"username": account.email, "password": PASSWORD,
                                                  "grant_type": "client_credentials"})
    _assert_error(resp, 422, "unsupported_grant_type")


# ---- refresh and logout -------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    first = await login(client, account.email)

    resp = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200, resp.text
    second = resp.json()
    assert second["token_type"] == "bearer" and second["expires_in"] == settings.access_token_ttl_seconds
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await client.get("/me", headers=_bearer(second["access_token"]))).json()["id"] == account.id

    # The old refresh token again: likely stolen, so it fails and takes the whole family with it.
    reused = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    _assert_error(reused, 401, "refresh_token_reused")
    after = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401, after.text

    # Another device's session (another family) is untouched.
    other_device = await login(client, account.email)
    assert (await client.post("/auth/refresh", json={"refresh_token": other_device["refresh_token"]})
            ).status_code == 200


async def test_two_concurrent_refreshes_with_one_token_exactly_one_wins(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    tokens = await login(client, account.email)
    responses = await asyncio.gather(*(
        client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [200, 401], [r.text for r in responses]


async def test_many_concurrent_refreshes_with_one_token_exactly_one_wins(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    tokens = await login(client, account.email)
    responses = await asyncio.gather(*(
        client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200] + [401] * 5, [r.text for r in responses]


async def test_unknown_refresh_token_is_401(client, db):
    resp = await client.post("/auth/refresh", json={"refresh_token": "not-a-token-we-issued"})
    _assert_error(resp, 401, "invalid_refresh_token")


async def test_expired_refresh_token_is_401(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    async with db.sessionmaker() as s:
        await s.execute(update(RefreshToken).where(RefreshToken.user_id == uuid.UUID(account.id))
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    resp = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    _assert_error(resp, 401, "invalid_refresh_token")


async def test_logout_revokes_the_refresh_token(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    resp = await client.post("/auth/logout", json={"refresh_token": account.refresh_token})
    assert resp.status_code == 204
    resp = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    assert resp.status_code == 401, resp.text
    # Logging out with a token we never issued is not an error (nothing to revoke).
    assert (await client.post("/auth/logout", json={"refresh_token": "unknown"})).status_code == 204


async def test_refresh_for_a_deactivated_account_is_401(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    await _set_user(db, account.id, is_active=False)
    resp = await client.post("/auth/refresh", json={"refresh_token": account.refresh_token})
    _assert_error(resp, 401, "invalid_refresh_token")


# ---- access tokens ------------------------------------------------------------------------------


async def _set_user(db, user_id: str, **values) -> None:
    async with db.sessionmaker() as s:
        await s.execute(update(User).where(User.id == uuid.UUID(user_id)).values(**values))
        await s.commit()


async def test_expired_access_token_is_401_token_expired(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    issued = datetime.now(UTC) - timedelta(seconds=settings.access_token_ttl_seconds + 5)
    token = make_access_token(user_id=uuid.UUID(account.id), role=account.role,
                              cooperative_id=await _coop_id(db, account.id), settings=settings, now=issued)
    resp = await client.get("/me", headers=_bearer(token))
    _assert_error(resp, 401, "token_expired")
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_a_token_made_the_same_way_but_current_works(client, db, settings):
    """Control for the token tests below: our hand-made tokens are valid when nothing is wrong."""
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    coop_id = await _coop_id(db, account.id)
    by_helper = make_access_token(user_id=uuid.UUID(account.id), role=account.role, cooperative_id=coop_id,
                                  settings=settings, now=datetime.now(UTC))
    by_hand = jwt.encode(_claims(account, settings, coop_id), settings.jwt_secret, algorithm="HS256")
    for token in (by_helper, by_hand):
        resp = await client.get("/me", headers=_bearer(token))
        assert resp.status_code == 200, resp.text


def _flip(segment: str, index: int) -> str:
    # A character in the middle of a base64url segment carries 6 full bits: changing it changes the bytes.
    char = segment[index]
    return segment[:index] + ("A" if char != "A" else "B") + segment[index + 1:]


async def test_tampered_tokens_are_401(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    token = account.headers["Authorization"].split(" ", 1)[1]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    forged_role = ".".join([header, _b64({**claims, "role": "admin"}), signature])
    flipped_payload = ".".join([header, _flip(payload, len(payload) // 2), signature])
    flipped_signature = ".".join([header, payload, _flip(signature, len(signature) // 2)])
    for bad in (forged_role, flipped_payload, flipped_signature):
        resp = await client.get("/me", headers=_bearer(bad))
        _assert_error(resp, 401, "invalid_token")
    # the untouched token still works
    assert (await client.get("/me", headers=account.headers)).status_code == 200


@pytest.mark.parametrize("defect", ["audience", "issuer", "secret", "alg_none", "no_exp"])
async def test_invalid_tokens_are_401(client, db, settings, defect):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    claims = _claims(account, settings, await _coop_id(db, account.id))
    secret = settings.jwt_secret
    if defect == "audience":
        claims["aud"] = "another-api"
    elif defect == "issuer":
        claims["iss"] = "someone-else"
    elif defect == "secret":
        secret = "an-entirely-different-secret-of-some-length"
    elif defect == "no_exp":
        del claims["exp"]
    if defect == "alg_none":
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    else:
        token = jwt.encode(claims, secret, algorithm="HS256")
    resp = await client.get("/me", headers=_bearer(token))
    _assert_error(resp, 401, "invalid_token")
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer garbage", "Bearer a.b.c",
                                           "Basic dXNlcjpwYXNz", "garbage"])
async def test_missing_or_garbage_authorization_is_401(client, db, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = await client.get("/me", headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] in ("not_authenticated", "invalid_token")
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_token_of_a_deactivated_user_is_401(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    assert (await client.get("/me", headers=account.headers)).status_code == 200
    await _set_user(db, account.id, is_active=False)
    _assert_error(await client.get("/me", headers=account.headers), 401, "invalid_token")
    # and a deactivated account cannot sign in again
    resp = await client.post("/auth/token", data={"username": account.email, "password": PASSWORD})
    _assert_error(resp, 401, "invalid_credentials")


async def test_token_whose_role_changed_is_401(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop, role="staff")
    assert (await client.get("/me", headers=account.headers)).status_code == 200
    await _set_user(db, account.id, role="client")
    _assert_error(await client.get("/me", headers=account.headers), 401, "invalid_token")
    # A fresh login picks up the new role.
    tokens = await login(client, account.email)
    assert (await client.get("/me", headers=_bearer(tokens["access_token"]))).json()["role"] == "client"


async def test_token_for_a_user_that_does_not_exist_is_401(client, db, settings):
    coop = await make_cooperative(db)
    account = await make_user(client, db, settings, cooperative=coop)
    token = make_access_token(user_id=uuid.uuid4(), role="client",
                              cooperative_id=await _coop_id(db, account.id), settings=settings,
                              now=datetime.now(UTC))
    _assert_error(await client.get("/me", headers=_bearer(token)), 401, "invalid_token")
