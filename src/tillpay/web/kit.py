"""The page helpers the wallet (``/wallet``) and the merchant console (``/console``) share.

Both apps are server-rendered with the same security rules: an HttpOnly session cookie on the app's own
path (Secure over https), a CSRF token on every POST (the session's own, or before sign-in a
double-submit cookie), an Origin check, and hardened headers on every response. What differs between
them is written down once per app in a :class:`Site` (path, cookie names, SameSite) and in the app's own
``Ctx`` (its session type, language and time zone) and ``page`` wrapper (which refusals become which page).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import quote, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from tillpay.services.platform import Platform

#: Scripts, styles and images from this server only; no inline scripts or styles, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: A CSRF token or a form nonce as this server makes them (``secrets.token_urlsafe``).
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class Forbidden(Exception):
    """A state-changing request without a valid CSRF token, from another origin, or beyond the role."""


@dataclass(frozen=True)
class Site:
    """What one web app sets apart: where it lives, its cookies and how strictly they are sent."""

    #: The app's path, also the path of its cookies (``/wallet``, ``/console``).
    prefix: str
    session_cookie: str
    csrf_cookie: str
    samesite: Literal["lax", "strict"]
    csp: str = CSP

    def is_api(self, request: Request) -> bool:
        """A request to the app's JSON API (answered with JSON errors, not pages)."""
        return request.url.path.startswith(self.prefix + "/api/")

    def local_next(self, value: str | None) -> str:
        """Only paths inside this app are followed after sign-in (no open redirect)."""
        home = self.prefix + "/"
        if not value:
            return home
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or not parts.path.startswith(self.prefix) or "\\" in value:
            return home
        return value

    def delete_cookie(self, resp: Response, name: str) -> None:
        """Remove one of this app's cookies in the browser."""
        resp.delete_cookie(name, path=self.prefix)


def harden(resp: Response, csp: str = CSP) -> Response:
    """Add the headers every page, download and API answer carries."""
    resp.headers["Content-Security-Policy"] = csp
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"
    # Order and payment ids are in the apps' URLs: never leak them to other sites.
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def secure(request: Request, p: Platform) -> bool:
    """Reached over https, directly or as configured in ``public_url`` (cookies are then Secure)."""
    return request.url.scheme == "https" or p.settings.public_url.startswith("https://")


def csrf_token(request: Request, site: Site, session_token: str | None) -> tuple[str, str | None]:
    """The request's CSRF token and, before sign-in without a usable cookie, a new one to set."""
    if session_token is not None:
        return session_token, None
    csrf = request.cookies.get(site.csrf_cookie) or ""
    if NONCE_RE.match(csrf):
        return csrf, None
    csrf = secrets.token_urlsafe(32)
    return csrf, csrf


SessionT = TypeVar("SessionT")


@dataclass
class PageCtx(Generic[SessionT]):
    """One request as an app's pages see it: the request, the platform, who, and the CSRF token."""

    #: Set by each app's subclass.
    site: ClassVar[Site]
    request: Request
    p: Platform
    session: SessionT | None
    csrf: str
    #: A fresh pre-sign-in CSRF token to set as a cookie with the response.
    new_csrf_cookie: str | None = field(default=None, kw_only=True)

    @property
    def path(self) -> str:
        """This page's path and query, for ``next=`` links."""
        q = self.request.url.query
        return self.request.url.path + (f"?{q}" if q else "")

    @property
    def secure(self) -> bool:
        return secure(self.request, self.p)

    def set_cookie(
        self, resp: Response, name: str, value: str, max_age: int | None, *, http_only: bool = True
    ) -> None:
        """Set one of the app's cookies (its path and SameSite, Secure over https)."""
        resp.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.site.prefix,
            secure=self.secure,
            httponly=http_only,
            samesite=self.site.samesite,
        )

    def finish(self, resp: Response) -> Response:
        """Set a new pre-sign-in CSRF cookie if one was made, and harden the response."""
        if self.new_csrf_cookie:
            self.set_cookie(resp, self.site.csrf_cookie, self.new_csrf_cookie, None)
        return harden(resp, self.site.csp)

    def redirect(self, url: str) -> Response:
        """303 to ``url`` (after a POST, the browser GETs it)."""
        return self.finish(RedirectResponse(url, status_code=303))

    def signed_out(self) -> Response:
        """The answer to a signed-out visitor: 401 for the API, else the sign-in page with ``next=``."""
        if self.site.is_api(self.request):
            return json_error(self.site, "SIGNED_OUT", 401)
        return self.redirect(self.site.prefix + "/login?next=" + quote(self.path, safe=""))

    def check_origin(self) -> None:
        """Refuse a request whose browser says it comes from another site."""
        origin = self.request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != self.request.headers.get("host", ""):
            raise Forbidden

    def check_token(self, sent: object) -> None:
        """Refuse unless ``sent`` is this request's CSRF token."""
        if (
            not isinstance(sent, str)
            or not self.csrf
            or not hmac.compare_digest(sent.encode(), self.csrf.encode())
        ):
            raise Forbidden
        if self.session is None and self.new_csrf_cookie:
            raise Forbidden  # the browser had no CSRF cookie, so this form did not come from our page

    async def form(self, **limits: Any) -> FormData:
        """The POSTed form, after the origin and CSRF checks (``limits``: Starlette's form limits)."""
        self.check_origin()
        form = await self.request.form(**limits)
        self.check_token(form.get("csrf") or self.request.headers.get("x-csrf-token") or "")
        return form


def json_error(site: Site, error: str, status: int) -> Response:
    """A hardened JSON ``{"error": ...}`` answer of the app's API."""
    return harden(JSONResponse({"error": error}, status_code=status), site.csp)
