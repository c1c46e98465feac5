"""The command line: each command parses options, calls one library function, prints.

Exit codes: 0 success; 1 the job ran but something failed (e.g. a source could not be
fetched); 2 bad configuration or usage.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter import __version__
from newsletter.errors import NewsletterError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What the group's options decided, shared with every command."""

    def __init__(self, config: str | None, database_url: str | None):
        self.config_arg = config
        self.database_url = database_url

    def settings(self) -> Any:
        from newsletter.config import find_config, load_settings

        return load_settings(
            find_config(self.config_arg), overrides={"database_url": self.database_url}
        )

    @contextmanager
    def store(self, settings: Any) -> Iterator[Any]:
        from newsletter.store import Store

        store = Store.open(settings.database_url)
        try:
            yield store
        finally:
            store.close()


def _now() -> dt.datetime:
    """The one place the CLI reads the clock."""
    return dt.datetime.now(dt.UTC)


def reports_errors(fn: F) -> F:
    """Turn the library's errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NewsletterError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def _setup_logging(verbose: int, quiet: bool, fmt: str) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("newsletter")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()
) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


# --------------------------------------------------------------------------- group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="newsletter")
@click.option(
    "-c",
    "--config",
    metavar="FILE",
    envvar="NEWSLETTER_CONFIG",
    help="Config file (TOML). Default: $NEWSLETTER_CONFIG, else ./newsletter.toml if present.",
)
@click.option("--database-url", metavar="URL", help="Override database_url from the config.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors in the log.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log line format; json suits log collectors.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    config: str | None,
    database_url: str | None,
    verbose: int,
    quiet: bool,
    log_format: str,
) -> None:
    """A daily research-paper digest: pull paper feeds, group the day's papers into topics,
    and mail every subscriber one email.

    \b
    Start with the bundled sample data:   newsletter demo
    Check a configuration:                newsletter -c newsletter.toml config check
    Pull the configured feeds:            newsletter fetch
    See the day's topics:                 newsletter digest
    """
    _setup_logging(verbose, quiet, log_format)
    ctx.obj = Context(config, database_url)


pass_app = click.make_pass_decorator(Context)


# --------------------------------------------------------------------------- config


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@pass_app
@reports_errors
def config_check(app: Context) -> None:
    """Validate the configuration and print the effective settings (secrets masked).

    Settings are layered: defaults < config file < NEWSLETTER_* environment variables
    (NEWSLETTER_DATABASE_URL, NEWSLETTER_SMTP__HOST, ...) < command-line flags.
    """
    from newsletter.config import effective_toml

    settings = app.settings()
    click.echo(effective_toml(settings), nl=False)
    click.secho(f"ok: {len(settings.sources)} source(s) configured", fg="green", err=True)


# --------------------------------------------------------------------------- fetch


@cli.command()
@click.option(
    "-s", "--source", "only", multiple=True, metavar="NAME", help="Only this source (repeatable)."
)
@pass_app
@reports_errors
def fetch(app: Context, only: tuple[str, ...]) -> None:
    """Pull every configured source into the database and print a table of results.

    A source that fails is reported with its URL and reason; the others still run.
    Exit code 0 when every source succeeded, 1 when any failed.
    """
    from newsletter.pipeline import SourceRun, run_fetch

    settings = app.settings()
    if not settings.sources:
        raise click.UsageError(
            f"no sources configured in {settings.config_path or 'the defaults'}; "
            "add [[sources]] tables (see config.example.toml)"
        )
    total = len(only) if only else len(settings.sources)

    def progress(run: SourceRun) -> None:
        done = progress.count = getattr(progress, "count", 0) + 1  # type: ignore[attr-defined]
        click.echo(f"[{done}/{total}] {run.result.name}: {run.result.status.value}", err=True)

    with app.store(settings) as store:
        report = run_fetch(settings, store, now=_now(), only=only, on_source=progress)
        stored = store.count_papers()
    click.echo(render_fetch_report(report))
    failed = len(report.failed)
    summary = f"{report.new} new paper(s) from {len(report.runs)} source(s); {stored} stored in all"
    if failed:
        click.secho(f"{summary}; {failed} source(s) failed", fg="red", err=True)
        for run in report.failed:
            click.secho(
                f"  {run.result.name}: {run.result.url}: {run.result.error}", fg="red", err=True
            )
        sys.exit(1)
    click.secho(summary, fg="green", err=True)


def render_fetch_report(report: Any) -> str:
    rows = []
    for run in report.runs:
        r = run.result
        rows.append(
            [
                r.name,
                r.status.value,
                str(run.new),
                str(run.total),
                f"{r.elapsed:.1f}s",
                r.error or r.note,
            ]
        )
    return _table(
        ["SOURCE", "STATUS", "NEW", "TOTAL", "TIME", "ERROR / NOTE"],
        rows,
        right=frozenset({2, 3, 4}),
    )


# --------------------------------------------------------------------------- papers


@cli.command()
@click.option(
    "--since",
    callback=_parse_date,
    metavar="DATE",
    help="Only papers first seen on or after DATE (YYYY-MM-DD, UTC).",
)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_app
@reports_errors
def papers(app: Context, since: dt.date | None, limit: int | None, as_json: bool) -> None:
    """List stored papers, newest first."""
    settings = app.settings()
    since_dt = dt.datetime.combine(since, dt.time(), dt.UTC) if since else None
    with app.store(settings) as store:
        found = store.papers(since=since_dt, limit=limit)
    if as_json:
        for p in found:
            click.echo(json.dumps(_paper_json(p), ensure_ascii=False))
        return
    rows = [
        [
            p.id,
            (p.published.date().isoformat() if p.published else "-"),
            p.source,
            _clip(p.title, 70),
        ]
        for p in found
    ]
    click.echo(_table(["ID", "PUBLISHED", "SOURCE", "TITLE"], rows))
    click.echo(f"{len(found)} paper(s)", err=True)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _paper_json(p: Any) -> dict[str, Any]:
    import dataclasses

    d = dataclasses.asdict(p)
    for k, v in d.items():
        if isinstance(v, dt.datetime):
            d[k] = v.isoformat()
        elif isinstance(v, tuple):
            d[k] = list(v)
    return d


# --------------------------------------------------------------------------- digest


@cli.command()
@click.option(
    "--date",
    "date",
    callback=_parse_date,
    metavar="DATE",
    help="Issue date (YYYY-MM-DD); default today in schedule.timezone.",
)
@click.option("-w", "--width", type=click.IntRange(min=40), default=100, show_default=True)
@pass_app
@reports_errors
def digest(app: Context, date: dt.date | None, width: int) -> None:
    """Print the day's digest as text: the topics, their labels and picks.

    The quickest way to see what the clustering did with the papers in the database.
    """
    from newsletter.pipeline import build_issue_digest, issue_date_for
    from newsletter.topics import format_digest

    settings = app.settings()
    issue_date = date or issue_date_for(_now(), settings)
    with app.store(settings) as store:
        d = build_issue_digest(store, settings, issue_date)
    click.echo(format_digest(d, width=width))


# --------------------------------------------------------------------------- demo


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("newsletter-demo"),
    show_default=True,
    help="Where the demo's config, database and output go.",
)
@pass_app
@reports_errors
def demo(app: Context, directory: Path) -> None:
    """Run the whole job on the bundled sample feeds, offline.

    Writes DIR/newsletter.toml pointing at the sample feeds shipped with the package, then
    fetches them into DIR/newsletter.db and prints the day's digest.  Afterwards, try the
    other commands with `-c DIR/newsletter.toml`.
    """
    from newsletter.config import load_settings
    from newsletter.pipeline import build_issue_digest, issue_date_for, run_fetch
    from newsletter.samples import write_demo_config
    from newsletter.store import Store
    from newsletter.topics import format_digest

    config_path = write_demo_config(directory)
    click.echo(f"demo config: {config_path}", err=True)
    settings = load_settings(config_path)
    now = _now()
    with Store.open(settings.database_url) as store:
        report = run_fetch(settings, store, now=now)
        click.echo(render_fetch_report(report))
        click.echo()
        d = build_issue_digest(store, settings, issue_date_for(now, settings))
    click.echo(format_digest(d))
    click.secho(
        f"\nok: {report.new} new paper(s) stored in {settings.database_url}; "
        f"next: newsletter -c {config_path} papers",
        fg="green",
        err=True,
    )
    if not report.ok:
        sys.exit(1)


def main() -> None:
    cli(prog_name="newsletter")
