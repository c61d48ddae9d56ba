"""Settings from the environment (pydantic-settings), with a dev default for every value.

The service refuses to start outside development/test with a default secret (API.md "Configuration").
"""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0000"
DEV_WEBHOOK_SECRET = "whsec_dev_only_insecure"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./coopgig.db"
    # Per process. Connections past pool_size are closed when returned, so size the pool for the
    # usual concurrency (bench/: 16 requests in flight per worker) and keep the overflow for bursts.
    db_pool_size: int = 20
    db_max_overflow: int = 10
    # Per process, besides the above: the raw asyncpg pool of the hot paths (Database.driver()).
    db_driver_pool_size: int = 10

    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "coopgig"
    jwt_audience: str = "coopgig-api"
    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # argon2-cffi profile name (argon2.profiles): RFC_9106_LOW_MEMORY in production; the test
    # suite uses CHEAPEST so thousands of logins stay fast. Hashes carry their own parameters,
    # so a hash made with one profile still verifies under another.
    password_hash_profile: str = "RFC_9106_LOW_MEMORY"

    stripe_api_key: str | None = None
    stripe_webhook_secret: str = DEV_WEBHOOK_SECRET
    stripe_api_base: str | None = None

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Offer expiry and payment retries (app/background.py), in every API process; 0 turns it off.
    background_interval_seconds: float = Field(default=30.0, ge=0)
    # Quotes kept per process (app/services/quotes.py: a pure function, memoised); 0 turns it off.
    quote_memo_size: int = Field(default=20_000, ge=0)
    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> "Settings":
        if self.environment == "production":
            if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
                raise ValueError("JWT_SECRET must be set to a random value of 32+ characters in production")
            if self.stripe_webhook_secret == DEV_WEBHOOK_SECRET:
                raise ValueError("STRIPE_WEBHOOK_SECRET must be set in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
