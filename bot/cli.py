"""The `pointsbot` command line: run the bot, try it in the sandbox, operate the store."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

import click

from bot.clock import Clock, system_clock
from bot.config import (
    LANGUAGES,
    TOKEN_ENV,
    WEBHOOK_SECRET_ENV,
    Config,
    ConfigError,
    check_runnable,
    load_config,
    token_from_env,
    unrunnable,
    webhook_secret_from_env,
)

if TYPE_CHECKING:
    from bot.progress import ProgressReporter
    from handlers.common import BotApp

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
# Where an export command writes its CSV.
csv_output_option = click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="The CSV file to write ('-' for standard output).",
)


def _load(path: Path, *, to_run: bool = False) -> Config:
    """Load the configuration (`to_run`: complete enough to run the bot) or exit 2 with the
    validation message."""
    try:
        config = load_config(path)
        if to_run:
            check_runnable(config, str(path))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    return config


def cli_clock() -> Clock:
    """The CLI's clock: the real one, unless the caller (a test) hands its own in `obj`."""
    obj = click.get_current_context().find_root().obj
    clock = obj.get("clock") if isinstance(obj, dict) else None
    return clock if clock is not None else system_clock


def cli_progress(
    command: str,
    unit: str,
    *,
    total: int | None = None,
    description: str | None = None,
    writes_stdout: bool = False,
) -> contextlib.AbstractContextManager[ProgressReporter]:
    """A long command's progress on standard error (bot.progress.report_progress), shown as a
    caller (a test) asks in `obj["progress"]` (a ProgressOptions), else as the terminal allows."""
    from bot.progress import report_progress

    obj = click.get_current_context().find_root().obj
    options = obj.get("progress") if isinstance(obj, dict) else None
    return report_progress(
        command,
        unit,
        total=total,
        description=description,
        writes_stdout=writes_stdout,
        options=options,
    )


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """pointsbot: a Telegram member assistant for a loyalty-points programme."""
    from bot.logs import TEXT_FORMAT

    # The configuration is read by each command: `run` and `demo` apply its [logging] then.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=TEXT_FORMAT)
    from bot.app import quiet_http_logs

    quiet_http_logs()


@main.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration and print a summary."""
    config = _load(config_path)
    # Before "OK": a file that breaks the points-value guarantee is not OK to run.
    guarantee = _check_guarantee(config, config_path)
    program = config.program
    click.echo(f"{config_path}: OK")
    click.echo(f"  programme   {program.brand} · {program.name.zh_CN} / {program.name.en}")
    click.echo(f"  timezone    {program.timezone}, default language {program.default_language}")
    click.echo(f"  staff       {len(config.staff) + len(program.admins) or '(none)'}")
    for admin in program.admins:
        click.echo(f"              {admin} (from [program] admins) · owner")
    for person in config.staff:
        scope = f" · scope {', '.join(person.scope)}" if person.scope else ""
        click.echo(f"              {person.telegram_id} {person.name} · {person.role}{scope}")
    click.echo(f"  database    {config.storage.path} (synchronous={config.storage.synchronous})")
    categories = ", ".join(f"{c.id}×{c.multiplier}" for c in config.earn.categories)
    click.echo(f"  earning     {config.earn.points_per_yuan} point/yuan; {categories}")
    from bot.programme.policy import describe_policy

    expiry = config.expiry
    click.echo(f"  expiry      {describe_policy(expiry.default_policy())} (default)")
    for source, policy in expiry.sources.items():
        click.echo(f"              {source}: {describe_policy(policy)}")
    click.echo(f"  returns     {config.redemption.return_window_days} days")
    click.echo(f"  bot api     {config.telegram.base_url or 'Telegram (public Bot API)'}")
    from bot.web import serves_http

    server = config.server
    served = f"http://{server.host}:{server.port}"
    click.echo(f"  http server {served if serves_http(config) else 'not started'}")
    click.echo(f"  till api    {f'{served}/v1/' if config.api.enabled else 'disabled'}")
    telegram = config.telegram
    if telegram.mode == "webhook":
        click.echo(f"  updates     webhook {telegram.webhook_url} (route {telegram.webhook_path})")
    else:
        click.echo("  updates     polling")
    click.echo(f"  token       {'set' if token_from_env() else 'not set'} ({TOKEN_ENV})")
    webhook_ready = True
    if telegram.mode == "webhook":
        try:
            webhook_ready = webhook_secret_from_env() is not None
            state = "set" if webhook_ready else "not set"
        except ConfigError as exc:
            webhook_ready, state = False, f"invalid: {exc}"
        click.echo(f"  webhook key {state} ({WEBHOOK_SECRET_ENV})")
    click.echo(f"  guarantee   {guarantee}")
    if program.admins:
        click.echo(
            f"warning: {config_path}: [program] admins is deprecated: list each of them as a"
            ' [[staff]] with role = "owner" (they are owners until then)',
            err=True,
        )
    # Valid, so tools may use it, but `pointsbot run` will refuse: say so now.
    for key, message in unrunnable(config).items():
        click.echo(f"warning: {config_path}: [{key}] {message}", err=True)
    if not webhook_ready:
        click.echo(
            f'warning: {config_path}: [telegram] mode = "webhook": `pointsbot run` needs'
            f" {WEBHOOK_SECRET_ENV} set",
            err=True,
        )


def _check_guarantee(config: Config, config_path: Path) -> str:
    """Compare the file with the terms members were promised (in the database, when there is
    one) and say how it compares; exit 2 naming each term it makes worse without notice."""
    from bot.programme.policy import TermsRefused, check_terms
    from storage.pushes import promised_terms
    from storage.store import connect_sync

    path = Path(config.storage.path)
    if not path.is_file():
        return "no database yet: the file becomes the terms members are promised"
    conn = connect_sync(path, synchronous=config.storage.synchronous)
    try:
        if promised_terms(conn) is None:
            # Nothing to compare with: claiming "no term is worse" would not be true.
            return "no terms recorded yet: the file becomes the promise at the next start"
        check_terms(conn, config, cli_clock()(), str(config_path))
    except TermsRefused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except sqlite3.OperationalError:
        # A database from before the guarantee (no promise table yet): the first start after
        # the upgrade takes the file as the promise.
        return "no terms recorded yet: the file becomes the promise at the next start"
    finally:
        conn.close()
    return "no term is worse for members than promised"


@main.command("init-db")
@config_option
def init_db(config_path: Path) -> None:
    """Create the database or apply pending migrations."""
    from bot.app import make_store
    from storage.errors import MigrationError

    config = _load(config_path)

    async def create() -> int:
        async with make_store(config.storage) as store:
            return await store.version()

    try:
        version = asyncio.run(create())
    except (sqlite3.DatabaseError, MigrationError) as exc:
        click.echo(f"error: {config.storage.shown}: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{config.storage.shown}: schema version {version}")


def _write_csv(
    output: Path, write: Callable[[TextIO], int], what: str, *, encoding: str = "utf-8"
) -> None:
    """Run an export's `write` into standard output ('-') or a file, and say how many rows a
    file got (on standard error, so a pipe gets only the CSV)."""
    if str(output) == "-":
        write(sys.stdout)
        return
    with output.open("w", encoding=encoding, newline="") as out:
        count = write(out)
    click.echo(f"{output}: {count:,} {what}", err=True)


def _open_database(config: Config, *, upgrade: bool) -> sqlite3.Connection:
    """Open the existing database, migrated (`upgrade`) or checked current; else exit 2."""
    from storage.errors import MigrationError
    from storage.store import connect_sync, latest_version, migrate, schema_version

    if config.storage.postgres:
        return _open_postgres(config, upgrade=upgrade)
    path = Path(config.storage.path)
    if not path.is_file():
        click.echo(f"error: no database at {path} (create it with `pointsbot init-db`)", err=True)
        sys.exit(2)
    conn = None
    try:
        conn = connect_sync(path, synchronous=config.storage.synchronous)
        if upgrade:
            migrate(conn)
        elif (version := schema_version(conn)) != latest_version():
            raise MigrationError(
                f"schema version {version}, this pointsbot needs {latest_version()}"
                " (run `pointsbot init-db`)"
            )
    except (sqlite3.DatabaseError, MigrationError) as exc:
        if conn is not None:
            conn.close()
        click.echo(f"error: {path}: {exc}", err=True)
        sys.exit(2)
    return conn


def _open_postgres(config: Config, *, upgrade: bool) -> sqlite3.Connection:
    """Connect to [storage] url, migrated (`upgrade`) or checked current; else exit 2."""
    from storage.errors import MigrationError
    from storage.pg import PgConnection
    from storage.pg_store import pg_migrate, pg_schema_version
    from storage.store import latest_version

    conn = None
    try:
        conn = PgConnection.connect(config.storage.url)
        if upgrade:
            pg_migrate(conn)
        elif (version := pg_schema_version(conn)) != latest_version():
            raise MigrationError(
                f"schema version {version}, this pointsbot needs {latest_version()}"
                " (run `pointsbot init-db`)"
            )
    except (sqlite3.DatabaseError, MigrationError) as exc:
        if conn is not None:
            conn.close()
        click.echo(f"error: {config.storage.shown}: {exc}", err=True)
        sys.exit(2)
    # The storage functions take it as they take a sqlite3 connection (storage/pg.py).
    return cast(sqlite3.Connection, conn)


@main.command("audit")
@config_option
@click.option(
    "--quick", is_flag=True, help="Check the pages with quick_check, not the full integrity_check."
)
def audit_ledger(config_path: Path, quick: bool) -> None:
    """Check the ledger's invariants; exit 1 when any is broken."""
    from storage.audit import audit

    config = _load(config_path)
    conn = _open_database(config, upgrade=False)
    try:
        report = audit(
            conn,
            integrity="quick" if quick else "full",
            badge_sets={s.id: s.badges for s in config.badge_sets},
            tier_levels=[tier.id for tier in config.tiers.levels],
            tz=config.program.tz,
        )
    finally:
        conn.close()
    click.echo(str(report))
    sys.exit(0 if report.ok else 1)


@main.command("migrate-to-postgres")
@config_option
@click.option(
    "--url",
    required=True,
    help="The empty PostgreSQL database to copy into: postgresql://user@host:5432/name"
    " (its password from PGPASSWORD or ~/.pgpass).",
)
def migrate_to_postgres(config_path: Path, url: str) -> None:
    """Copy the SQLite database ([storage] path) into an empty PostgreSQL one and audit the copy;
    then set [storage] url to it."""
    from bot.config import StorageConfig
    from storage.audit import audit
    from storage.errors import MigrationError
    from storage.pg import PgConnection
    from storage.pg_copy import copy_to_postgres, tables_differing
    from storage.pg_store import pg_migrate

    config = _load(config_path)
    if config.storage.postgres:
        click.echo("error: [storage] url is set already: the SQLite file is the source", err=True)
        sys.exit(2)
    try:
        target_config = StorageConfig(url=url)
    except ValueError as exc:
        click.echo(f"error: --url: {exc}", err=True)
        sys.exit(2)
    source = _open_database(config, upgrade=False)
    target = None
    try:
        target = PgConnection.connect(target_config.url)
        pg_migrate(target)
        done: dict[str, int] = {}
        with cli_progress("migrate-to-postgres", "rows") as progress:

            def copying(table: str, rows: int) -> None:
                done[table] = rows
                progress(sum(done.values()))

            copied = copy_to_postgres(source, target, copying)
        report = audit(
            cast(sqlite3.Connection, target),
            badge_sets={s.id: s.badges for s in config.badge_sets},
            tier_levels=[tier.id for tier in config.tiers.levels],
            tz=config.program.tz,
        )
        differ = tables_differing(target, copied)
    except (sqlite3.DatabaseError, MigrationError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        source.close()
        if target is not None:
            target.close()
    click.echo(
        f"copied {copied.total:,} rows of {len(copied.rows)} tables into {target_config.shown}"
    )
    click.echo(str(report))
    if differ or not report.ok:
        if differ:
            click.echo(f"error: row counts differ in {', '.join(differ)}", err=True)
        sys.exit(1)
    click.echo('now set [storage] url = "..." to it (and keep the SQLite file as a backup)')


# Skipped rows listed after an import's summary; --errors writes them all.
SHOWN_REJECTIONS = 50


@main.command("import-purchases")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
@click.option("--actor", help="Who the operations are recorded as (default: import:<file name>).")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every skipped row to this CSV file, with its line number and reason.",
)
@click.option(
    "--lang",
    "language",
    type=click.Choice(LANGUAGES),
    help="The language of everything the import says (default: the programme's).",
)
def import_purchases_command(
    csv_file: Path,
    config_path: Path,
    actor: str | None,
    errors_path: Path | None,
    language: str | None,
) -> None:
    """Award points for till purchases from CSV_FILE
    (receipt_id,member_code,amount,category,purchased_at[,return_of]).

    A row with return_of (the receipt of a purchase) is a return of its amount (empty: all
    that is left) keyed by its receipt_id, for the purchase's own member. Bad rows are
    skipped and listed with their line numbers; the rest are imported. A receipt
    imported before is not imported again. Each member is sent one message summing their
    purchases imported by the run. Exit status: 0 when every row is imported (now or before),
    1 when some rows were skipped, 2 when the file cannot be read (nothing written).
    """
    from bot.imports import ImportFileError, ImportTexts, RejectedRow, import_purchases
    from bot.programme.policy import TermsRefused, check_terms

    config = _load(config_path)
    _ = ImportTexts(language or config.program.default_language)
    conn = _open_database(config, upgrade=True)
    try:
        # The rules in force (announced changes included), and never a file that breaks the
        # points-value guarantee.
        config = check_terms(conn, config, cli_clock()(), str(config_path))
    except TermsRefused as exc:
        conn.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.callback(conn.close)
        on_reject = None
        if errors_path is not None:
            errors_file = stack.enter_context(
                errors_path.open("w", encoding="utf-8-sig", newline="")
            )
            errors_csv = csv.writer(errors_file)
            errors_csv.writerow(["line", "reason", "message", "fields"])

            def on_reject(row: RejectedRow) -> None:
                errors_csv.writerow([row.line, row.reason, row.message, *row.fields])

        progress = stack.enter_context(
            cli_progress("import-purchases", "rows", description=f"importing {csv_file.name}")
        )
        try:
            summary = import_purchases(
                conn,
                csv_file,
                config,
                actor=actor or f"import:{csv_file.name}",
                now=cli_clock()(),
                progress=progress,
                on_reject=on_reject,
                texts=_,
            )
        except ImportFileError as exc:
            click.echo(_("import.cli.error", file=csv_file, message=_.error(exc)), err=True)
            sys.exit(2)
    elapsed = time.perf_counter() - started
    # Counts right-aligned in one column, in every language.
    click.echo(
        _("import.cli.read", file=csv_file, rows=f"{summary.rows:,}", seconds=f"{elapsed:.1f}")
    )
    click.echo(
        _("import.cli.imported", count=f"{summary.imported:>9,}", points=f"{summary.points:,}")
    )
    if summary.returned:
        click.echo(
            _(
                "import.cli.returned",
                count=f"{summary.returned:>9,}",
                points=f"{summary.points_returned:,}",
            )
        )
    click.echo(_("import.cli.replayed", count=f"{summary.replayed:>9,}"))
    click.echo(_("import.cli.skipped", count=f"{summary.skipped_total:>9,}"))
    for reason, count in summary.skipped.most_common():
        click.echo(_("import.cli.skipped_for", reason=_.reason(reason), count=f"{count:>9,}"))
    click.echo(_("import.cli.notified", count=f"{summary.notified:>9,}"))
    if summary.rejected:
        click.echo(_("import.cli.skipped_rows"))
        for row in summary.rejected[:SHOWN_REJECTIONS]:
            reason = _.reason(row.reason)
            click.echo(_("import.cli.row", line=row.line, reason=reason, message=row.message))
        if (more := summary.skipped_total - SHOWN_REJECTIONS) > 0:
            if errors_path:
                click.echo(_("import.cli.more_in_file", count=f"{more:,}", path=errors_path))
            else:
                click.echo(_("import.cli.more", count=f"{more:,}"))
    sys.exit(0 if summary.ok else 1)


@main.command("export-ledger")
@config_option
@click.option("--member", "member_code", help="Only this member's postings (by member code).")
@csv_output_option
def export_ledger(config_path: Path, member_code: str | None, output: Path) -> None:
    """Write the audit trail as CSV: every posting with its operation, times in local time."""
    from bot.export import write_ledger_csv
    from bot.programme.till import compact_code
    from storage.members import member_ids_by_code

    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    with contextlib.closing(conn):
        member_id = None
        if member_code is not None:
            code = compact_code(member_code)  # "1173 4896 81" as /card prints it
            member_id = member_ids_by_code(conn, [code]).get(code)
            if member_id is None:
                click.echo(f"error: no member has the code {member_code}", err=True)
                sys.exit(2)

        def write(out: TextIO) -> int:
            # Closed before _write_csv says how many rows the file got.
            with cli_progress(
                "export-ledger", "postings", writes_stdout=str(output) == "-"
            ) as progress:
                return write_ledger_csv(conn, out, config, member_id, progress=progress)

        _write_csv(output, write, "postings")


@main.command("log-member")
@config_option
@click.argument("member_code")
def log_member(config_path: Path, member_code: str) -> None:
    """Print the name a member goes by in the logs (the `member` of JSON lines)."""
    from bot.logs import LOG_SALT_ENV, member_hash, member_salt
    from bot.programme.till import compact_code
    from storage.errors import NotFound
    from storage.members import member_by_code

    # The salt of the running bot: POINTSBOT_LOG_SALT, else derived from its token.
    token = token_from_env()
    if token is None and not os.environ.get(LOG_SALT_ENV, "").strip():
        click.echo(f"error: set {LOG_SALT_ENV} or {TOKEN_ENV} as the bot has them", err=True)
        sys.exit(2)
    config = _load(config_path)
    conn = _open_database(config, upgrade=False)
    with contextlib.closing(conn):
        try:
            member = member_by_code(conn, compact_code(member_code))
        except NotFound:
            click.echo(f"error: no member has the code {member_code}", err=True)
            sys.exit(2)
    click.echo(member_hash(member.telegram_id, member_salt(token or "")))


@main.command("export-households")
@config_option
@click.option("--household", "household_id", type=int, help="Only this household's events.")
@csv_output_option
def export_households(config_path: Path, household_id: int | None, output: Path) -> None:
    """Write the households' audit trail as CSV: who created, joined, left or was removed,
    head changes, and dissolutions with their reason; times in local time."""
    from bot.export import write_household_events_csv

    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    with contextlib.closing(conn):
        _write_csv(
            output,
            lambda out: write_household_events_csv(conn, out, config, household_id),
            "household events",
        )


@main.command("export-tasks")
@config_option
@click.option("--task", "task_id", help="Only this task's progress (by task id).")
@csv_output_option
def export_tasks(config_path: Path, task_id: str | None, output: Path) -> None:
    """Write task progress and completions as CSV: member code, task, period, progress,
    target, when completed (local time), and the reward's operation and points."""
    from bot.export import write_tasks_csv

    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    with contextlib.closing(conn):
        _write_csv(output, lambda out: write_tasks_csv(conn, out, config, task_id), "task rows")


@main.command("export-survey")
@click.argument("survey_id")
@config_option
@csv_output_option
@click.option(
    "--include-unfinished",
    is_flag=True,
    help="Also the answers of responses not completed yet (completed_at is empty).",
)
def export_survey(
    survey_id: str, config_path: Path, output: Path, include_unfinished: bool
) -> None:
    """Write a survey's answers as CSV: one row per response and question, times in local
    time, labels in the default language. A file gets a BOM so spreadsheets read Chinese."""
    from bot.surveys import known_survey_ids, write_survey_csv
    from storage.surveys import survey_ids_with_responses

    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    with contextlib.closing(conn):
        known = known_survey_ids(config, survey_ids_with_responses(conn))
        if survey_id not in known:
            click.echo(
                f"error: no survey {survey_id!r} (surveys: {', '.join(known) or 'none'})",
                err=True,
            )
            sys.exit(2)
        _write_csv(
            output,
            lambda out: write_survey_csv(
                conn, out, survey_id, config, include_unfinished=include_unfinished
            ),
            "responses",
            # A file opened by a spreadsheet needs the BOM to read as UTF-8.
            encoding="utf-8-sig",
        )


@main.command("schedule-policy-change")
@config_option
@click.option(
    "--effective",
    "effective_on",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The first local day the new value applies (YYYY-MM-DD).",
)
@click.option(
    "--term",
    help="What changes: earn.points_per_yuan, earn.<category>.multiplier,"
    " redemption.deduction_points_per_yuan, expiry (the default), expiry.<source>,"
    " mall.<SKU>.price (default: expiry, or expiry.<source> with --source).",
)
@click.option(
    "--source", help="An expiry source (purchase, birthday, ...): --term expiry.<source>."
)
@click.option("--value", help="The new value of a rate, multiplier or price.")
@click.option(
    "--mode", type=click.Choice(["rolling", "year_end", "never"]), help="An expiry policy's mode."
)
@click.option("--months", default=12, show_default=True, help="rolling: months points last.")
@click.option("--years", default=1, show_default=True, help="year_end: years after earning.")
@click.option("--actor", default="cli", show_default=True, help="Who announces it (audit trail).")
def schedule_policy_change(
    config_path: Path,
    effective_on: datetime,
    term: str | None,
    source: str | None,
    value: str | None,
    mode: str | None,
    months: int,
    years: int,
    actor: str,
) -> None:
    """Announce a change of the programme's terms: every member is told once, and it applies
    by itself from the effective day (to points earned from then on, for expiry). A change
    worse for members must be the notice period ahead."""
    from bot.i18n import I18n
    from bot.programme.errors import RuleError
    from bot.programme.policy import schedule_change
    from storage.errors import InvalidRequest

    if term is None:
        term = f"expiry.{source}" if source else "expiry"
    elif source is not None:
        click.echo("error: give --term or --source, not both", err=True)
        sys.exit(2)
    new: object
    if term.startswith("expiry"):
        if mode is None or value is not None:
            click.echo(f"error: {term} takes --mode (and --months or --years)", err=True)
            sys.exit(2)
        new = {"mode": mode, "months": months, "years": years}
    else:
        if value is None or mode is not None:
            click.echo(f"error: {term} takes --value", err=True)
            sys.exit(2)
        new = value
    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    try:
        change, notices = schedule_change(
            conn,
            config,
            term=term,
            value=new,
            effective_on=effective_on.date(),
            actor=actor,
            now=cli_clock()(),
        )
    except RuleError as exc:
        language = config.program.default_language
        click.echo(f"error: {I18n.load(language).t(language, exc.key, **exc.params)}", err=True)
        sys.exit(2)
    except (InvalidRequest, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        conn.close()
    from bot.programme.policy import shown_value

    click.echo(
        f"announced: {change.term} {shown_value(change.replaces)} → {shown_value(change.value)}"
        f" from {change.effective_on}; {notices} member notices queued (the running bot sends"
        " them, and applies the change by itself that day; points earned before keep their"
        " expiry)"
    )


@main.command("backup")
@config_option
@click.argument("destination", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DESTINATION if it exists.")
@click.option(
    "--into",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Instead of DESTINATION: a dated file in this folder, pointsbot-YYYYMMDDTHHMMSSZ.sqlite3.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    help="With --into: once the copy is verified, delete all but the newest KEEP dated files.",
)
def backup(
    config_path: Path,
    destination: Path | None,
    force: bool,
    folder: Path | None,
    keep: int | None,
) -> None:
    """Copy the database to DESTINATION (or a dated file --into a folder) while the bot runs,
    then verify the copy.

    The copy is one consistent snapshot (the bot keeps writing meanwhile), made in a temporary
    file beside DESTINATION; only a copy that passes SQLite's integrity check and the ledger
    audit is renamed to DESTINATION (replacing it with --force), else the exit status is 1 and
    DESTINATION is left as it was. The database itself (or its -wal, -shm) is refused (exit 2).
    To restore: stop the bot, replace the database file with the copy (and delete its
    -wal and -shm files), run `pointsbot audit`, start the bot. On a timer: `--into FOLDER
    --keep N` (a dated file each run, the oldest beyond N deleted once the new one is verified).
    """
    from bot.backup_files import dated_backup, stale_backups
    from storage.errors import BackupRefused
    from storage.store import backup_to

    if (destination is None) == (folder is None):
        raise click.UsageError("give either DESTINATION or --into FOLDER")
    if keep is not None and folder is None:
        raise click.UsageError("--keep goes with --into FOLDER")
    config = _load(config_path)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        destination = dated_backup(folder, cli_clock()())
    assert destination is not None
    conn = _open_database(config, upgrade=False)
    started = time.perf_counter()
    try:
        with cli_progress("backup", "pages", description=f"copying to {destination}") as progress:
            report = backup_to(conn, destination, replace=force, progress=progress)
    except BackupRefused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (sqlite3.Error, OSError) as exc:
        click.echo(f"error: backup to {destination} failed: {exc}", err=True)
        sys.exit(2)
    finally:
        conn.close()
    copied = time.perf_counter() - started
    if not report.ok:
        click.echo(str(report))
        click.echo(f"error: the copy failed verification: {destination} is unchanged", err=True)
        sys.exit(1)
    size = destination.stat().st_size
    click.echo(f"{destination}: {size / 1_048_576:.1f} MiB in {copied:.1f} s")
    click.echo(str(report))
    if folder is not None and keep is not None:
        # Only now: a copy that failed verification never costs an older good one.
        for stale in stale_backups(folder, keep, Path(config.storage.path)):
            stale.unlink()
            click.echo(f"removed {stale} (keeping the newest {keep})")


@main.command("report")
@config_option
@click.option("--month", help="The month to report, YYYY-MM (default: the last complete one).")
@click.option(
    "--output",
    "-o",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder the CSV tables and PNG charts are written into.",
)
def report_command(config_path: Path, month: str | None, directory: Path) -> None:
    """The monthly report: points issued by source, redeemed by item, expired, breakage, points
    outstanding by expiry month and the liability in yuan, members, game and campaign and task
    costs. Prints the summary, writes a CSV per table (UTF-8 with a BOM) and PNG charts; exits 1
    when the roll-forward does not reconcile, 2 for a malformed or future month."""
    from bot.i18n import I18n
    from bot.programme.reports import (
        BREAKAGE_DEFINITION,
        LIABILITY_DEFINITION,
        BadMonth,
        FutureMonth,
        check_month,
        last_complete_month,
        monthly_report,
        parse_month,
    )
    from bot.reports import summary_lines, write_report_files

    config = _load(config_path)
    now = cli_clock()()
    try:
        first = last_complete_month(now, config) if month is None else parse_month(month)
        check_month(first, now, config)
    except BadMonth:
        click.echo(f"error: --month {month!r} is not a month: write it as YYYY-MM", err=True)
        sys.exit(2)
    except FutureMonth:
        click.echo(f"error: {month} has not begun yet: nothing to report", err=True)
        sys.exit(2)
    conn = _open_database(config, upgrade=False)
    with contextlib.closing(conn):
        report = monthly_report(conn, first, config, now=now)
    i18n = I18n.load(config.program.default_language)

    def english(key: str, /, **params: object) -> str:
        return i18n.t("en", key, **params)

    for line in summary_lines(report, english):
        click.echo(line)
    click.echo(f"Definitions: {BREAKAGE_DEFINITION}; {LIABILITY_DEFINITION}.")
    with cli_progress("report", "files", description=f"writing {first:%Y-%m}") as progress:
        written = write_report_files(report, directory, english, config, progress)
    for path in written:
        click.echo(f"wrote {path}", err=True)
    sys.exit(0 if report.roll.reconciles else 1)


@main.group("api-keys")
def api_keys() -> None:
    """Issue, list and revoke the till API's keys (one per store)."""


@api_keys.command("create")
@config_option
@click.option("--store", required=True, help="The store whose till will use the key.")
def api_keys_create(config_path: Path, store: str) -> None:
    """Issue a key for a store and print its id and secret (the secret only this once)."""
    from bot.programme.till_api import draw_key
    from storage.api_keys import create_key

    store = store.strip()
    if not 1 <= len(store) <= 64:
        click.echo("error: --store is 1 to 64 characters", err=True)
        sys.exit(2)
    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    with contextlib.closing(conn):
        key_id, secret = draw_key()
        key = create_key(conn, key_id, store, secret, now=cli_clock()())
    api, server = config.api, config.server
    click.echo(f"store   {key.store}")
    click.echo(f"key id  {key.key_id}")
    click.echo(f"secret  {secret}")
    click.echo(
        "The secret is shown only now: give it to the store's till (e.g. as POINTSBOT_API_SECRET"
        " with POINTSBOT_API_KEY set to the key id) and keep it out of logs and tickets."
    )
    click.echo(
        'The till signs every request with it (README, "The till API"; examples/till.py).'
        f" The API is served at http://{server.host}:{server.port}/v1/ when [api] enabled"
        f" ({'enabled' if api.enabled else 'not enabled yet'} in {config_path})."
    )


@api_keys.command("revoke")
@config_option
@click.argument("key_id")
def api_keys_revoke(config_path: Path, key_id: str) -> None:
    """Revoke a key for good: the API refuses its requests from now on."""
    from storage.api_keys import revoke_key
    from storage.errors import NotFound

    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    with contextlib.closing(conn):
        try:
            key = revoke_key(conn, key_id, now=cli_clock()())
        except NotFound:
            click.echo(f"error: no API key {key_id}", err=True)
            sys.exit(2)
    assert key.revoked_at is not None
    click.echo(f"{key.key_id} ({key.store}) revoked at {key.revoked_at.isoformat()}")


@api_keys.command("list")
@config_option
def api_keys_list(config_path: Path) -> None:
    """List every key issued: store, key id, when created and revoked (never the secret)."""
    from storage.api_keys import all_keys

    config = _load(config_path)
    conn = _open_database(config, upgrade=True)
    with contextlib.closing(conn):
        keys = all_keys(conn)
    if not keys:
        click.echo("no API keys (issue one with `pointsbot api-keys create --store NAME`)")
        return
    tz = config.program.tz
    width = max(5, *(len(key.store) for key in keys))
    click.echo(f"{'store':<{width}}  {'key id':<19}  {'created':<16}  revoked")
    for key in keys:
        created = key.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        revoked = (
            "-"
            if key.revoked_at is None
            else key.revoked_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        )
        click.echo(f"{key.store:<{width}}  {key.key_id:<19}  {created:<16}  {revoked}")


def _verbose() -> bool:
    """Whether `pointsbot -v` was given (debug logging)."""
    parent = click.get_current_context().parent
    return parent is not None and bool(parent.params.get("verbose"))


@main.command("run")
@config_option
def run(config_path: Path) -> None:
    """Run the bot (long polling, or served by its webhook) until SIGINT or SIGTERM."""
    config = _load(config_path, to_run=True)
    from bot.logs import configure_logging

    # Order matters: before the application is built, which scrubs the token on these handlers.
    configure_logging(config.logging, verbose=_verbose())
    token = token_from_env()
    if token is None:
        click.echo(
            f"error: no bot token: set {TOKEN_ENV} (from @BotFather), or try `pointsbot demo`.",
            err=True,
        )
        sys.exit(2)
    if config.telegram.mode == "webhook" and webhook_secret_from_env() is None:
        click.echo(
            f'error: [telegram] mode = "webhook" needs {WEBHOOK_SECRET_ENV} set (a random'
            " 1-256 characters of A-Z, a-z, 0-9, _ and -; Telegram sends it back with each update)",
            err=True,
        )
        sys.exit(2)
    # The points-value guarantee, before anything starts (the bot checks again at start).
    _check_guarantee(config, config_path)
    from bot.app import build_application
    from bot.web import ALLOWED_UPDATES

    app = build_application(config, token)
    logging.getLogger(__name__).info("pointsbot starting (database %s)", config.storage.shown)
    # run_polling installs SIGINT/SIGTERM handlers and shuts down cleanly on either.
    try:
        if config.telegram.mode == "webhook" or config.storage.postgres:
            # One of several processes, maybe: only the leader polls (bot/leader.py).
            asyncio.run(_serve_until_signalled(app))
        else:
            app.run_polling(allowed_updates=list(ALLOWED_UPDATES))
    except ConfigError as exc:  # TermsRefused at start (a database migrated meanwhile)
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if app.bot_data.election.lost.is_set():
        from bot.leader import EXIT_LEADERSHIP_LOST

        # Stopped as on SIGTERM; the supervisor starts this process again, as a standby.
        sys.exit(EXIT_LEADERSHIP_LOST)


async def _serve_until_signalled(app: BotApp) -> None:
    """Webhook mode or PostgreSQL: serve until SIGINT or SIGTERM (or, leading, until the
    leadership is lost), then shut down as run_polling does (stop taking deliveries, handle
    what was received, close)."""
    from bot.app import running
    from bot.web import ALLOWED_UPDATES

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running(app, allowed_updates=list(ALLOWED_UPDATES)):
        lost = asyncio.ensure_future(app.bot_data.election.lost.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait((lost, stopped), return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        stopped.cancel()


@main.command("demo")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The programme (default: {DEFAULT_CONFIG} if present, else {EXAMPLE_CONFIG}).",
)
@click.option(
    "--api",
    is_flag=True,
    help="Serve the till API too ([server] host and port) with a demo key, for examples/till.py.",
)
def demo(config_path: Path | None, api: bool) -> None:
    """Chat with the bot in this terminal: local Bot API sandbox, sample data, no token."""
    if config_path is None:
        config_path = Path(DEFAULT_CONFIG)
        if not config_path.exists():
            config_path = Path(EXAMPLE_CONFIG)
    config = _load(config_path)
    from bot.logs import configure_logging

    verbose = _verbose()
    configure_logging(config.logging, verbose=verbose)
    if not verbose:
        # The terminal is the chat: keep the scheduler's and PTB's INFO lines out of it.
        logging.getLogger().setLevel(logging.WARNING)
    from bot.sandbox.demo import run_demo

    sys.exit(asyncio.run(run_demo(config, api=api)))


if __name__ == "__main__":
    main()
