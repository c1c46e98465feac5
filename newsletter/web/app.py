"""The WSGI application: one-click unsubscribe, sign-up with confirmation, the reader's
preferences, the archive.

Plain WSGI with werkzeug's routing and request parsing.  Every request either reads, or
changes one subscriber through a signed link or a CSRF-protected form; nothing else can
change anything.  Pages come from templates/web/ with autoescaping on.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from newsletter import links
from newsletter.errors import NewsletterError, SendError
from newsletter.links import PREFERENCES_DAYS, Purpose, preferences_token
from newsletter.models import Edition, IssueStatus, Subscriber, SubscriberStatus
from newsletter.personal.interests import SubscriberInterests
from newsletter.personal.library import MAX_PAPERS
from newsletter.personal.stated import MAX_AUTHORS, MAX_CATEGORIES, MAX_KEYWORDS
from newsletter.store.signup import CONFIRM_DAYS
from newsletter.subscribers import BadAddress, clean_name, normalise_email
from newsletter.tokens import BadToken, sign, verify
from newsletter.web import preferences as prefs
from newsletter.web.archive import FEED_ENTRIES, atom_feed, index_page, issue_page
from newsletter.web.pages import Pages
from newsletter.web.ratelimit import Rate, TokenBuckets
from newsletter.web.signup import (
    ExpiredToken,
    confirm_token,
    confirmation_message,
    read_confirm_token,
    send_confirmation,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from newsletter.config import Settings
    from newsletter.delivery.transport import Transport
    from newsletter.store import Store

log = logging.getLogger(__name__)

#: Largest request body accepted (a sign-up form is a few hundred bytes).
MAX_BODY = 16 * 1024
#: Longer path tokens are refused before any work (real ones are under 100 characters).
MAX_TOKEN = 512
#: The CSRF-protected forms' field with the signed copy of the cookie.
CSRF_FIELD = "csrf"
CSRF_COOKIE = "nl_csrf"
#: How long a sign-up form stays valid after it was served.
CSRF_SECONDS = 2 * 3600
#: Defaults for the sign-up limits: per address (confirmation emails to one mailbox) and
#: per client address (form posts from one IP).
ADDRESS_RATE = Rate(burst=3, every=3600 / 3)
CLIENT_RATE = Rate(burst=10, every=60)
#: On every response, waitress's own error pages included (newsletter.web.server).
SAFETY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),  # the URLs carry tokens
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
# Whole-string matches over ASCII only: \d alone would take other scripts' digits, and $
# a trailing newline.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_ID = re.compile(r"[0-9]{1,18}")


class _Request(Request):
    max_content_length = MAX_BODY
    max_form_memory_size = MAX_BODY
    max_form_parts = 20


class _UploadRequest(_Request):
    """A post of a form that may carry a library file (sign-up, preferences)."""

    max_content_length = prefs.MAX_UPLOAD_BODY
    max_form_memory_size = prefs.MAX_UPLOAD_BODY
    #: the fields, and a "remove" box per paper of the largest library
    max_form_parts = MAX_PAPERS + 20


#: The endpoints whose POST takes an _UploadRequest (waitress lets their bodies through:
#: newsletter.web.server.UPLOAD_PATHS).
UPLOAD_ENDPOINTS = frozenset({"subscribe", "preferences"})


class WebApp:
    """The WSGI callable; ``clock`` (Unix time) is the one clock it reads."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        secret: str,
        transport_factory: Callable[[], Transport],
        clock: Callable[[], float] = time.time,
        address_rate: Rate = ADDRESS_RATE,
        client_rate: Rate = CLIENT_RATE,
    ):
        if not secret:
            raise ValueError("the web app needs a signing secret")
        self.settings = settings
        self.store = store
        self.secret = secret
        self.transport_factory = transport_factory
        self.clock = clock
        self.pages = Pages(settings)
        self.by_address = TokenBuckets(address_rate, clock=time.monotonic)
        self.by_client = TokenBuckets(client_rate, clock=time.monotonic)
        # The preferences page's posts: its own buckets, so that tuning never eats into
        # the sign-up allowance of a shared network (and the other way round).
        self.prefs_by_client = TokenBuckets(client_rate, clock=time.monotonic)
        self.lookups = prefs.Lookups(settings)
        self.client_rate = client_rate
        self.secure_cookie = settings.list.base_url.startswith("https://")
        # No redirects of any kind: /archive and /archive/ are the same page.
        self.url_map = Map(
            [
                Rule("/", endpoint="subscribe", methods=["GET"]),
                Rule(links.SUBSCRIBE, endpoint="subscribe", methods=["GET", "POST"]),
                Rule(f"{links.CONFIRM}<token>", endpoint="confirm", methods=["GET"]),
                Rule(links.UNSUBSCRIBE, endpoint="unsubscribe_help", methods=["GET"]),
                Rule(
                    f"{links.UNSUBSCRIBE}<token>", endpoint="unsubscribe", methods=["GET", "POST"]
                ),
                Rule(links.PREFERENCES, endpoint="preferences_help", methods=["GET"]),
                Rule(
                    f"{links.PREFERENCES}<token>", endpoint="preferences", methods=["GET", "POST"]
                ),
                Rule(links.ARCHIVE, endpoint="archive_index", methods=["GET"]),
                Rule(f"{links.ARCHIVE}<issue_date>", endpoint="archive_issue", methods=["GET"]),
                Rule(
                    f"{links.ARCHIVE}{Edition.WEEKLY.value}/<issue_date>",
                    endpoint="archive_issue",
                    defaults={"edition": Edition.WEEKLY.value},
                    methods=["GET"],
                ),
                Rule(links.ARCHIVE_FEED, endpoint="archive_feed", methods=["GET"]),
            ],
            strict_slashes=False,
            merge_slashes=False,
            redirect_defaults=False,
        )
        self.page_csp = (
            f"default-src 'none'; style-src '{self.pages.css_hash}'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'"
        )
        # The email's CSS is inlined into style attributes, which hashes cannot allow.
        self.archive_csp = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
            "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
        )

    # ------------------------------------------------------------------ plumbing

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = _Request(environ)
        try:
            endpoint, args = self.url_map.bind_to_environ(environ).match()
            if endpoint in UPLOAD_ENDPOINTS and request.method == "POST":
                request = _UploadRequest(environ)
            response: Response = getattr(self, f"on_{endpoint}")(request, **args)
        except HTTPException as e:
            response = self.http_error(request, e)
        except Exception:  # a bug: log it, answer with a page rather than a bare 500
            log.exception("%s %s failed", request.method, request.path)
            response = self.error(
                request,
                500,
                "Something went wrong",
                "The server could not answer. Try again later.",
            )
        finally:
            request.close()  # an uploaded file's temporary file
        headers = response.headers
        headers.setdefault("Content-Security-Policy", self.page_csp)
        headers.setdefault("Cache-Control", "no-store")
        for name, value in SAFETY_HEADERS:
            headers[name] = value
        return response(environ, start_response)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def links(self, request: Request) -> dict[str, str]:
        root = request.root_path
        return {"subscribe_url": root + links.SUBSCRIBE, "archive_url": root + links.ARCHIVE}

    def page(
        self, request: Request, template: str, *, title: str, status: int = 200, **ctx: Any
    ) -> Response:
        html = self.pages.page(template, title=title, **self.links(request), **ctx)
        return Response(html, status, mimetype="text/html")

    def error(
        self,
        request: Request,
        status: int,
        heading: str,
        message: str,
        *,
        link: tuple[str, str] | None = None,
    ) -> Response:
        return self.page(
            request,
            "error.html.j2",
            title=heading,
            status=status,
            http_status=status,
            heading=heading,
            message=message,
            link_url=link[0] if link else "",
            link_text=link[1] if link else "",
        )

    def http_error(self, request: Request, e: HTTPException) -> Response:
        code = e.code or 500
        if code == 404:
            response = self.error(
                request,
                404,
                "Page not found",
                "There is nothing at this address.",
                link=(self.links(request)["archive_url"], "See the past issues"),
            )
        elif isinstance(e, MethodNotAllowed):
            response = self.error(
                request, 405, "Method not allowed", f"This address does not take {request.method}."
            )
            response.headers["Allow"] = ", ".join(e.valid_methods or ())
        elif code == 413 and isinstance(request, _UploadRequest):
            response = self.error(
                request,
                413,
                "The form is too large",
                f"A library file may have at most {prefs.MAX_UPLOAD // 1_000_000} MB: export "
                "fewer papers (the ones closest to what you want to read). Nothing was changed.",
                link=(request.root_path + request.path, "Back to the form"),
            )
        elif code == 413:
            response = self.error(request, 413, "Request too large", "Nothing was changed.")
        else:
            response = self.error(request, code, e.name, e.description or "")
        return response

    def bad_link(self, request: Request) -> Response:
        return self.error(
            request,
            400,
            "This link is not valid",
            "It was changed or cut short on the way, or made for something else. "
            "Nothing was changed. Copy the whole link from the email and try again.",
        )

    # ------------------------------------------------------------------ forms

    def form_page(
        self, request: Request, template: str, *, cookie_path: str, **ctx: Any
    ) -> Response:
        """A page with a CSRF-protected form: the signed field, and the cookie it matches
        (set when the browser has none)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = not _COOKIE_VALUE.fullmatch(cookie)
        if fresh:
            cookie = secrets.token_urlsafe(18)
        token = sign(self.secret, Purpose.CSRF, cookie, expires=int(self.clock()) + CSRF_SECONDS)
        response = self.page(request, template, csrf=token, **ctx)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                path=cookie_path,
                httponly=True,
                secure=self.secure_cookie,
                samesite="Strict",
            )
        return response

    def csrf_ok(self, request: Request) -> bool:
        """The form came from our page: its signed field matches the browser's cookie."""
        if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
            return False
        cookie = request.cookies.get(CSRF_COOKIE, "")
        field = request.form.get(CSRF_FIELD, "")
        if not _COOKIE_VALUE.fullmatch(cookie) or not field or len(field) > MAX_TOKEN:
            return False
        try:
            subject = verify(self.secret, Purpose.CSRF, field, now=self.clock())
        except BadToken:
            return False
        return hmac.compare_digest(subject.encode(), cookie.encode())

    def too_many(self, request: Request, heading: str, what: str) -> Response:
        response = self.error(
            request,
            429,
            heading,
            f"This network sent many {what} in a short time. Wait a minute and try again.",
        )
        response.headers["Retry-After"] = str(math.ceil(self.client_rate.every))
        return response

    # ------------------------------------------------------------------ sign-up

    def subscribe_form(
        self,
        request: Request,
        *,
        status: int = 200,
        problem: str = "",
        email: str = "",
        name: str = "",
        typed: prefs.Typed | None = None,
    ) -> Response:
        return self.form_page(
            request,
            "subscribe.html.j2",
            cookie_path=request.root_path + links.SUBSCRIBE,
            title="Subscribe",
            status=status,
            problem=problem,
            email=email,
            name=name,
            **_interests_context(typed or prefs.Typed()),
        )

    def on_subscribe(self, request: Request) -> Response:
        if request.method != "POST":
            return self.subscribe_form(request)
        if not self.by_client.allow(request.remote_addr or ""):
            return self.too_many(request, "Too many sign-ups", "sign-ups")
        raw_email = request.form.get("email", "")[:320]
        name = clean_name(request.form.get("name", ""))[:100]
        typed = prefs.Typed.of_form(request.form)

        def again(problem: str, status: int = 400) -> Response:
            return self.subscribe_form(
                request, status=status, problem=problem, email=raw_email, name=name, typed=typed
            )

        if not self.csrf_ok(request):
            return again(
                "The form had expired or did not come from this page (it needs a cookie). "
                "Please send it again."
            )
        try:
            addr = normalise_email(raw_email)
        except BadAddress as e:
            return again(f"Please check the address: {e}")
        # The interests are read and their papers looked up before the address is looked
        # at: the same work, and so the same time, for every address.
        interests = None
        try:
            upload = prefs.read_upload(request.files)
            if upload is not None or not typed.is_blank:
                interests = prefs.prepare(
                    typed, upload, stored=None, store=self.store, lookups=self.lookups
                )
        except prefs.FormProblem as e:
            return again(str(e), e.status)
        # The same answer for every address, known or not: the page never tells.
        if self.by_address.allow(addr):
            if not self.mail_confirmation(addr, name, interests):
                return self.error(
                    request,
                    503,
                    "Please try again later",
                    "The confirmation email could not be sent just now.",
                )
        else:
            log.info("sign-up: confirmation not sent again (per-address limit)")
        return self.page(
            request,
            "subscribe_sent.html.j2",
            title="Check your inbox",
            email=addr,
            confirm_days=CONFIRM_DAYS,
        )

    def mail_confirmation(self, addr: str, name: str, interests: prefs.Prepared | None) -> bool:
        """Record the sign-up (PENDING if new, with ``name`` and ``interests``) and mail the
        link; False if it could not go.  Like the name, the interests of a sign-up not yet
        confirmed are the ones typed last; anybody else's are never changed by this form."""
        sub = self.store.add_pending(addr, name, now=self.now())
        if interests is not None and sub.status is SubscriberStatus.PENDING:
            prefs.save(self.store, sub.id, interests, now=self.now())
        token = confirm_token(self.secret, sub, now=self.clock())
        url = links.confirm_url(self.settings, token)
        msg = confirmation_message(self.settings, self.pages, addr, url, now=self.now())
        try:
            send_confirmation(self.settings, self.transport_factory, msg)
        except SendError as e:
            log.warning("sign-up: confirmation email refused: %s", e.reason)
            return e.permanent  # e.g. no such mailbox: nothing to retry, nothing to tell
        except NewsletterError as e:  # the server cannot be reached
            log.error("sign-up: cannot send the confirmation email: %s", e)
            return False
        return True

    def on_confirm(self, request: Request, token: str) -> Response:
        if len(token) > MAX_TOKEN:
            return self.bad_link(request)
        try:
            c = read_confirm_token(self.secret, token, now=self.clock())
        except ExpiredToken:
            return self.error(
                request,
                410,
                "This link has expired",
                f"Confirmation links work for {CONFIRM_DAYS} days. Sign up again and use "
                "the new link.",
                link=(self.links(request)["subscribe_url"], "Sign up again"),
            )
        except BadToken:
            return self.bad_link(request)
        sub = self.store.confirm_subscriber(c.subscriber_id, c.stamp, name=c.name, now=self.now())
        if sub is None:
            return self.error(
                request,
                410,
                "This link is no longer valid",
                "The subscription changed after this link was sent. Sign up again to get a "
                "new one.",
                link=(self.links(request)["subscribe_url"], "Sign up again"),
            )
        log.info("sign-up confirmed: subscriber %d", sub.id)
        tune = preferences_token(self.secret, sub.id, self.now().date())
        return self.page(
            request,
            "confirmed.html.j2",
            title="Subscribed",
            email=sub.email,
            preferences_url=request.root_path + links.PREFERENCES + tune,
        )

    # ------------------------------------------------------------------ unsubscribe

    def unsubscribe_subject(self, token: str) -> int | None:
        if len(token) > MAX_TOKEN:
            return None
        try:
            subject = verify(self.secret, Purpose.UNSUBSCRIBE, token, now=self.clock())
        except BadToken:
            return None
        return int(subject) if _ID.fullmatch(subject) else None

    def on_unsubscribe_help(self, request: Request) -> Response:
        return self.page(request, "unsubscribe_help.html.j2", title="Unsubscribe")

    def on_unsubscribe(self, request: Request, token: str) -> Response:
        sid = self.unsubscribe_subject(token)
        if sid is None:
            return self.bad_link(request)
        if request.method != "POST":
            # Link scanners fetch every GET: a GET only shows the button.
            sub = self.store.subscriber(sid)
            return self.page(
                request,
                "unsubscribe.html.j2",
                title="Unsubscribe",
                email=sub.email if sub else "This address",
                action=request.root_path + links.UNSUBSCRIBE + token,
            )
        # RFC 8058: the body says List-Unsubscribe=One-Click, urlencoded or multipart; no
        # cookie, no CSRF token, no redirect; the same answer every time.
        if request.form.get("List-Unsubscribe") != "One-Click":
            return self.error(
                request,
                400,
                "Nothing was changed",
                "An unsubscribe request must say List-Unsubscribe=One-Click.",
            )
        sub = self.store.set_subscriber_status(sid, SubscriberStatus.UNSUBSCRIBED, now=self.now())
        if sub is not None:
            log.info("unsubscribed: subscriber %d", sid)
        return self.page(request, "unsubscribed.html.j2", title="Unsubscribed")

    # ------------------------------------------------------------------ preferences

    def on_preferences_help(self, request: Request) -> Response:
        return self.page(request, "preferences_help.html.j2", title="Tune your digest")

    def on_preferences(self, request: Request, token: str) -> Response:
        try:
            sid = read_preferences_token(self.secret, token, now=self.clock())
        except ExpiredToken:
            return self.error(
                request,
                410,
                "This link has expired",
                f"A link to your preferences works for {PREFERENCES_DAYS} days after the issue "
                "that brought it. Use the Tune your digest link of a recent issue.",
            )
        except BadToken:
            return self.bad_link(request)
        sub = self.store.subscriber(sid)
        if sub is None or sub.status is not SubscriberStatus.ACTIVE:
            return self.error(
                request,
                410,
                "Not subscribed",
                "This address gets no issues now, so there is nothing to tune. Subscribe "
                "again to get them.",
                link=(self.links(request)["subscribe_url"], "Subscribe"),
            )
        stored = prefs.stored_interests(self.store, sid)
        if request.method != "POST":
            typed = prefs.Typed.of_stored(stored, sub.cadence)
            return self.preferences_form(request, token, sub, stored, typed)
        if not self.prefs_by_client.allow(request.remote_addr or ""):
            return self.too_many(request, "Too many changes", "changes")
        typed = prefs.Typed.of_form(request.form)

        def again(problem: str, status: int = 400) -> Response:
            return self.preferences_form(
                request, token, sub, stored, typed, status=status, problem=problem
            )

        if not self.csrf_ok(request):
            return again(
                "The form had expired or did not come from this page (it needs a cookie). "
                "Please send it again."
            )
        try:
            upload = prefs.read_upload(request.files)
            prepared = prefs.prepare(
                typed, upload, stored=stored, store=self.store, lookups=self.lookups
            )
        except prefs.FormProblem as e:
            return again(str(e), e.status)
        saved = prefs.save(self.store, sid, prepared, now=self.now())
        if saved is None:  # removed meanwhile
            return self.bad_link(request)
        log.info("preferences changed: subscriber %d", sid)
        return self.preferences_form(
            request,
            token,
            sub,
            saved,
            prefs.Typed.of_stored(saved, prepared.cadence or sub.cadence),
            saved=True,
            notes=[*prepared.notes, *prefs.waiting_notes(saved, prepared.lookup)],
        )

    def preferences_form(
        self,
        request: Request,
        token: str,
        sub: Subscriber,
        stored: SubscriberInterests,
        typed: prefs.Typed,
        *,
        status: int = 200,
        problem: str = "",
        saved: bool = False,
        notes: list[str] | None = None,
    ) -> Response:
        return self.form_page(
            request,
            "preferences.html.j2",
            cookie_path=request.root_path + links.PREFERENCES,
            title="Tune your digest",
            status=status,
            action=request.root_path + links.PREFERENCES + token,
            email=sub.email,
            problem=problem,
            saved=saved,
            notes=notes or [],
            **_interests_context(typed, prefs.library_rows(stored)),
        )

    # ------------------------------------------------------------------ archive

    def on_archive_index(self, request: Request) -> Response:
        root = request.root_path
        html = index_page(
            self.pages,
            self.store.archive_entries(),
            issue_href=lambda e: root + links.archive_path(e.issue_date, e.edition),
            feed_url=root + links.ARCHIVE_FEED,
            **self.links(request),
        )
        return _cacheable(Response(html, mimetype="text/html"))

    def on_archive_feed(self, request: Request) -> Response:
        feed = atom_feed(self.settings, self.store.archive_entries(limit=FEED_ENTRIES))
        return _cacheable(Response(feed, mimetype="application/atom+xml"))

    def on_archive_issue(
        self, request: Request, issue_date: str, edition: str = Edition.DAILY.value
    ) -> Response:
        day = None
        if _DATE.fullmatch(issue_date):
            try:
                day = dt.date.fromisoformat(issue_date)
            except ValueError:
                day = None
        issue = self.store.issue(day, Edition(edition)) if day else None
        if issue is None or issue.status is IssueStatus.EMPTY or not issue.html:
            return self.http_error(request, NotFound())
        links = self.links(request)
        html = issue_page(
            issue,
            self.settings,
            index_href=links["archive_url"],
            subscribe_href=links["subscribe_url"],
        )
        response = Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = self.archive_csp
        return _cacheable(response)


def read_preferences_token(secret: str, token: str, *, now: float) -> int:
    """The subscriber id of a "Tune your digest" link; :class:`ExpiredToken` or
    :class:`BadToken` otherwise (an unsubscribe token included)."""
    if len(token) > MAX_TOKEN:
        raise BadToken("the link is not valid")
    try:
        subject = verify(secret, Purpose.PREFERENCES, token, now=now)
    except BadToken:
        verify(secret, Purpose.PREFERENCES, token, now=0)  # genuine, so it has expired
        raise ExpiredToken("the link has expired") from None
    if not _ID.fullmatch(subject):
        raise BadToken("the link is not valid")
    return int(subject)


def _interests_context(
    typed: prefs.Typed, rows: list[prefs.LibraryRow] | None = None
) -> dict[str, Any]:
    """What the interests fields (templates/web/_interests.html.j2) show."""
    return {
        "typed": typed,
        "library_rows": rows or [],
        "max_upload_mb": prefs.MAX_UPLOAD // 1_000_000,
        "max_keywords": MAX_KEYWORDS,
        "max_authors": MAX_AUTHORS,
        "max_categories": MAX_CATEGORIES,
    }


def _cacheable(response: Response) -> Response:
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
