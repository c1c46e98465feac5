"""Settings: defaults < TOML file < ``NEWSLETTER_*`` environment < command-line flags.

Everything is validated here, once, into frozen dataclasses; the rest of the program never
sees a raw dict.  A bad value stops with one line naming the file, the key and what was
expected.  Secrets (SMTP password, signing key) come only from the environment.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import tomllib
import types
import typing
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from newsletter.errors import ConfigError
from newsletter.models import AnnounceType, SourceKind

ENV_PREFIX = "NEWSLETTER_"
#: Environment variables that hold secrets; never read from a file, never printed.
SECRET_ENV = {
    "smtp_password": "NEWSLETTER_SMTP_PASSWORD",
    "secret_key": "NEWSLETTER_SECRET_KEY",
    "bounces_password": "NEWSLETTER_BOUNCES_PASSWORD",
}
#: Where the config file is looked for when neither --config nor NEWSLETTER_CONFIG is given.
DEFAULT_CONFIG_NAMES = ("newsletter.toml",)
#: Environment variables with the prefix that are not settings.
_NOT_SETTINGS = {"NEWSLETTER_CONFIG", *SECRET_ENV.values()}
_NOT_SETTINGS_PREFIXES = ("NEWSLETTER_TEST_",)

T = TypeVar("T")


def _in(default: T, lo: float, hi: float, *, above: bool = False) -> T:
    """A number setting with its allowed range, ``lo <= value <= hi`` (``lo < value`` when
    ``above``).  Every number has one: a value far outside it is a typo or an attack, and
    would otherwise pass `config check` and fail (or misbehave) at run time."""
    return field(default=default, metadata={"range": (lo, hi, above)})


@dataclass(frozen=True)
class SourceSettings:
    """One feed to pull."""

    name: str
    url: str = ""  # http(s):// or file: URL; for hf-daily may contain {date}
    path: str = ""  # a local file instead of a URL (relative to the config file)
    kind: SourceKind = SourceKind.AUTO
    categories: tuple[str, ...] = ()  # keep only papers listed in one of these
    announce_types: tuple[AnnounceType, ...] = (AnnounceType.NEW, AnnounceType.CROSS)
    enabled: bool = True

    @property
    def location(self) -> str:
        return self.url or self.path


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = _in(30.0, 0, 600, above=True)  # seconds for a whole request, body included
    user_agent: str = ""  # empty: "newsletter/<version> (+<base_url>; <contact>)"
    max_bytes: int = _in(25_000_000, 1, 2**31 - 1)  # a larger body is refused
    min_interval: float = _in(3.0, 0, 3600)  # seconds between two requests to one host
    retries: int = _in(3, 0, 10)  # extra attempts on 429, 5xx and connection errors
    max_retry_after: float = _in(120.0, 0, 86400)  # a longer Retry-After fails the source
    window_days: int = _in(3, 1, 60)  # papers first seen this long ago still count as new
    # where library papers given by arXiv id alone are looked up (subscribers' interests)
    arxiv_api_url: str = "https://export.arxiv.org/api/query"


@dataclass(frozen=True)
class ListSettings:
    name: str = "Daily Papers"
    id: str = "daily-papers.localhost"  # List-Id, a domain-like identifier
    from_name: str = "Daily Papers"
    from_address: str = "newsletter@localhost"
    reply_to: str = ""
    contact: str = ""  # shown in the footer; defaults to from_address
    base_url: str = "http://localhost:8080"  # where `newsletter serve` is reachable


@dataclass(frozen=True)
class TopicSettings:
    topics: int | Literal["auto"] = _in("auto", 1, 50)
    min_topics: int = _in(3, 1, 50)
    max_topics: int = _in(12, 1, 50)
    min_papers: int = _in(8, 1, 100_000)  # below this the day is one section, not clustered
    seed: int = _in(42, 0, 2**32 - 1)  # numpy's seeds are 32-bit
    picks_per_topic: int = _in(3, 1, 20)
    trending_weight: float = _in(0.3, 0, 1)  # 0: closeness to the centre only; 1: upvotes
    watch_keywords: tuple[str, ...] = ()
    watch_authors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenderSettings:
    templates_dir: str = ""  # an operator's copy of templates/; empty: the bundled ones
    snippet_chars: int = _in(320, 0, 5000)
    max_authors: int = _in(3, 1, 100)
    for_you: int = _in(5, 0, 20)  # papers in each subscriber's "For you"; 0: no such section
    subject: str = "{list_name} — {date}: {topics}"


@dataclass(frozen=True)
class DeliverySettings:
    transport: Literal["outbox", "smtp"] = "outbox"
    outbox_dir: str = "outbox"
    # `send --worker`: a silent worker's rows are taken over after this many seconds.
    lease_seconds: float = _in(120.0, 0, 86400, above=True)
    # VERP: the envelope sender becomes "<local>+<signed tag>@<domain>" of this address, so a
    # bounce names the subscriber and the issue; empty: off (the sender is list.from_address).
    return_path: str = ""


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = _in(587, 1, 65535)
    tls: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    ca_file: str = ""  # extra CA certificates to trust (a private relay); empty: the system's
    timeout: float = _in(30.0, 0, 600, above=True)
    max_per_connection: int = _in(100, 1, 100_000)
    # Parallel connections; why 8: config.example.toml and bench/RESULTS.md.
    connections: int = _in(8, 1, 64)
    rate_limit: float = _in(0.0, 0, 10_000)  # messages per second in all; 0: unlimited
    dkim_key_file: str = ""  # PEM RSA private key; empty: no DKIM signature of our own
    dkim_selector: str = ""  # the DNS name <selector>._domainkey.<domain> holds the public key
    dkim_domain: str = ""  # d= of the signature; empty: the domain of list.from_address


@dataclass(frozen=True)
class ScheduleSettings:
    send_at: str = "07:30"
    fetch_at: str = ""  # an earlier fetch; empty: fetch when sending
    timezone: str = ""  # IANA name; empty: the machine's zone
    days: str = "mon-fri"
    weekly_day: str = "mon"  # the weekly edition's day, at send_at
    misfire_grace_time: int = _in(3600, 0, 86400)  # seconds
    on_empty: Literal["skip", "send"] = "skip"


@dataclass(frozen=True)
class BounceSettings:
    """The mailbox that bounces and complaints arrive in, and what they do to a subscriber."""

    kind: Literal["none", "imap", "maildir", "mbox"] = "none"
    url: str = ""  # imap: imaps://host[:port] or imap://host[:port] (STARTTLS); else a path
    username: str = ""  # IMAP login; the password comes from NEWSLETTER_BOUNCES_PASSWORD
    folder: str = "INBOX"  # IMAP folder to read (maildir/mbox: the url itself)
    processed_folder: str = "Processed"  # where a message goes once it is recorded
    ca_file: str = ""  # extra CA certificates for the IMAP server; empty: the system's
    timeout: float = _in(30.0, 0, 600, above=True)
    soft_limit: int = _in(3, 1, 100)  # soft bounces (on distinct issues) that bounce...
    soft_days: int = _in(14, 1, 365)  # ... within this many days
    check_interval: int = _in(60, 1, 10_080)  # minutes between two checks by the daemon


@dataclass(frozen=True)
class Secrets:
    smtp_password: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    bounces_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///newsletter.db"
    sources: tuple[SourceSettings, ...] = ()
    list: ListSettings = ListSettings()
    fetch: FetchSettings = FetchSettings()
    topics: TopicSettings = TopicSettings()
    render: RenderSettings = RenderSettings()
    delivery: DeliverySettings = DeliverySettings()
    smtp: SmtpSettings = SmtpSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    bounces: BounceSettings = BounceSettings()
    secrets: Secrets = Secrets()
    config_path: str = ""  # the file the settings came from; empty: defaults only


# --------------------------------------------------------------------------- loading


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use: --config, else $NEWSLETTER_CONFIG, else ./newsletter.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("NEWSLETTER_CONFIG")
    if env:
        return Path(env)
    for name in DEFAULT_CONFIG_NAMES:
        if Path(name).is_file():
            return Path(name)
    return None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the effective settings.

    ``path`` is the TOML file (``None``: defaults only); ``env`` defaults to ``os.environ``;
    ``overrides`` are dotted keys from command-line flags, e.g. ``{"database_url": ...}``.
    """
    env = os.environ if env is None else env
    where = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("no such file", file=where) from None
        except IsADirectoryError:
            raise ConfigError("is a directory, expected a TOML file", file=where) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"not valid TOML: {e}", file=where) from None
        except UnicodeDecodeError:
            raise ConfigError("not valid TOML: the file is not UTF-8 text", file=where) from None
        except OSError as e:
            raise ConfigError(f"cannot read: {e.strerror}", file=where) from None
        base_dir = p.resolve().parent
    for key in ("secrets", "config_path"):
        if key in data:
            raise ConfigError(
                "is not a file setting; secrets come only from "
                + " and ".join(SECRET_ENV.values()),
                file=where,
                key=key,
            )
    _merge(data, _env_layer(env), where="environment")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    data["secrets"] = {k: env.get(v, "") for k, v in SECRET_ENV.items()}
    settings = _build(Settings, data, where, "")
    settings = dataclasses.replace(settings, config_path=str(Path(path).resolve()) if path else "")
    settings = _resolve_paths(settings, base_dir)
    return _validate(settings, where)


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """``NEWSLETTER_DATABASE_URL`` -> database_url; ``NEWSLETTER_SMTP__HOST`` -> smtp.host."""
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        if name.startswith(_NOT_SETTINGS_PREFIXES):
            continue
        dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        target = _field_type(dotted)
        if target is None:
            raise ConfigError(
                "is not a setting (sections are joined with a double underscore, "
                "e.g. NEWSLETTER_SMTP__HOST)",
                file="environment",
                key=name,
            )
        _set_dotted(out, dotted, _from_env_string(raw, target, name))
    return out


def _field_type(dotted: str) -> Any | None:
    cls: Any = Settings
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints or part in ("secrets", "config_path", "sources"):
            return None
        t = hints[part]
        if i == len(parts) - 1:
            return None if dataclasses.is_dataclass(t) else t
        if not dataclasses.is_dataclass(t):
            return None
        cls = t
    return None


def _from_env_string(raw: str, target: Any, name: str) -> Any:
    if typing.get_origin(target) is tuple:
        return [s.strip() for s in raw.split(",") if s.strip()]
    if target is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"expected true or false, got {raw!r}", file="environment", key=name)
    if target is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(
                f"expected an integer, got {raw!r}", file="environment", key=name
            ) from None
    if target is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(
                f"expected a number, got {raw!r}", file="environment", key=name
            ) from None
    if _is_union(target):  # e.g. int | "auto"
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _merge(base: dict[str, Any], top: Mapping[str, Any], where: str) -> None:
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v, where)
        else:
            base[k] = v


def _is_union(t: Any) -> bool:
    return typing.get_origin(t) in (typing.Union, types.UnionType)


def _describe(t: Any) -> str:
    if t is str:
        return "a string"
    if t is bool:
        return "true or false"
    if t is int:
        return "an integer"
    if t is float:
        return "a number"
    if isinstance(t, type) and issubclass(t, SourceKind | AnnounceType):
        return "one of " + ", ".join(repr(m.value) for m in t)
    if typing.get_origin(t) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(t))
    if _is_union(t):
        return " or ".join(_describe(a) for a in typing.get_args(t))
    if typing.get_origin(t) is tuple:
        item = typing.get_args(t)[0]
        if dataclasses.is_dataclass(item):
            return "an array of tables"
        return f"a list of {_describe(item).removeprefix('a ').removeprefix('an ')}s"
    if dataclasses.is_dataclass(t):
        return "a table"
    return str(t)


def _convert(t: Any, value: Any, where: str, key: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"expected {_describe(t)}, got {value!r}", file=where, key=key)

    if dataclasses.is_dataclass(t):
        if not isinstance(value, Mapping):
            raise bad()
        return _build(t, value, where, key + ".")
    if _is_union(t):
        for arg in typing.get_args(t):
            try:
                return _convert(arg, value, where, key)
            except ConfigError:
                continue
        raise bad()
    if typing.get_origin(t) is Literal:
        if value not in typing.get_args(t):
            raise bad()
        return value
    if typing.get_origin(t) is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise bad()
        (item,) = typing.get_args(t)[:1]
        return tuple(_convert(item, v, where, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(t, type) and issubclass(t, SourceKind | AnnounceType):
        try:
            return t(value)
        except ValueError:
            raise bad() from None
    if t is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        if not math.isfinite(value):  # TOML has nan and inf; no setting means them
            raise ConfigError(f"expected a finite number, got {value!r}", file=where, key=key)
        return float(value)
    if t is str:
        if not isinstance(value, str):
            raise bad()
        _refuse_control_characters(value, where, key)
        return value
    raise TypeError(f"unsupported settings type {t!r}")  # a bug, not a user error


def _build(cls: Any, table: Mapping[str, Any], where: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for k in table:
        if k not in known:
            close = [n for n in known if n.replace("_", "") == str(k).replace("_", "").lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key{hint}", file=where, key=prefix + str(k))
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in table:
            value = _convert(hints[f.name], table[f.name], where, prefix + f.name)
            if "range" in f.metadata:
                _check_range(value, f.metadata["range"], where, prefix + f.name)
            kwargs[f.name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError("is required", file=where, key=prefix + f.name)
    return cls(**kwargs)


def _check_range(value: Any, bounds: tuple[float, float, bool], where: str, key: str) -> None:
    if isinstance(value, str):  # "auto" beside a number
        return
    lo, hi, above = bounds
    if (lo < value if above else lo <= value) and value <= hi:
        return
    kind = "an integer" if isinstance(value, int) else "a number"
    span = f"above {lo:g} and at most {hi:g}" if above else f"from {lo:g} to {hi:g}"
    if isinstance(value, int):
        span = f"from {int(lo)} to {int(hi)}"
    raise ConfigError(f"expected {kind} {span}, got {value!r}", file=where, key=key)


def _refuse_control_characters(value: str, where: str, key: str) -> None:
    """No setting has a use for a control character or a line break, and in a header
    (List-Id, Reply-To, a User-Agent) one would start a new header line."""
    for i, c in enumerate(value):
        if unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            raise ConfigError(
                f"contains a control character (U+{ord(c):04X}) at position {i + 1}; "
                "line breaks and control characters are not allowed",
                file=where,
                key=key,
            )


# --------------------------------------------------------------------------- checks


def _resolve_paths(s: Settings, base: Path) -> Settings:
    """Relative paths in a config file mean relative to that file, not to the cwd."""

    def rel(p: str) -> str:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    url = s.database_url
    m = re.match(r"^(sqlite(?:\+\w+)?:///)(?!/)(.+)$", url)
    if m and m.group(2) != ":memory:" and not m.group(2).startswith("file:"):
        url = m.group(1) + rel(m.group(2))
    sources = tuple(dataclasses.replace(src, path=rel(src.path)) for src in s.sources)
    return dataclasses.replace(
        s,
        database_url=url,
        sources=sources,
        render=dataclasses.replace(s.render, templates_dir=rel(s.render.templates_dir)),
        delivery=dataclasses.replace(s.delivery, outbox_dir=rel(s.delivery.outbox_dir)),
        smtp=dataclasses.replace(
            s.smtp, ca_file=rel(s.smtp.ca_file), dkim_key_file=rel(s.smtp.dkim_key_file)
        ),
        bounces=dataclasses.replace(
            s.bounces,
            ca_file=rel(s.bounces.ca_file),
            url=s.bounces.url if s.bounces.kind in ("none", "imap") else rel(s.bounces.url),
        ),
    )


_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(:[0-5]\d)?$")
_DAY = r"(mon|tue|wed|thu|fri|sat|sun)"
_DAYS = re.compile(rf"^(\*|{_DAY}(-{_DAY})?(,{_DAY}(-{_DAY})?)*)$")
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# RFC 2919: the List-Id is a dot-atom with at least one dot ("list-label.namespace").
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_ID = re.compile(rf"^{_ATOM}(\.{_ATOM})+$")
_HOST = re.compile(r"^[A-Za-z0-9._-]+$|^\[[0-9A-Fa-f:.]+\]$")
_URL = re.compile(r"^https?://[^/\s?#]+[^\s]*$")
#: The database URLs the store works with, and the driver module each needs.
_DATABASES = {
    "sqlite": "sqlite3",
    "sqlite+pysqlite": "sqlite3",
    "postgresql+psycopg": "psycopg",
    "postgresql+psycopg2": "psycopg2",
    "postgresql": "psycopg2",  # SQLAlchemy's default PostgreSQL driver
}
_Fail = Callable[[str, str], typing.NoReturn]
#: Longest list name, sender name and User-Agent: header text, not prose.
_MAX_HEADER_TEXT = 200


def _validate(s: Settings, where: str) -> Settings:
    """Check what the types alone do not; returns the settings with addresses normalised."""

    def fail(key: str, msg: str) -> typing.NoReturn:
        raise ConfigError(msg, file=where, key=key)

    _check_database_url(s.database_url, fail)
    seen: set[str] = set()
    for i, src in enumerate(s.sources):
        key = f"sources[{i}]"
        if not _SOURCE_NAME.match(src.name):
            fail(f"{key}.name", f"expected letters, digits, '.', '_' or '-', got {src.name!r}")
        if src.name in seen:
            fail(f"{key}.name", f"duplicate source name {src.name!r}")
        seen.add(src.name)
        if bool(src.url) == bool(src.path):
            fail(key, "expected exactly one of url or path")
        if src.url and not re.match(r"^(https?|file):\S+$", src.url):
            fail(f"{key}.url", f"expected an http(s):// or file: URL, got {src.url!r}")
    t = s.topics
    if t.min_topics > t.max_topics:
        fail("topics.max_topics", "expected 1 <= min_topics <= max_topics")
    for key, time in (("send_at", s.schedule.send_at), ("fetch_at", s.schedule.fetch_at)):
        if (time or key == "send_at") and not _TIME.match(time):
            fail(f"schedule.{key}", f"expected HH:MM (24-hour, optionally :SS), got {time!r}")
    if not _DAYS.match(s.schedule.days.strip().lower()):
        fail(
            "schedule.days",
            f"expected day names such as mon-fri or mon,wed,fri, got {s.schedule.days!r}",
        )
    if not re.fullmatch(_DAY, s.schedule.weekly_day.strip().lower()):
        fail(
            "schedule.weekly_day",
            f"expected one day name (mon, tue, ... sun), got {s.schedule.weekly_day!r}",
        )
    if s.schedule.timezone:
        try:
            zoneinfo.ZoneInfo(s.schedule.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            fail(
                "schedule.timezone",
                f"expected an IANA time zone such as Europe/Berlin, got {s.schedule.timezone!r}",
            )
    if not _HOST.match(s.smtp.host):
        fail("smtp.host", f"expected a host name or [IP address], got {s.smtp.host!r}")
    lst = s.list
    for key, text in (("name", lst.name), ("from_name", lst.from_name)):
        if not text.strip() and key == "name":
            fail("list.name", "expected a non-empty name")
        if len(text) > _MAX_HEADER_TEXT:
            fail(f"list.{key}", f"expected at most {_MAX_HEADER_TEXT} characters")
    if len(s.fetch.user_agent) > _MAX_HEADER_TEXT:
        fail("fetch.user_agent", f"expected at most {_MAX_HEADER_TEXT} characters")
    if not _LIST_ID.match(lst.id) or len(lst.id) > 255:
        fail(
            "list.id",
            f"expected a domain-like identifier such as papers.example.org, got {lst.id!r}",
        )
    if not _URL.match(lst.base_url):
        fail("list.base_url", f"expected an http(s) URL without spaces, got {lst.base_url!r}")
    api = s.fetch.arxiv_api_url
    if not _URL.match(api) or "?" in api or "#" in api:
        fail(
            "fetch.arxiv_api_url",
            f"expected the API's http(s) URL without a query, such as "
            f"https://export.arxiv.org/api/query, got {api!r}",
        )
    from newsletter.render import subject_template_problem

    problem = subject_template_problem(s.render.subject)
    if problem:
        fail("render.subject", problem)
    _validate_bounces(s, fail)
    return dataclasses.replace(
        s,
        list=dataclasses.replace(
            lst,
            from_address=_header_address(lst.from_address, "list.from_address", fail),
            reply_to=lst.reply_to and _header_address(lst.reply_to, "list.reply_to", fail),
        ),
    )


#: delivery.return_path's local part leaves room for "+<id>-<date>-<tag>" within 64 octets.
RETURN_PATH_LOCAL_MAX = 27
_DNS_LABELS = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def _validate_bounces(s: Settings, fail: _Fail) -> None:
    """The return path, DKIM and [bounces] keys."""
    rp = s.delivery.return_path
    if rp:
        local, at, domain = rp.rpartition("@")
        if not at or not re.match(r"^[A-Za-z0-9._-]+$", local) or not _DNS_LABELS.match(domain):
            fail(
                "delivery.return_path",
                f"expected an address such as bounces@lists.example.org (letters, digits, "
                f"'.', '_' or '-' before the @), got {rp!r}",
            )
        if len(local) > RETURN_PATH_LOCAL_MAX:
            fail(
                "delivery.return_path",
                f"the part before the @ is longer than {RETURN_PATH_LOCAL_MAX} characters: "
                "with the tag added it would pass the 64 that addresses allow",
            )
    m = s.smtp
    if bool(m.dkim_key_file) != bool(m.dkim_selector):
        fail("smtp.dkim_selector", "expected both dkim_key_file and dkim_selector, or neither")
    if m.dkim_selector and not _DNS_LABELS.match(m.dkim_selector):
        fail(
            "smtp.dkim_selector", f"expected a DNS label such as news2026, got {m.dkim_selector!r}"
        )
    if m.dkim_domain and not _DNS_LABELS.match(m.dkim_domain):
        fail("smtp.dkim_domain", f"expected a domain name, got {m.dkim_domain!r}")
    b = s.bounces
    if b.kind == "imap" and not re.match(r"^imaps?://[^/\s:]+(:\d{1,5})?/?$", b.url):
        fail(
            "bounces.url",
            f"expected imaps://host[:port] or imap://host[:port] (STARTTLS), got {b.url!r}",
        )
    if b.kind in ("maildir", "mbox") and not b.url:
        fail("bounces.url", f"expected the path of the {b.kind} to read")
    if b.kind != "none" and not b.processed_folder:
        fail("bounces.processed_folder", "expected a folder name (messages are moved there)")


def _check_database_url(url: str, fail: _Fail) -> None:
    """A URL the store cannot open is a configuration error, found before anything runs."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+]*)://", url)
    if not m:
        fail(
            "database_url",
            f"expected a database URL such as sqlite:///newsletter.db, got {url!r}",
        )
    scheme = m.group(1).lower()
    if scheme not in _DATABASES:
        fail(
            "database_url",
            f"unsupported database {scheme!r}; expected sqlite:///FILE or "
            "postgresql+psycopg://USER@HOST/DB",
        )
    if scheme.startswith("sqlite") and not re.match(r"^[a-z+]+://(/.*)?$", url):
        fail("database_url", f"expected sqlite:///FILE (three slashes), got {_mask_url(url)!r}")
    driver = _DATABASES[scheme]
    if importlib.util.find_spec(driver) is None:
        fail(
            "database_url",
            f"{scheme}:// needs the Python package {driver}, which is not installed; "
            "use postgresql+psycopg:// with pip install 'newsletter[postgres]'",
        )


def _header_address(raw: str, key: str, fail: _Fail) -> str:
    """An address for the From or Reply-To header: checked by the validator subscribers go
    through, in the A-label form headers and the envelope need."""
    from newsletter.subscribers import BadAddress, ascii_email, normalise_email

    local, _, domain = raw.strip().rpartition("@")
    # An outbox-only list (the defaults, the demo) sends as someone@localhost, a name the
    # validator refuses for mail that leaves the machine; check the rest of the address.
    on_localhost = domain.lower() == "localhost"
    try:
        addr = ascii_email(normalise_email(f"{local}@example.org" if on_localhost else raw))
    except BadAddress as e:
        fail(key, f"not a usable address: {e}")
    if on_localhost:
        addr = addr.rpartition("@")[0] + "@localhost"
    if not addr.isascii():
        fail(
            key,
            f"expected an ASCII part before the @ (every message would need SMTPUTF8), got {raw!r}",
        )
    return addr


def check_smtp_login(s: Settings) -> None:
    """:class:`ConfigError` when SMTP sending would log in without a password.

    The password comes only from the environment, so a missing one is not a config file
    error that loading sees; without this check the relay's refusal of the login would be
    the first sign of it.  Called by `config check` and before sending.
    """
    if s.delivery.transport == "smtp" and s.smtp.username and not s.secrets.smtp_password:
        raise ConfigError(
            f"smtp.username is set ({s.smtp.username!r}) but {SECRET_ENV['smtp_password']} "
            "is not: the SMTP password comes only from the environment; set it where the "
            "service gets its environment (e.g. its secrets file), or empty smtp.username "
            "if the relay takes mail without a login",
            file=s.config_path or None,
        )


# --------------------------------------------------------------------------- showing


def effective_toml(s: Settings) -> str:
    """The effective settings as TOML, secrets masked: what `config check` prints.

    Written by a TOML library, so any value (line breaks, quotes, backslashes, non-ASCII)
    reads back as itself.
    """
    import tomli_w

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, str):
            return str(v)  # a StrEnum as its plain value
        return v

    parts = [
        f"# from: {_comment_text(s.config_path) or '(no file: defaults and environment)'}\n",
        tomli_w.dumps({"database_url": _mask_url(s.database_url)}),
    ]
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if dataclasses.is_dataclass(value) and f.name != "secrets":
            parts.append("\n" + tomli_w.dumps({f.name: plain(value)}))
    parts.append("\n# secrets: from the environment only\n")
    for k, env in SECRET_ENV.items():
        state = "set, hidden" if getattr(s.secrets, k) else "not set"
        parts.append(f"# {k}: {state} ({env})\n")
    if s.sources:
        parts.append("\n" + tomli_w.dumps({"sources": plain(s.sources)}))
    return "".join(parts)


def _comment_text(text: str) -> str:
    """``text`` safe inside a TOML comment (no line breaks or control characters)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _mask_url(url: str) -> str:
    """Hide a password embedded in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1****@", url)
