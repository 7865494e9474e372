"""The `pointsbot` command line: run the bot, try it in the sandbox, operate the store."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click

from bot.config import TOKEN_ENV, Config, ConfigError, load_config, token_from_env

DEFAULT_CONFIG = "config.toml"
EXAMPLE_CONFIG = "config.example.toml"

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The programme configuration (TOML).",
)


def _load(path: Path) -> Config:
    """Load the configuration or exit 2 with the validation message."""
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """pointsbot: a Telegram member assistant for a loyalty-points programme."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from bot.app import quiet_http_logs

    quiet_http_logs()


@main.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration and print a summary."""
    config = _load(config_path)
    program = config.program
    click.echo(f"{config_path}: OK")
    click.echo(f"  programme   {program.brand} · {program.name.zh_CN} / {program.name.en}")
    click.echo(f"  timezone    {program.timezone}, default language {program.default_language}")
    click.echo(f"  admins      {', '.join(map(str, program.admins)) or '(none)'}")
    click.echo(f"  database    {config.storage.path} (synchronous={config.storage.synchronous})")
    categories = ", ".join(f"{c.id}×{c.multiplier}" for c in config.earn.categories)
    click.echo(f"  earning     {config.earn.points_per_yuan} point/yuan; {categories}")
    expiry = config.expiry
    rule = {"rolling": f"{expiry.months} months", "year_end": f"year end +{expiry.years}"}
    click.echo(f"  expiry      {rule.get(expiry.mode, 'never')}")
    click.echo(f"  returns     {config.redemption.return_window_days} days")
    click.echo(f"  bot api     {config.telegram.base_url or 'Telegram (public Bot API)'}")
    click.echo(f"  token       {'set' if token_from_env() else 'not set'} ({TOKEN_ENV})")


@main.command("init-db")
@config_option
def init_db(config_path: Path) -> None:
    """Create the database or apply pending migrations."""
    from storage.store import Store

    config = _load(config_path)

    async def create() -> int:
        async with Store(config.storage.path, synchronous=config.storage.synchronous) as store:
            return await store.version()

    version = asyncio.run(create())
    click.echo(f"{config.storage.path}: schema version {version}")


@main.command("run")
@config_option
def run(config_path: Path) -> None:
    """Run the bot with long polling until SIGINT or SIGTERM."""
    token = token_from_env()
    if token is None:
        click.echo(
            f"error: no bot token: set {TOKEN_ENV} (from @BotFather), or try `pointsbot demo`.",
            err=True,
        )
        sys.exit(2)
    config = _load(config_path)
    from bot.app import build_application

    app = build_application(config, token)
    logging.getLogger(__name__).info("pointsbot starting (database %s)", config.storage.path)
    # run_polling installs SIGINT/SIGTERM handlers and shuts down cleanly on either.
    app.run_polling(
        allowed_updates=["message", "edited_message", "callback_query", "my_chat_member"]
    )


@main.command("demo")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The programme (default: {DEFAULT_CONFIG} if present, else {EXAMPLE_CONFIG}).",
)
def demo(config_path: Path | None) -> None:
    """Chat with the bot in this terminal: local Bot API sandbox, sample data, no token."""
    if config_path is None:
        config_path = Path(DEFAULT_CONFIG)
        if not config_path.exists():
            config_path = Path(EXAMPLE_CONFIG)
    config = _load(config_path)
    from bot.sandbox.demo import run_demo

    sys.exit(asyncio.run(run_demo(config)))


if __name__ == "__main__":
    main()
