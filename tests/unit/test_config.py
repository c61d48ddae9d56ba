"""Settings fail fast (API.md "Configuration", STYLE.md 10): no default secret outside development."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import DEV_JWT_SECRET, Settings

STRONG_SECRET = "k3Jq9-vX2pLr8sT0wYb4nHc6mZd1fGa5"  # 32 characters
WEBHOOK_SECRET = "whsec_live_0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    # Only what a test sets counts: no variable of the shell, no .env of the checkout.
    for name in ("ENVIRONMENT", "JWT_SECRET", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_KEY", "DATABASE_URL",
                 "MAX_BODY_BYTES", "JWT_ISSUER", "JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_development_works_with_the_defaults():
    settings = Settings()
    assert settings.environment == "development"
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.is_sqlite and settings.database_url.startswith("sqlite+aiosqlite://")
    assert settings.max_body_bytes == 1_048_576


def test_production_with_the_default_jwt_secret_is_refused():
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment="production", stripe_webhook_secret=WEBHOOK_SECRET)


def test_production_with_a_short_jwt_secret_is_refused():
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment="production", jwt_secret=STRONG_SECRET[:31],
                 stripe_webhook_secret=WEBHOOK_SECRET)


def test_production_with_the_default_webhook_secret_is_refused():
    with pytest.raises(ValidationError, match="STRIPE_WEBHOOK_SECRET"):
        Settings(environment="production", jwt_secret=STRONG_SECRET)


def test_production_with_real_secrets_works():
    settings = Settings(environment="production", jwt_secret=STRONG_SECRET,
                        stripe_webhook_secret=WEBHOOK_SECRET,
                        database_url="postgresql+asyncpg://coopgig@db/coopgig")
    assert settings.jwt_secret == STRONG_SECRET and settings.stripe_webhook_secret == WEBHOOK_SECRET
    assert not settings.is_sqlite


def test_production_from_environment_variables(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings()
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    settings = Settings()
    assert settings.environment == "production" and settings.jwt_secret == STRONG_SECRET


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text(f"ENVIRONMENT=production\nJWT_SECRET={STRONG_SECRET}\n"
                                   f"STRIPE_WEBHOOK_SECRET={WEBHOOK_SECRET}\n")
    settings = Settings()
    assert settings.environment == "production" and settings.jwt_secret == STRONG_SECRET


def test_an_unknown_environment_is_refused():
    with pytest.raises(ValidationError):
        Settings(environment="staging")


def test_a_tiny_body_limit_is_refused():
    with pytest.raises(ValidationError):
        Settings(max_body_bytes=100)

