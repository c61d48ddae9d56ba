"""The `coopgig` command line (API.md "Command line")."""
from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from app.config import get_settings
from app.db import Database
from app.errors import AppError

cli = typer.Typer(help="coopgig: the backend of a platform cooperative.", no_args_is_help=True)
cooperative_cli = typer.Typer(help="Cooperatives (tenants).", no_args_is_help=True)
user_cli = typer.Typer(help="User accounts.", no_args_is_help=True)
cli.add_typer(cooperative_cli, name="cooperative")
cli.add_typer(user_cli, name="user")


def _migrate() -> None:
    from app import migrate

    migrate.upgrade(get_settings().database_url)


async def _with_session(fn):
    db = Database(get_settings())
    try:
        async with db.sessionmaker() as session:
            return await fn(session)
    finally:
        await db.dispose()


def _run(coro_fn) -> object:
    try:
        return asyncio.run(_with_session(coro_fn))
    except AppError as exc:
        typer.secho(f"error ({exc.code}): {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@cli.command()
def serve(host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
          workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1) -> None:
    """Apply the migrations, then serve the API."""
    import uvicorn

    _migrate()
    uvicorn.run("app.main:app", host=host, port=port, workers=workers, access_log=False,
                proxy_headers=True, log_config=None)


@cli.command()
def migrate() -> None:
    """Apply the migrations (alembic upgrade head)."""
    _migrate()
    typer.echo("database is at the latest revision")


@cooperative_cli.command("create")
def cooperative_create(slug: str, name: Annotated[str, typer.Option(help="Display name.")],
                       currency: str = "EUR", iban: str | None = None, bic: str | None = None) -> None:
    """Create a cooperative (a tenant)."""
    from app.services import tenancy

    _migrate()
    coop = _run(lambda s: tenancy.create_cooperative(s, slug=slug, name=name, currency=currency,
                                                     iban=iban, bic=bic))
    typer.echo(f"cooperative {coop.slug} created ({coop.id})")


@user_cli.command("create")
def user_create(cooperative: Annotated[str, typer.Option(help="Cooperative slug.")],
                email: Annotated[str, typer.Option()],
                password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
                role: Annotated[str, typer.Option(help="staff, board, admin (or client, worker)")],
                display_name: Annotated[str | None, typer.Option()] = None) -> None:
    """Create a user; staff, board and admin accounts are only made here or by an admin."""
    from app.models.tenancy import ROLES
    from app.services import tenancy

    if role not in ROLES:
        typer.secho(f"error: role must be one of {', '.join(ROLES)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    _migrate()
    user, _, coop = _run(lambda s: tenancy.create_user(
        s, get_settings(), cooperative_slug=cooperative, email=email, password=password,
        display_name=display_name or email.split("@")[0], role=role))
    typer.echo(f"{role} {user.email} created in {coop.slug} ({user.id})")


@cli.command()
def demo() -> None:
    """Seed a demo cooperative with services, members and clients (idempotent); prints the logins."""
    from app import demo as demo_data

    _migrate()
    logins = _run(lambda s: demo_data.seed(s, get_settings()))
    typer.echo("Demo cooperative 'demo' is ready. Sign in with (email / password):")
    for role, email, password in logins:
        typer.echo(f"  {role:<7} {email:<32} {password}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
