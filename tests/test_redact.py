"""Secrets never leave and outside text lands harmless: redact, sanitize and the log formatter."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest

from tracker.logs import SafeFormatter, setup
from tracker.redact import MASK, Redactor, mask_url, origin, url_secrets
from tracker.sanitize import csv_cell, printable

# --- mask_url ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # user:password
        ("postgresql://tracker:sekret@db.example:5432/tracker",
         "postgresql://tracker:***@db.example:5432/tracker"),
        ("postgresql+psycopg://tracker:p%40ss%2Fw0rd@db/tracker",
         "postgresql+psycopg://tracker:***@db/tracker"),
        ("postgresql://tracker:it's a \"pass\"@db/tracker", "postgresql://tracker:***@db/tracker"),
        # an unencoded "/", "?", "#" or "@" is still password to SQLAlchemy
        ("postgresql://tracker:pa/ss@db/tracker", "postgresql://tracker:***@db/tracker"),
        ("postgresql://tracker:pa?ss@db/tracker", "postgresql://tracker:***@db/tracker"),
        ("postgresql://tracker:pa#ss@db/tracker", "postgresql://tracker:***@db/tracker"),
        ("postgresql://tracker:pa@ss@db/tracker", "postgresql://tracker:***@db/tracker"),
        # user info alone (a token)
        ("https://t0ken@hooks.example/x", "https://***@hooks.example/x"),
        # credentials in the query
        ("postgresql://db/tracker?password=sekret&sslmode=require",
         "postgresql://db/tracker?password=***&sslmode=require"),
        ("postgresql://db/t?sslpassword=s3&application_name=tracker",
         "postgresql://db/t?sslpassword=***&application_name=tracker"),
        ("https://hooks.example/x?token=abc&api_key=def&apiKey=ghi&sig=jkl&page=2",
         "https://hooks.example/x?token=***&api_key=***&apiKey=***&sig=***&page=2"),
        ("https://hooks.example/x?Signature=abc&X-Auth=def#frag",
         "https://hooks.example/x?Signature=***&X-Auth=***#frag"),
        # no scheme and host: what precedes "@" may still be a credential
        ("t0ken@hooks.example/x", "***@hooks.example/x"),
        ("mailto:t0ken@example.org", "mailto:***@example.org"),
    ],
)  # fmt: skip
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://api.spacescan.io/address/xch-balance/xch1abc?include_dust=true",
        "sqlite:///tracker.db",
        "sqlite:////var/lib/tracker/tracker.db?timeout=30",
        "postgresql://db.example/tracker?sslmode=require",
        "not a url",
        "",
    ],
)
def test_mask_url_leaves_urls_without_credentials_alone(url: str) -> None:
    assert mask_url(url) == url


def test_mask_url_of_an_unparsable_url() -> None:
    assert mask_url("http://[::1/x") == "<invalid URL>"


def test_origin_is_scheme_host_and_port_only() -> None:
    assert origin("https://user:pw@Pro-API.spacescan.io:8443/a?b=c#d") == (
        "https://pro-api.spacescan.io:8443"
    )
    assert origin("https://api.spacescan.io/address") == "https://api.spacescan.io"
    assert origin("http://[::1/x") == "<invalid URL>"


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://u:sekret@h/db", {"sekret"}),
        ("postgresql://u:p%40ss%20word@h/db", {"p%40ss%20word", "p@ss word"}),
        ("postgresql://u:pa/ss@h/db", {"pa/ss"}),
        ("postgresql://h/db?password=x%2Fy&sslmode=require", {"x/y"}),
        ("https://t0ken@hooks.example/x?token=abc", {"t0ken", "abc"}),
        ("https://hooks.example/x", set()),
        # a database user without a password (peer or certificate login) is a name, not a secret
        ("postgresql+psycopg://tracker@db/tracker", set()),
        ("sqlite:///tracker.db", set()),
    ],
)
def test_url_secrets(url: str, secrets: set[str]) -> None:
    assert set(url_secrets(url)) == secrets


# --- Redactor ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "sk-live-0123456789",
        'it\'s "quoted"',
        "back\\slash\ttab",
        "pässwörd✓",
        "a b/c+d&e=f%",
    ],
)
def test_redactor_masks_a_secret_in_every_quoted_form(secret: str) -> None:
    redact = Redactor([secret])
    forms = {
        "plain": secret,
        "repr": repr(secret),
        "json": json.dumps(secret),
        "json-unicode": json.dumps(secret, ensure_ascii=False),
        "percent": quote(secret, safe=""),
        "percent-plus": quote_plus(secret, safe=""),
        "in-a-dict-repr": repr({"key": secret}),
        "in-json-object": json.dumps({"message": f"bad key {secret}"}),
    }
    for name, form in forms.items():
        text = redact(f"before {form} after")
        assert secret not in text, name
        assert form not in text, name
        assert MASK in text, name
        assert text.startswith("before ")
        assert text.endswith(" after")


def test_redactor_masks_the_longest_secret_first() -> None:
    redact = Redactor(["abcd", "abcdefgh"])
    assert redact("key abcdefgh and abcd") == "key *** and ***"
    assert "efgh" not in redact("abcdefgh")


def test_redactor_masks_every_occurrence() -> None:
    assert Redactor(["s3cret"])("s3cret,s3cret;s3cret") == "***,***;***"


def test_redactor_ignores_empty_and_short_secrets() -> None:
    redact = Redactor([None, "", "abc"])
    assert not redact
    assert redact("abc and abcabc") == "abc and abcabc"  # would mangle unrelated text
    assert Redactor(["abcd"])
    assert Redactor(["abcd"])("abcd") == MASK


def test_redactor_learns_secrets_later() -> None:
    redact = Redactor()
    assert not redact
    redact.add("first-secret", None)
    redact.add("second-secret")
    assert redact("first-secret second-secret") == "*** ***"


# --- printable and csv_cell ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # ANSI colour
        ("\x1b]8;;https://evil.example\x07link\x1b]8;;\x07",
         "\\x1b]8;;https://evil.example\\x07link\\x1b]8;;\\x07"),  # OSC 8 hyperlink
        ("\x1b]0;title\x1b\\", "\\x1b]0;title\\x1b\\"),  # OSC window title
        ("line\nforged INFO line", "line\\x0aforged INFO line"),
        ("progress\rover", "progress\\x0dover"),
        ("tab\there", "tab\\x09here"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("\x9b31m", "\\x9b31m"),  # the C1 control sequence introducer
        ("abc\u202edcba", "abc\\u202edcba"),  # right-to-left override
        ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
        ("para\u2029graph\u2028", "para\\u2029graph\\u2028"),
    ],
)  # fmt: skip
def test_printable_escapes_control_characters(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text).isprintable()


@pytest.mark.parametrize(
    "text", ["Spacebucks", "日本語トークン", "🚀 moon", "ünïcödé", "", "a\\x1b"]
)
def test_printable_keeps_ordinary_text(text: str) -> None:
    assert printable(text) == text


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("Spacebucks", "Spacebucks"),
        ("1=1", "1=1"),
        ("", ""),
    ],
)
def test_csv_cell_defuses_formulas(cell: str, written: str) -> None:
    assert csv_cell(cell) == written


# --- SafeFormatter and setup ---------------------------------------------------------------------

SECRET = "sk-log-0123456789"


def logged(redact: Redactor, message: str, *args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(redact, "%(levelname)s %(message)s", "%H:%M"))
    logger = logging.getLogger("tests.redact.formatter")
    logger.propagate = False
    logger.handlers[:] = [handler]
    try:
        if exc:
            try:
                raise ValueError(f"inner {SECRET}")
            except ValueError:
                logger.exception(message, *args)
        else:
            logger.warning(message, *args)
    finally:
        logger.handlers.clear()
    return stream.getvalue()


def test_a_message_with_newlines_stays_one_line() -> None:
    text = logged(Redactor(), "token name %r then %s", "evil\nname", "next\r\nINFO forged")
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert "\\x0aINFO forged" in text
    assert text.startswith("WARNING token name 'evil\\nname' then next\\x0d")


def test_a_secret_is_masked_in_the_message_and_its_arguments() -> None:
    text = logged(
        Redactor([SECRET]), f"server said {SECRET}: %s %r", f"key={SECRET}", {"k": SECRET}
    )
    assert SECRET not in text
    assert text.count(MASK) == 3


def test_escape_sequences_never_reach_the_log() -> None:
    text = logged(Redactor(), "token %s", "\x1b]0;pwned\x07\x1b[2J")
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in text


def test_a_traceback_keeps_its_lines_but_not_the_secret() -> None:
    text = logged(Redactor([SECRET]), "failed\nforged %s", SECRET, exc=True)
    head, _, trace = text.partition("\n")
    assert head == "ERROR failed\\x0aforged ***"
    assert trace.startswith("Traceback (most recent call last):")
    assert "ValueError: inner ***" in trace
    assert SECRET not in text


def test_a_message_that_says_traceback_cannot_forge_lines_before_a_traceback() -> None:
    text = logged(Redactor(), "token %s", "x\nTraceback\nINFO forged", exc=True)
    head, _, trace = text.partition("\n")
    assert head == "ERROR token x\\x0aTraceback\\x0aINFO forged"
    assert trace.startswith("Traceback (most recent call last):")
    assert "\nINFO forged" not in text


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("urllib3", "alembic", "apscheduler")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in quiet.items():
        logging.getLogger(name).setLevel(saved)


@pytest.mark.usefixtures("root_logging")
def test_setup_logs_safe_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    setup(verbose=False, redact=Redactor([SECRET]))
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger("urllib3").level == logging.WARNING
    assert logging.getLogger("apscheduler").level == logging.ERROR
    logging.getLogger("tracker.test").info("key %s\nforged", SECRET)
    logging.getLogger("tracker.test").debug("not shown")
    sys.stderr.flush()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert " INFO key ***\\x0aforged" in err
    assert "not shown" not in err


@pytest.mark.usefixtures("root_logging")
def test_setup_verbose_logs_debug(capsys: pytest.CaptureFixture[str]) -> None:
    setup(verbose=True)
    assert logging.getLogger().level == logging.DEBUG
    logging.getLogger("tracker.test").debug("shown")
    assert "DEBUG shown" in capsys.readouterr().err
