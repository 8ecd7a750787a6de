"""Secrets never leave: masking of URLs and of any text that might quote a secret.

Two tools, used together. :func:`mask_url` rewrites a URL before it is shown (password, user
info, and query parameters that carry credentials). A :class:`Redactor` knows the secret values
themselves (API key, database password, webhook credentials) and replaces them in any text,
including the forms a secret takes when quoted (``repr``, JSON, percent-encoding), because a
server or a driver may echo one in a message. Text is redacted before it is clipped, so no prefix
of a secret survives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Shorter secrets would mask every occurrence of their letters in unrelated text; they are still
# masked inside URLs (mask_url), which is where such a secret would appear.
MIN_SECRET_LENGTH = 4
# Query parameters that carry credentials in database URLs and webhook URLs.
_SECRET_PARAMS = re.compile(
    r"(pass(word|wd)?|sslpassword|secret|token|key|api[-_]?key|auth|signature|sig)$", re.I
)

# How SQLAlchemy reads the password of a database URL: everything up to the next "@", so an
# unencoded "/", "?" or "#" in it (which urlsplit takes for the end of the host) is still password.
_DATABASE_PASSWORD = re.compile(r"[\w+]+://[^:/]*:(?P<password>[^@]*)@")


def _database_password(url: str) -> re.Match[str] | None:
    if url.lower().startswith(("http://", "https://")):
        return None
    return _DATABASE_PASSWORD.match(url)


def mask_url(url: str) -> str:
    """The URL as it may be shown: user info and credential-looking query values masked."""
    found = _database_password(url)
    if found is not None:
        url = url[: found.start("password")] + MASK + url[found.end("password") :]
    elif "://" not in url and "@" in url:
        # Not a URL with a host (a forgotten scheme, mailto:): what precedes "@" may be a
        # credential all the same.
        scheme = re.match(r"[a-zA-Z][\w+.-]*:(?!\d)", url)
        url = (scheme[0] if scheme else "") + MASK + "@" + url.rpartition("@")[2]
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_SECRET_PARAMS.search(key) for key, _ in pairs):
        query = urlencode(
            [(key, MASK if _SECRET_PARAMS.search(key) else value) for key, value in pairs],
            safe="*/:,",
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    text = (
        f"{parts.scheme}://{netloc}{parts.path}"
        if "://" in url
        else urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    )
    return text + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL: what a log line may say about where a request went."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}"


def url_secrets(url: str) -> list[str]:
    """The secret values inside a URL: its password (or a web URL's lone user, a token) and its
    credential parameters, as written and percent-decoded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = []
    database = _database_password(url)
    if database is not None and database["password"]:
        found.append(database["password"])
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, _, password = userinfo.partition(":")
        if password:
            found.append(password)
        elif parts.scheme.lower() in ("http", "https"):
            # https://TOKEN@host: a web URL's lone user is a credential; a database user
            # without a password (peer or certificate login) is a name, not a secret.
            found.append(user)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_PARAMS.search(key) and value:
            found.append(value)
    # A password is written percent-encoded in the URL, but the server receives (and may echo)
    # the decoded value.
    found.extend([unquote(secret) for secret in found if unquote(secret) != secret])
    return found


class Redactor:
    """Replaces known secret values, in every quoted form, by ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._forms: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        forms = set(self._forms)
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                continue
            forms.update(
                {
                    secret,
                    repr(secret)[1:-1],
                    json.dumps(secret)[1:-1],
                    json.dumps(secret, ensure_ascii=False)[1:-1],
                    quote(secret, safe=""),
                    quote_plus(secret, safe=""),
                }
            )
        # Longest first, so a secret that contains another is masked whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._forms)
