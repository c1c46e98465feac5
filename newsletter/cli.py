"""The command line: each command parses options, calls one library function, prints.

Exit codes: 0 success; 1 the job ran but something failed (e.g. a source could not be
fetched); 2 bad configuration or usage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import stat
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from newsletter import __version__
from newsletter.errors import ConfigError, NewsletterError
from newsletter.models import (
    DeliveryStatus,
    Edition,
    Paper,
    SendOutcome,
    Subscriber,
    SubscriberStatus,
    issue_name,
)

# Types only: each command imports what it runs when it runs (`newsletter --help` stays
# light: SQLAlchemy, scikit-learn and the others are not loaded for it).
if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

    from newsletter.config import Settings
    from newsletter.personal.interests import SubscriberInterests
    from newsletter.pipeline import FetchReport, SendReport
    from newsletter.store import Store


class Context:
    """What the group's options decided, shared with every command."""

    def __init__(self, config: str | None, database_url: str | None, quiet: bool = False):
        self.config_arg = config
        self.database_url = database_url
        self.quiet = quiet

    def settings(self) -> Settings:
        from newsletter.config import find_config, load_settings

        return load_settings(
            find_config(self.config_arg), overrides={"database_url": self.database_url}
        )

    @contextmanager
    def store(self, settings: Settings) -> Iterator[Store]:
        from newsletter.store import Store

        store = Store.open(settings.database_url)
        try:
            yield store
        finally:
            store.close()


def _now() -> dt.datetime:
    """The one place the CLI reads the clock."""
    return dt.datetime.now(dt.UTC)


class _Program(click.Group):
    """The top group: whatever command runs below it, a :class:`NewsletterError` (what a
    user can cause or fix) becomes one line on stderr and the error's exit code; anything
    else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(e.exit_code)


class _JsonFormatter(logging.Formatter):
    """One JSON object per record; a record's ``fields`` (a dict passed as
    ``extra={"fields": ...}``, e.g. the send progress counts) become keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update({k: v for k, v in fields.items() if k not in doc})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message``, the time in ISO 8601 with its UTC offset (local
    time, the offset of that instant: a log read across a DST change or from another
    zone stays unambiguous)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        local = dt.datetime.fromtimestamp(record.created, dt.UTC).astimezone()
        return local.isoformat(timespec="milliseconds")


def _setup_logging(verbose: int, quiet: bool, fmt: str) -> None:
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter())
    root = logging.getLogger("newsletter")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # The scheduler's own warnings (a run missed, a job that raised) in the same format.
    aps = logging.getLogger("apscheduler")
    aps.handlers[:] = [handler]
    aps.setLevel(max(level, logging.WARNING))
    aps.propagate = False


def _parse_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def _edition_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--edition",
        type=click.Choice([e.value for e in Edition]),
        default=Edition.DAILY.value,
        show_default=True,
        callback=lambda _ctx, _param, value: Edition(value),
        help=what,
    )


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


#: The issue a command works on (digest, send, preview).
_issue_date_option = click.option(
    "--date",
    "date",
    callback=_parse_date,
    metavar="DATE",
    help="Issue date (YYYY-MM-DD); default today in schedule.timezone.",
)


# --------------------------------------------------------------------------- group


@click.group(
    cls=_Program,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
    ctx.obj = Context(config, database_url, quiet)


pass_app = click.make_pass_decorator(Context)


# --------------------------------------------------------------------------- config


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@pass_app
def config_check(app: Context) -> None:
    """Validate the configuration and print the effective settings (secrets masked).

    Settings are layered: defaults < config file < NEWSLETTER_* environment variables
    (NEWSLETTER_DATABASE_URL, NEWSLETTER_SMTP__HOST, ...) < command-line flags.
    """
    from newsletter.config import check_smtp_login, effective_toml
    from newsletter.schedule import zone, zone_name

    settings = app.settings()
    tz = zone_name(zone(settings.schedule))  # an unnamed machine zone is a config error
    whose = "schedule.timezone" if settings.schedule.timezone else "the machine's"
    click.echo(effective_toml(settings), nl=False)
    check_smtp_login(settings)
    click.secho(
        f"ok: {len(settings.sources)} source(s) configured; time zone {tz} ({whose})",
        fg="green",
        err=True,
    )


# --------------------------------------------------------------------------- fetch


@cli.command()
@click.option(
    "-s", "--source", "only", multiple=True, metavar="NAME", help="Only this source (repeatable)."
)
@pass_app
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


def render_fetch_report(report: FetchReport) -> str:
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


def _paper_json(p: Paper) -> dict[str, Any]:
    d = dataclasses.asdict(p)
    for k, v in d.items():
        if isinstance(v, dt.datetime):
            d[k] = v.isoformat()
        elif isinstance(v, tuple):
            d[k] = list(v)
    return d


# --------------------------------------------------------------------------- digest


@cli.command()
@_issue_date_option
@click.option("-w", "--width", type=click.IntRange(min=40), default=100, show_default=True)
@click.option(
    "--as",
    "as_email",
    metavar="EMAIL",
    help='As this subscriber gets it: their "For you" (with why each paper is there) above '
    "the topics, in the order of their interests.",
)
@_edition_option("The daily issue, or the weekly one (the week up to DATE).")
@pass_app
def digest(
    app: Context, date: dt.date | None, width: int, as_email: str | None, edition: Edition
) -> None:
    """Print the day's (or the week's) digest as text: the topics, their labels and picks.

    The quickest way to see what the clustering did with the papers in the database, and
    (--as) what a subscriber's interests make of it; render.for_you sets how many papers
    "For you" holds.
    """
    from newsletter.pipeline import build_issue_digest, issue_date_for
    from newsletter.topics import format_digest

    settings = app.settings()
    issue_date = date or issue_date_for(_now(), settings)
    with app.store(settings) as store:
        sub = _subscriber(store, as_email) if as_email is not None else None
        mine = store.interests(sub.id) if sub is not None else None
        d = build_issue_digest(store, settings, issue_date, edition)
    if sub is None or mine is None:
        click.echo(format_digest(d, width=width))
        return
    from newsletter.personal.digest import format_personal, personal_digest

    seen = personal_digest(d, mine, count=settings.render.for_you, seed=settings.topics.seed)
    click.echo(format_personal(seen, who=sub.email, width=width))


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
def demo(app: Context, directory: Path) -> None:
    """Run the whole job on the bundled sample feeds, offline.

    Writes DIR/newsletter.toml pointing at the sample feeds shipped with the package and
    adds five sample subscribers, two of them weekly; fetches the feeds into
    DIR/newsletter.db and prints the day's topics; then sends the daily issue to the three
    daily readers and the weekly one to the two weekly readers, as `newsletter send
    [--edition weekly]` does, through the outbox transport: one .eml file per subscriber
    in DIR/outbox/DATE/ and DIR/outbox/DATE-weekly/.  Run it again and nobody is mailed
    twice.  Afterwards, try the other commands with `-c DIR/newsletter.toml`.
    """
    from newsletter.config import load_settings
    from newsletter.pipeline import (
        build_issue_digest,
        issue_date_for,
        outbox_folder,
        run_fetch,
        run_send,
    )
    from newsletter.samples import DEMO_SUBSCRIBERS, DEMO_WEEKLY, write_demo_config
    from newsletter.store import Store
    from newsletter.topics import format_digest

    config_path = write_demo_config(directory)
    click.echo(f"demo config: {config_path}", err=True)
    settings = load_settings(config_path, env={})
    now = _now()
    issue_date = issue_date_for(now, settings)
    code = 0
    with Store.open(settings.database_url) as store:
        if not store.subscribers():
            store.import_subscribers(
                DEMO_SUBSCRIBERS + DEMO_WEEKLY,
                now=now,
                cadences={email: Edition.WEEKLY for email, _ in DEMO_WEEKLY},
            )
        fetched = run_fetch(settings, store, now=now)
        click.echo(render_fetch_report(fetched))
        click.echo()
        click.echo(format_digest(build_issue_digest(store, settings, issue_date)))
        for edition in Edition:
            report = run_send(
                settings, store, issue_date=issue_date, now=_now, fetch=False, edition=edition
            )
            code = max(code, _print_send_report(report))
    outbox = Path(settings.delivery.outbox_dir)
    folders = " and ".join(f"{outbox / outbox_folder(issue_date, e)}/" for e in Edition)
    click.secho(
        f"\nok: the daily and the weekly issue are in {folders} (one .eml per subscriber); "
        f"next: newsletter -c {config_path} preview --edition weekly --out "
        f"{directory / 'preview'}; for their links: newsletter -c {config_path} serve",
        fg="green",
        err=True,
    )
    sys.exit(max(code, 0 if fetched.ok else 1))


# --------------------------------------------------------------------------- subscribers


@cli.group()
def subscribers() -> None:
    """Add, remove, list, import and export subscribers; set and show their interests."""


_status_option = click.option(
    "--status",
    type=click.Choice([s.value for s in SubscriberStatus]),
    callback=lambda _ctx, _param, value: SubscriberStatus(value) if value else None,
    help="Only these.",
)


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name, used in the greeting.")
@pass_app
def subscribers_add(app: Context, email: str, name: str) -> None:
    """Add EMAIL (or bring back someone who unsubscribed: an explicit add does that)."""
    from newsletter.subscribers import clean_name, normalise_email

    settings = app.settings()
    addr = normalise_email(email)
    with app.store(settings) as store:
        sub, changed = store.add_subscriber(addr, clean_name(name), now=_now())
    click.echo(f"{'added' if changed else 'already subscribed'}: {sub.email}")


@subscribers.command("remove")
@click.argument("email")
@pass_app
def subscribers_remove(app: Context, email: str) -> None:
    """Unsubscribe EMAIL: never mailed again unless added again explicitly.  Their
    interests are kept, for when they come back."""
    settings = app.settings()
    with app.store(settings) as store:
        found = _subscriber(store, email)
        store.set_subscriber_status(found.id, SubscriberStatus.UNSUBSCRIBED, now=_now())
    click.echo(f"unsubscribed: {found.email}")


def _subscriber(store: Store, email: str) -> Subscriber:
    """The subscriber with address ``email``; a usage error naming it if there is none."""
    from newsletter.subscribers import normalise_email

    # The stored form first: a row kept as it was by migration 2 goes by that.
    found = store.subscriber(email.strip())
    if found is None:
        addr = normalise_email(email)
        found = store.subscriber(addr)
        if found is None:
            raise click.ClickException(f"no subscriber {addr}")
    return found


#: Library problems printed by `subscribers set`; the rest are counted.
_SHOWN_PROBLEMS = 50
#: Library titles `subscribers show` lists.
_SHOWN_TITLES = 5


@subscribers.command("set")
@click.argument("email")
@click.option(
    "-k", "--keyword", "keywords", multiple=True, metavar="TEXT", help="A keyword (repeatable)."
)
@click.option(
    "-a", "--author", "authors", multiple=True, metavar="NAME", help="An author (repeatable)."
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    metavar="CAT",
    help="An arXiv category such as cs.IR or hep-th (repeatable).",
)
@click.option(
    "--library",
    metavar="FILE",
    help="Papers they like: a BibTeX or RIS export, or arXiv ids, arXiv links and DOIs one "
    "a line; - reads standard input.",
)
@click.option(
    "--only-for-you/--all-topics",
    "only_for_you",
    default=None,
    help='Their email holds "For you" alone, or "For you" above every topic (the default).',
)
@click.option("--clear", is_flag=True, help="Empty all their interests first.")
@click.option(
    "--cadence",
    type=click.Choice([e.value for e in Edition]),
    callback=lambda _ctx, _param, value: Edition(value) if value else None,
    help="daily: the issue of every sending day; weekly: one issue on schedule.weekly_day. "
    "Switching loses and repeats nothing: the next issue they get covers everything since "
    "the last one they got.",
)
@pass_app
def subscribers_set(
    app: Context,
    email: str,
    keywords: tuple[str, ...],
    authors: tuple[str, ...],
    categories: tuple[str, ...],
    library: str | None,
    only_for_you: bool | None,
    clear: bool,
    cadence: Edition | None,
) -> None:
    """Set EMAIL's interests: what their "For you" section is picked by, and the order of
    their topics; and (--cadence) whether they get the daily or the weekly issue.

    \b
    Each option given replaces that part of their interests; the parts not given are
    kept (`subscribers show EMAIL` prints them).  So
      newsletter subscribers set ada@example.org -k retrieval -k "dense retrieval"
    makes their keywords exactly these two and leaves authors, categories and library as
    they were.  An empty value empties its part (--keyword '', --library ''); --clear
    empties everything first.

    A library's papers given by arXiv id alone are looked up on arXiv (fetch.arxiv_api_url,
    politely; a paper any library already holds is not asked again).  What cannot be
    used (a broken entry, an unknown id, arXiv not answering) is a warning and the rest is
    stored; ids still without a title are looked up again at the next `subscribers set`.
    A file that is not a library at all, or has no usable paper, stores nothing (exit
    code 2).  An unsubscribed or bounced subscriber's interests are stored too, for when
    they come back.
    """
    from newsletter.personal import stated, update

    change = stated.change(
        keywords=_given(keywords),
        authors=_given(authors),
        categories=_given(categories),
        only_for_you=only_for_you,
        base=stated.InterestsChange.clear() if clear else None,
    )
    parsed = None
    if library == "":
        change = stated.change(library=(), base=change)
    elif library is not None:
        parsed = update.read_library_file(
            _read_library_bytes(library), name=library, filename=library
        )
    settings = app.settings()
    with app.store(settings) as store:
        sub = _subscriber(store, email)
        if cadence is not None:
            sub = store.set_cadence(sub.id, cadence, now=_now()) or sub
            if change.is_empty and parsed is None:  # the cadence alone
                click.echo(f"set: {sub.email}: {sub.cadence.value}")
                return
        report = update.set_interests(
            settings,
            store,
            sub.id,
            change,
            library=parsed,
            now=_now(),
            on_look_up=lambda n: _announce_look_up(n, settings),
        )
    if report is None:  # removed meanwhile
        raise click.ClickException(f"no subscriber {sub.email}")
    for problem in report.problems[:_SHOWN_PROBLEMS]:
        click.secho(f"warning: {problem}", fg="yellow", err=True)
    if len(report.problems) > _SHOWN_PROBLEMS:
        click.secho(
            f"warning: ... and {len(report.problems) - _SHOWN_PROBLEMS} more",
            fg="yellow",
            err=True,
        )
    if report.lookup is not None:
        lk = report.lookup
        click.echo(
            f"looked up {len(lk.found) + len(lk.missing) + len(lk.failed)} arXiv id(s) in "
            f"{lk.requests} request(s): {len(lk.found)} found, {len(lk.missing)} unknown, "
            f"{len(lk.failed)} not answered",
            err=True,
        )
    if sub.status is not SubscriberStatus.ACTIVE:
        click.echo(f"note: {sub.email} is {sub.status.value}: nothing is sent to them", err=True)
    cadence_note = f"; {sub.cadence.value}" if cadence is not None else ""
    click.echo(f"set: {sub.email}: {_interests_summary(report.interests)}{cadence_note}")


def _announce_look_up(ids: int, settings: Settings) -> None:
    from newsletter.personal.fetch import BATCH_SIZE

    requests = -(-ids // BATCH_SIZE)
    wait = (requests - 1) * settings.fetch.min_interval
    took = (
        f", some {wait:.0f} s at one request per {settings.fetch.min_interval:g} s" if wait else ""
    )
    click.echo(f"looking up {ids} arXiv id(s) in {requests} request(s){took}...", err=True)


def _given(values: tuple[str, ...]) -> list[str] | None:
    """An option's values: ``None`` when not given (keep), empty values dropped (so
    ``--keyword ''`` alone empties the keywords)."""
    return [v for v in values if v != ""] if values else None


def _read_library_bytes(path: str) -> bytes:
    """A library file's bytes (``-``: standard input), at most one byte over the cap."""
    from newsletter.personal.library import BadLibrary
    from newsletter.personal.update import READ_LIMIT

    if path == "-":
        return sys.stdin.buffer.read(READ_LIMIT)
    try:
        # a FIFO or a device would block or never end: refused unopened
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BadLibrary(f"{path}: not a regular file")
        with open(path, "rb") as fh:
            return fh.read(READ_LIMIT)
    except OSError as e:
        raise BadLibrary(f"{path}: cannot read: {e.strerror}") from None


def _count(n: int, word: str, words: str = "") -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def _interests_summary(mine: SubscriberInterests) -> str:
    i = mine.interests
    parts = [
        _count(len(i.keywords), "keyword"),
        _count(len(i.authors), "author"),
        _count(len(i.categories), "category", "categories"),
        f"a library of {_count(mine.library_size, 'paper')}"
        + (f" ({len(mine.waiting)} without a title yet)" if mine.waiting else ""),
    ]
    mode = '"For you" only' if mine.only_for_you else '"For you" and every topic'
    return ", ".join(parts) + f"; {mode}"


@subscribers.command("show")
@click.argument("email")
@pass_app
def subscribers_show(app: Context, email: str) -> None:
    """Print EMAIL's status and interests (keywords, authors, categories, library)."""
    settings = app.settings()
    with app.store(settings) as store:
        sub = _subscriber(store, email)
        mine = store.interests(sub.id)
    i = mine.interests
    name = f" ({sub.name})" if sub.name else ""
    lines = [
        f"{sub.email}{name}: {sub.status.value}, {sub.cadence.value}, "
        f"since {sub.created_at.date().isoformat()}"
    ]
    if mine.is_empty:
        lines.append(
            'no interests stated: their email has no "For you" section '
            "(`newsletter subscribers set` states some)"
        )
        click.echo("\n".join(lines))
        return
    for label, values in (
        ("keywords", i.keywords),
        ("authors", i.authors),
        ("categories", i.categories),
    ):
        lines.append(f"{label + ':':<12}{'; '.join(values) or '-'}")
    lines.append(
        f"{'email:':<12}"
        + ('"For you" only' if mine.only_for_you else '"For you" above every topic')
    )
    lines.append(f"{'library:':<12}{_count(mine.library_size, 'paper')}")
    for paper in i.library[:_SHOWN_TITLES]:
        lines.append(f"  - {_clip(' '.join(paper.title.split()) or paper.id or '', 90)}")
    if len(i.library) > _SHOWN_TITLES:
        lines.append(f"  ... and {len(i.library) - _SHOWN_TITLES} more")
    if mine.waiting:
        shown = ", ".join(mine.waiting[:_SHOWN_TITLES])
        more = (
            f" and {len(mine.waiting) - _SHOWN_TITLES} more"
            if len(mine.waiting) > _SHOWN_TITLES
            else ""
        )
        lines.append(f"  without a title yet (they count once it is found): {shown}{more}")
    click.echo("\n".join(lines))


@subscribers.command("list")
@_status_option
@pass_app
def subscribers_list(app: Context, status: SubscriberStatus | None) -> None:
    """List subscribers with their status."""
    settings = app.settings()
    with app.store(settings) as store:
        subs = store.subscribers(status)
    rows = [
        [s.email, s.name, s.status.value, s.cadence.value, s.created_at.date().isoformat()]
        for s in subs
    ]
    click.echo(_table(["EMAIL", "NAME", "STATUS", "CADENCE", "SINCE"], rows))
    click.echo(f"{len(subs)} subscriber(s)", err=True)


@subscribers.command("import")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--encoding",
    metavar="NAME",
    help="The file's encoding if it is not UTF-8 (e.g. latin-1, cp1252, utf-16-le). "
    "Default: UTF-8, or UTF-16 when the file starts with its byte-order mark.",
)
@pass_app
def subscribers_import(app: Context, file: BinaryIO, encoding: str | None) -> None:
    """Import subscribers from a CSV FILE with a header row (columns: email, name, and
    cadence: daily or weekly).

    Optional columns set interests: keywords, authors and categories (several values
    separated by ;) and only_for_you (yes or no).  A cell with a value replaces that part
    of the subscriber's interests (as `subscribers set` does); an empty cell keeps it.

    Bad rows are reported by line number and the good ones imported.  People who
    unsubscribed or bounced are not brought back by an import (nor their interests
    changed).  Exit code 1 if any row was bad; 2 (nothing imported) if the file is not
    CSV text in the expected encoding or a quote is left open.  Reads what `subscribers
    export` writes.
    """
    from newsletter import subscribers as subs

    data = file.read(subs.MAX_CSV_BYTES + 1)
    if len(data) > subs.MAX_CSV_BYTES:
        raise subs.BadCsv(f"{file.name}: larger than {subs.MAX_CSV_BYTES:,} bytes; split it")
    rows, problems = subs.read_csv(subs.decode_csv(data, encoding))
    settings = app.settings()
    with app.store(settings) as store:
        result = store.import_subscribers(
            [(r.email, r.name) for r in rows],
            now=_now(),
            interests={r.email: r.interests for r in rows if r.interests is not None},
            cadences={r.email: r.cadence for r in rows if r.cadence is not None},
        )
    for p in problems:
        click.secho(f"line {p.line}: {p.reason}", fg="red", err=True)
    for email in result.kept_out:
        click.echo(f"kept out (unsubscribed or bounced): {email}", err=True)
    interests = f", interests set {result.interests_set}" if result.interests_set else ""
    click.echo(
        f"imported {result.added}, already subscribed {result.unchanged}, "
        f"kept out {len(result.kept_out)}, bad rows {len(problems)}{interests}"
    )
    if problems:
        sys.exit(1)


@subscribers.command("export")
@_status_option
@pass_app
def subscribers_export(app: Context, status: SubscriberStatus | None) -> None:
    """Write subscribers as CSV to standard output (importable again), with their stated
    interests (keywords, authors, categories, only_for_you; not their libraries).

    A cell starting with =, +, -, @, a tab or a CR is written with a ' in front, so that
    a spreadsheet shows it instead of running it as a formula; `subscribers import` takes
    the ' off again.
    """
    from newsletter.subscribers import write_csv

    settings = app.settings()
    with app.store(settings) as store:
        listed = store.subscribers(status)
        interests = store.all_interests(status)
    click.echo(write_csv(listed, interests), nl=False)


# --------------------------------------------------------------------------- send


@cli.command()
@_issue_date_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Fetch, then build every message and send none; the ledger is not touched.",
)
@click.option(
    "--to",
    "to",
    metavar="ADDRESS",
    help="Send one test copy to ADDRESS; the ledger is not touched.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Send at most N messages in this run; the rest stay queued.",
)
@click.option(
    "--retry-failed", is_flag=True, help="Also resend messages that failed with transient errors."
)
@click.option(
    "--worker",
    is_flag=True,
    help="Share the issue with other `send --worker` processes (here or on other machines "
    "with PostgreSQL); a dead worker's rows are taken over after delivery.lease_seconds.",
)
@click.option(
    "--no-fetch", is_flag=True, help="Do not fetch; build the issue from the papers already stored."
)
@_edition_option(
    "Which issue: the daily one for the daily subscribers, or the weekly one (the week up "
    "to DATE) for the weekly ones."
)
@pass_app
def send(
    app: Context,
    date: dt.date | None,
    dry_run: bool,
    to: str | None,
    limit: int | None,
    retry_failed: bool,
    no_fetch: bool,
    worker: bool,
    edition: Edition,
) -> None:
    """Fetch, group, render and deliver the day's issue to every subscriber of its cadence
    (--edition weekly: the week's), or resume it.

    Safe to run again: the ledger makes sure nobody gets the same issue twice, and a run
    that was interrupted picks up where it stopped.  SIGTERM or Ctrl-C stops it once the
    messages in flight are recorded, with the summary (a second signal exits at once).
    -v logs its progress every few seconds.  Exit code 0 when everyone was mailed, 1 when
    this run failed some messages, deferred ones are left (--retry-failed sends them), or
    the run stopped early (run it again to resume).
    """
    from newsletter import pipeline
    from newsletter.stopping import StopOnSignals

    settings = app.settings()
    now = _now()
    issue_date = date or pipeline.issue_date_for(now, settings)
    name = issue_name(issue_date, edition)
    with app.store(settings) as store:
        if to:
            reply = pipeline.send_test_copy(
                settings,
                store,
                to,
                issue_date=issue_date,
                now=now,
                fetch=not no_fetch,
                edition=edition,
            )
            click.echo(f"test copy of {name} sent to {to}: {reply}")
            return
        if dry_run:
            r = pipeline.dry_run(
                settings,
                store,
                issue_date=issue_date,
                now=now,
                fetch=not no_fetch,
                edition=edition,
            )
            if r.outcome is SendOutcome.EMPTY:
                click.echo(f"{name}: no new papers; nothing would be sent")
            else:
                click.echo(
                    f"dry run for {name}: {r.dry_run_messages} message(s) built, "
                    f"{r.dry_run_bytes:,} bytes; nothing sent"
                )
            return
        bar: ProgressBar[str] | None = None
        counts: Counter[str] = Counter()

        def start(n: int) -> None:
            nonlocal bar
            if n and sys.stderr.isatty():
                bar = click.progressbar(
                    length=n,
                    label=f"sending {name}",
                    file=sys.stderr,
                    item_show_func=lambda line: line,
                )
                bar.__enter__()

        def step(status: DeliveryStatus) -> None:
            counts[status.value] += 1
            if bar is not None:
                # The failures show as they happen, not only in the summary.
                shown = [f"{k} {counts[k]}" for k in ("failed", "deferred", "skipped") if counts[k]]
                bar.update(1, ", ".join(shown) or None)

        # SIGTERM (systemd, a timeout) or Ctrl-C: finish the messages in DATA, record them,
        # hand the rest back and print the summary; a second signal exits at once.
        stop = threading.Event()
        try:
            with StopOnSignals(stop, level=logging.WARNING):
                report = pipeline.run_send(
                    settings,
                    store,
                    issue_date=issue_date,
                    now=_now,
                    fetch=not no_fetch,
                    retry_failed=retry_failed,
                    limit=limit,
                    worker=worker,
                    stop=stop,
                    on_start=start,
                    progress=step,
                    edition=edition,
                )
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    sys.exit(_print_send_report(report))


def _print_send_report(report: SendReport) -> int:
    """The run's summary (this run's counts, then the issue's, both from the ledger); the
    exit code: 1 when this run failed or stopped, or deferred rows are left to retry."""
    if report.fetch is not None:
        click.echo(render_fetch_report(report.fetch), err=True)
    d = report.delivery
    if d is None:  # an empty day: run_send makes no other report without a delivery
        click.echo(f"{report.name}: no new papers; nothing sent (schedule.on_empty = skip)")
        return 0
    t = d.totals
    day = report.name
    again = f"--date {report.issue_date}" + (
        "" if report.edition is Edition.DAILY else f" --edition {report.edition.value}"
    )
    click.echo(f"{day}: {d.summary()}")
    for problem in d.problems:
        click.secho(f"  {problem}", fg="red", err=True)
    if d.problems_total > len(d.problems):
        click.secho(
            f"  ... and {d.problems_total - len(d.problems)} more "
            f"(`newsletter status {again}` lists them)",
            fg="red",
            err=True,
        )
    if d.stopped:
        click.secho(
            f"stopped: {d.stopped}; run `newsletter send` again to resume", fg="red", err=True
        )
    elif t.deferred:
        click.echo(
            f"{day}: {t.deferred} deferred (transient failures that outlasted the "
            f"retries) left to send: `newsletter send {again} --retry-failed` "
            "tries them again"
        )
    elif report.outcome is SendOutcome.ALREADY_SENT:
        click.echo(f"{day} was already sent to everyone; nothing to do")
    return 1 if (d.failed or d.stopped or t.deferred) else 0


@cli.command()
@click.option("--date", "date", callback=_parse_date, metavar="DATE", help="Only this issue.")
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=10, show_default=True, help="Issues shown."
)
@click.option(
    "--edition",
    type=click.Choice([e.value for e in Edition]),
    callback=lambda _ctx, _param, value: Edition(value) if value else None,
    help="Only this edition's issues (with --date: which one; default daily).",
)
@pass_app
def status(app: Context, date: dt.date | None, limit: int, edition: Edition | None) -> None:
    """Show the subscribers and recent issues, daily and weekly: recipients, sent, failed
    (with reasons), pending, and the bounces and complaints that came back later
    (`bounces check`)."""
    from newsletter.lock import lock_holder

    settings = app.settings()
    with app.store(settings) as store:
        if date:
            issues = [i for i in [store.issue(date, edition or Edition.DAILY)] if i]
        else:
            issues = store.issues(limit, edition=edition)
        reports = store.bounce_counts(i.id for i in issues)
        people = store.count_subscribers()
        rows, problems, unlisted = [], [], 0
        for i in issues:
            c = store.delivery_counts(i.id)
            later = reports[i.id]
            rows.append(
                [
                    i.issue_date.isoformat(),
                    i.edition.value,
                    i.status.value,
                    str(i.paper_count),
                    str(c.recipients),
                    str(c.sent),
                    str(c.failed),
                    str(c.deferred),
                    str(c.pending),
                    str(c.in_doubt),
                    str(later.get("hard", 0) + later.get("soft", 0)),
                    str(later.get("complaint", 0)),
                ]
            )
            if date:
                problems = store.delivery_problems(i.id, STATUS_PROBLEMS)
                unlisted = c.failed + c.deferred - len(problems)
        holder = lock_holder(store.engine)
    if holder:
        click.echo(f"sending now: {holder}")
    daemon_line = _daemon_summary(settings)
    if daemon_line:
        click.echo(daemon_line)
    click.echo("subscribers: " + ", ".join(f"{n} {s.value}" for s, n in people.items()))
    if not rows:
        click.echo("no issues yet" if not date else f"no issue for {date}")
        return
    click.echo(
        _table(
            [
                "ISSUE",
                "EDITION",
                "STATUS",
                "PAPERS",
                "RECIPIENTS",
                "SENT",
                "FAILED",
                "DEFERRED",
                "PENDING",
                "IN DOUBT",
                "BOUNCES",
                "COMPLAINTS",
            ],
            rows,
            right=frozenset(range(3, 12)),
        )
    )
    for email, st, reply in problems:
        click.echo(f"  {st}: {email}: {reply}")
    if unlisted > 0:
        click.echo(f"  ... and {unlisted} more")


#: Failed and deferred addresses `status --date` lists.
STATUS_PROBLEMS = 200


def _daemon_summary(settings: Settings) -> str | None:
    from newsletter.daemon import read_status

    st = read_status(settings)
    if st is None:
        return None
    if not st.running:
        line = f"daemon: not running (last seen as pid {st.pid}, {st.state})"
    else:
        started = st.started_at.isoformat(timespec="seconds")
        nxt = st.next_run.isoformat() if st.next_run else "none"
        line = f"daemon: {st.state} (pid {st.pid} since {started}); next run {nxt}"
    last = st.last
    if last:
        line += f"; last: {last.name} {last.outcome}"
        issue, run = last.issue, last.run
        if issue:
            line += f", sent {issue.sent}/{issue.recipients}"
            if run is None or run.sent != issue.sent:
                line += f" ({run.sent if run else 0} this run)"
            line += "".join(
                f", {k.replace('_', ' ')} {n}"
                for k in ("failed", "deferred", "pending", "in_doubt")
                if (n := getattr(issue, k))
            )
        if last.error:
            line += f" ({last.error})"
    checked = st.bounces
    if checked:
        line += f"\nbounce check: {checked.at.isoformat(timespec='seconds')}"
        if checked.read is not None:
            line += (
                f", read {checked.read}, marked bounced {checked.bounced}, "
                f"unsubscribed {checked.unsubscribed}"
            )
        if checked.error:
            line += f" ({checked.error})"
    return line


# --------------------------------------------------------------------------- daemon


@cli.command()
@pass_app
def daemon(app: Context) -> None:
    """Send each day's issue at schedule.send_at (schedule.timezone) on schedule.days.

    Runs until SIGTERM or SIGINT: the message in flight is finished, the ledger left
    consistent, and the exit code is 0 (a second signal exits at once).  At start, a send
    that is due (send time passed within schedule.misfire_grace_time) or was interrupted
    runs at once.  One daemon per database: a second one exits saying who runs.  Use
    `newsletter status` to see its state and next run.  It logs a line per event (-q:
    errors only, -v: more detail); `--log-format json` for log collectors.
    """
    from newsletter.config import check_smtp_login
    from newsletter.daemon import run_daemon

    settings = app.settings()
    check_smtp_login(settings)  # at start, not at the first send time
    if not app.quiet and not logging.getLogger("newsletter").isEnabledFor(logging.INFO):
        logging.getLogger("newsletter").setLevel(logging.INFO)  # a daemon's log is its output
    with app.store(settings) as store:
        run_daemon(settings, store, now=_now)


# --------------------------------------------------------------------------- preview


@cli.command()
@_issue_date_option
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("preview"),
    show_default=True,
    help="Folder to write into.",
)
@click.option("--open", "open_", is_flag=True, help="Open the HTML in a browser.")
@_edition_option("The daily issue, or the weekly one (the week up to DATE).")
@click.option(
    "--as",
    "as_email",
    metavar="EMAIL",
    help='As this subscriber gets it: their "For you" and topic order, their links.',
)
@pass_app
def preview(
    app: Context,
    date: dt.date | None,
    out: Path,
    open_: bool,
    edition: Edition,
    as_email: str | None,
) -> None:
    """Write the issue as issue.html, issue.txt and issue.eml (as a sample subscriber gets it,
    or with --as, a subscriber).

    Uses the stored issue if it was already sent, else renders it from the stored papers
    without saving anything.  With --as, the subscriber's copy as it was frozen for them
    when their row was queued, else as their interests make it now.
    """
    from newsletter import pipeline

    settings = app.settings()
    now = _now()
    issue_date = date or pipeline.issue_date_for(now, settings)
    with app.store(settings) as store:
        if as_email is None:
            subscriber = Subscriber(
                0, "reader@example.org", "Sample Reader", SubscriberStatus.ACTIVE, now, now
            )
        else:
            subscriber = _subscriber(store, as_email)
        paths = pipeline.write_preview(
            settings,
            store,
            out,
            issue_date=issue_date,
            now=now,
            subscriber=subscriber,
            edition=edition,
            personal=as_email is not None,
        )
    for p in paths:
        click.echo(str(p))
    if open_:
        import webbrowser

        if not webbrowser.open(paths[0].resolve().as_uri()):
            click.echo("no browser found; open the HTML file yourself", err=True)


# --------------------------------------------------------------------------- web


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port."
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=4, show_default=True, help="Worker threads."
)
@click.option(
    "--trusted-proxy",
    metavar="IP",
    help="The front web server's address: its X-Forwarded-For names the client.",
)
@pass_app
def serve(app: Context, host: str, port: int, threads: int, trusted_proxy: str | None) -> None:
    """Serve the pages the emails link to: one-click unsubscribe (RFC 8058), sign-up with
    an emailed confirmation link, and the archive of past issues.

    Runs waitress until SIGINT or SIGTERM.  Needs NEWSLETTER_SECRET_KEY (the key the
    emails were signed with), except for the offline demo on this machine; list.base_url
    is the address people reach it at, normally through a web server that terminates TLS
    (see docs/web.md).
    """
    from newsletter.web import listening, make_app, make_server, run, secret_for

    settings = app.settings()
    secret = secret_for(settings, host)
    with app.store(settings) as store:
        server = make_server(
            make_app(settings, store, secret=secret),
            host=host,
            port=port,
            threads=threads,
            trusted_proxy=trusted_proxy,
        )
        where = ", ".join(listening(server))
        click.echo(f"serving {settings.list.base_url} on {where} (Ctrl-C stops)", err=True)
        run(server)


@cli.group()
def archive() -> None:
    """The archive of past issues as web pages."""


@archive.command("build")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@pass_app
def archive_build(app: Context, directory: Path) -> None:
    """Write the archive as static files: DIRECTORY/index.html, one
    DIRECTORY/YYYY-MM-DD/index.html per daily issue and DIRECTORY/weekly/YYYY-MM-DD/index.html
    per weekly one (the pages `newsletter serve` shows under /archive/), and the Atom feed
    DIRECTORY/archive.xml (served as /archive.xml), for hosting them elsewhere.
    """
    from newsletter.web.archive import build_archive

    settings = app.settings()
    with app.store(settings) as store:
        paths = build_archive(store, settings, directory)
    click.echo(f"wrote {len(paths) - 2} issue page(s), the index and the feed to {directory}")


# --------------------------------------------------------------------------- bounces


@cli.group()
def bounces() -> None:
    """Bounces that arrive later and spam complaints, from the bounce mailbox."""


@bounces.command("check")
@click.option("--dry-run", is_flag=True, help="Read and classify; record, change and move nothing.")
@pass_app
def bounces_check(app: Context, dry_run: bool) -> None:
    """Read the bounce mailbox ([bounces] in the config) once and print a summary.

    Each message is recorded once (reading the same mailbox twice changes nothing), then
    moved to bounces.processed_folder.  A hard bounce marks the subscriber bounced, soft
    bounces do after bounces.soft_limit within bounces.soft_days, a complaint
    unsubscribes at once; auto-replies never count (docs/bounces.md).  `subscribers add`
    brings a subscriber back.  Exit code 0 when the whole mailbox was read, 1 when it
    could not be (what was read is kept).
    """
    from newsletter.bounces import run_bounce_check

    settings = app.settings()
    if settings.bounces.kind == "none":
        raise ConfigError(
            'no bounce mailbox configured: set kind = "imap", "maildir" or "mbox" and url',
            file=settings.config_path or None,
            key="bounces.kind",
        )
    with app.store(settings) as store:
        report = run_bounce_check(settings, store, now=_now, dry_run=dry_run)
    click.echo("\n".join(report.summary()))
    if report.error:
        click.secho(f"stopped: {report.error}; run it again to read the rest", fg="red", err=True)
        sys.exit(1)


def main() -> None:
    cli(prog_name="newsletter")
