"""The configuration file: defaults, environment overrides, one-line errors for every mistake."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from tracker.config import (
    AddressEntry,
    Settings,
    config_path,
    load,
    parse,
)
from tracker.domain import WatchedAddress, encode_bech32m
from tracker.errors import ConfigError, UsageError

from support import ROOT

EXAMPLE = ROOT / "config.example.toml"
EXAMPLE_ADDRESS = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
OTHER_ADDRESS = encode_bech32m("xch", bytes(range(32)))
TESTNET_ADDRESS = encode_bech32m("txch", bytes(range(32)))
# Valid bech32m with 31 and 33 zero bytes: the SDK will not encode them, so they are written out.
SHORT_ADDRESS = "xch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq269n2"
LONG_ADDRESS = "xch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqql3gmwg"
SECRET = "sk-live-0123456789abcdef"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tracker.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that loading ``path`` raises, checked to be one line."""
    with pytest.raises(ConfigError) as info:
        load(path, {} if env is None else env)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert message
    assert len(message.splitlines()) == 1, message
    assert "\n" not in message
    assert "\r" not in message
    return message


def assert_names(message: str, path: Path, key: str, value: str) -> None:
    assert str(path) in message, message
    assert key in message, message
    assert value in message, message


# --- the example file and the documented defaults ---------------------------------------------


def test_example_file_loads_with_documented_defaults() -> None:
    s = load(EXAMPLE, {})
    assert s.path == EXAMPLE
    assert s.database_url == "sqlite:///tracker.db"
    assert s.interval_seconds == 300
    assert s.addresses == (AddressEntry(address=EXAMPLE_ADDRESS, label="example"),)
    assert s.watched == (WatchedAddress(EXAMPLE_ADDRESS, "example"),)
    sc = s.spacescan
    assert sc.network == "mainnet"
    assert sc.base_url == "https://api.spacescan.io"
    assert sc.api_key is None
    assert sc.key is None
    assert sc.requests_per_minute == 3
    assert sc.timeout_seconds == 30
    assert sc.concurrency == "auto"
    assert sc.concurrency_cap == 64
    assert sc.max_attempts == 4
    assert sc.include_xch is True
    assert sc.include_dust is False
    assert s.network_prefix == "xch"
    assert s.metrics.port is None
    assert s.stale_after_seconds == 900  # three intervals
    assert s.notifications.webhook_url is None
    assert s.retention_policy is None
    assert (s.workers.mode, s.workers.budget) == ("single", "split")


def test_example_file_with_api_key_uses_pro_host_and_higher_budget() -> None:
    s = load(EXAMPLE, {"SPACESCAN_API_KEY": SECRET})
    assert s.spacescan.key == SECRET
    assert isinstance(s.spacescan.api_key, SecretStr)
    assert s.spacescan.base_url == "https://pro-api.spacescan.io"
    assert s.spacescan.requests_per_minute == 60


def test_empty_file_gets_all_defaults(tmp_path: Path) -> None:
    s = load(write(tmp_path, ""), {})
    assert s.addresses == ()
    assert s.watched == ()
    assert s.database_url == "sqlite:///tracker.db"
    assert s.interval_seconds == 300
    assert s.spacescan.network == "mainnet"
    assert s.spacescan.base_url == "https://api.spacescan.io"
    assert s.spacescan.requests_per_minute == 3
    assert s.spacescan.include_xch is True


@pytest.mark.parametrize(
    ("network", "env", "host", "rpm"),
    [
        ("mainnet", {}, "https://api.spacescan.io", 3),
        ("mainnet", {"SPACESCAN_API_KEY": SECRET}, "https://pro-api.spacescan.io", 60),
        ("testnet11", {}, "https://api-testnet11.spacescan.io", 3),
        ("testnet11", {"SPACESCAN_API_KEY": SECRET}, "https://pro-api-testnet11.spacescan.io", 60),
    ],
)
def test_host_and_budget_follow_network_and_key(
    tmp_path: Path, network: str, env: dict[str, str], host: str, rpm: int
) -> None:
    s = load(write(tmp_path, f'[spacescan]\nnetwork = "{network}"\n'), env)
    assert s.spacescan.network == network
    assert s.spacescan.base_url == host
    assert s.spacescan.requests_per_minute == rpm


def test_api_key_in_file_selects_pro_host(tmp_path: Path) -> None:
    s = load(write(tmp_path, f'[spacescan]\napi_key = "{SECRET}"\n'), {})
    assert s.spacescan.key == SECRET
    assert s.spacescan.base_url == "https://pro-api.spacescan.io"
    assert s.spacescan.requests_per_minute == 60


@pytest.mark.parametrize("env", [{}, {"SPACESCAN_API_KEY": SECRET}])
def test_explicit_base_url_wins_and_loses_trailing_slash(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = write(tmp_path, '[spacescan]\nbase_url = "http://localhost:8080/api/"\n')
    assert load(path, env).spacescan.base_url == "http://localhost:8080/api"


@pytest.mark.parametrize(("env", "rpm"), [({}, 120.0), ({"SPACESCAN_API_KEY": SECRET}, 10.0)])
def test_explicit_requests_per_minute_wins(tmp_path: Path, env: dict[str, str], rpm: float) -> None:
    path = write(tmp_path, f"[spacescan]\nrequests_per_minute = {rpm}\n")
    assert load(path, env).spacescan.requests_per_minute == rpm


def test_integer_accepted_for_float_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "[spacescan]\ntimeout_seconds = 5\nrequests_per_minute = 7\n")
    s = load(path, {})
    assert s.spacescan.timeout_seconds == 5
    assert s.spacescan.requests_per_minute == 7


def test_all_keys_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        [database]
        url = "postgresql+psycopg://tracker@db.example/tracker"

        [spacescan]
        network = "testnet11"
        timeout_seconds = 12.5
        concurrency = 2
        max_attempts = 7
        include_xch = false
        include_dust = true

        [schedule]
        interval_seconds = 60

        [metrics]
        port = 9464
        host = "0.0.0.0"
        stale_after_seconds = 120

        [notifications]
        webhook_url = "https://hooks.example/t"
        timeout_seconds = 5
        max_attempts = 2

        [retention]
        keep = "all:7d,hourly:90d,daily:forever"

        [workers]
        mode = "shared"
        budget = "each"

        [[addresses]]
        address = "{TESTNET_ADDRESS}"
        """,
    )
    s = load(path, {})
    assert s.database_url == "postgresql+psycopg://tracker@db.example/tracker"
    assert s.spacescan.network == "testnet11"
    assert s.spacescan.timeout_seconds == 12.5
    assert s.spacescan.concurrency == 2
    assert s.spacescan.max_attempts == 7
    assert s.spacescan.include_xch is False
    assert s.spacescan.include_dust is True
    assert s.network_prefix == "txch"
    assert s.interval_seconds == 60
    assert (s.metrics.port, s.metrics.host, s.stale_after_seconds) == (9464, "0.0.0.0", 120)
    assert s.notifications.webhook_url is not None
    assert s.notifications.webhook_url.get_secret_value() == "https://hooks.example/t"
    assert (s.notifications.timeout_seconds, s.notifications.max_attempts) == (5, 2)
    policy = s.retention_policy
    assert policy is not None
    assert str(policy) == "all:7d,hourly:90d,daily:forever"
    assert policy.rules[1].age == timedelta(days=90)
    assert (s.workers.mode, s.workers.budget) == ("shared", "each")
    assert s.addresses == (AddressEntry(address=TESTNET_ADDRESS, label=None),)


def test_settings_are_frozen() -> None:
    s = load(EXAMPLE, {})
    with pytest.raises(ValidationError, match="frozen"):
        s.schedule.interval_seconds = 1
    with pytest.raises(ValidationError, match="frozen"):
        s.spacescan.api_key = SecretStr("x")
    with pytest.raises(ValidationError, match="frozen"):
        s.addresses = ()
    assert s.interval_seconds == 300


# --- environment overrides and where the file is ----------------------------------------------


def test_environment_overrides_database_url_and_api_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[database]\nurl = "sqlite:///file.db"\n[spacescan]\napi_key = "from-the-file"\n',
    )
    env = {"TRACKER_DATABASE_URL": "sqlite:///env.db", "SPACESCAN_API_KEY": SECRET}
    s = load(path, env)
    assert s.database_url == "sqlite:///env.db"
    assert s.spacescan.key == SECRET


def test_empty_environment_values_do_not_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[database]\nurl = "sqlite:///file.db"\n[spacescan]\napi_key = "from-the-file"\n',
    )
    s = load(path, {"TRACKER_DATABASE_URL": "", "SPACESCAN_API_KEY": ""})
    assert s.database_url == "sqlite:///file.db"
    assert s.spacescan.key == "from-the-file"


def test_load_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_DATABASE_URL", "sqlite:///from-environ.db")
    monkeypatch.setenv("SPACESCAN_API_KEY", SECRET)
    s = load(write(tmp_path, ""))
    assert s.database_url == "sqlite:///from-environ.db"
    assert s.spacescan.key == SECRET


def test_bad_database_url_in_environment_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, ""), {"TRACKER_DATABASE_URL": "mysql://user:sekret@host/db"})
    assert "TRACKER_DATABASE_URL" in message
    assert "mysql://user:***@host/db" in message
    assert "sekret" not in message


def test_config_path_precedence(tmp_path: Path) -> None:
    env = {"TRACKER_CONFIG": "/etc/tracker/env.toml"}
    assert config_path("cli.toml", env) == Path("cli.toml")
    assert config_path(tmp_path / "cli.toml", env) == tmp_path / "cli.toml"
    assert config_path(None, env) == Path("/etc/tracker/env.toml")
    assert config_path(None, {}) == Path("tracker.toml")
    assert config_path(None, {"TRACKER_CONFIG": ""}) == Path("tracker.toml")


# --- the file itself --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    message = error_of(path)
    assert str(path) in message
    assert "not found" in message
    assert "--config" in message
    assert "TRACKER_CONFIG" in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    message = error_of(tmp_path)
    assert str(tmp_path) in message
    assert "cannot read" in message


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tracker.toml"
    path.write_bytes(b'[database]\nurl = "\xff\xfe"\n')
    message = error_of(path)
    assert str(path) in message
    assert "cannot read" in message


@pytest.mark.parametrize(
    "text",
    [
        "[spacescan\nnetwork = 'mainnet'\n",
        "[spacescan]\ntimeout_seconds = \n",
        "[spacescan]\nnetwork = 'mainnet'\nnetwork = 'testnet11'\n",
        'x = """\nunterminated\n',
    ],
)
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert str(path) in message
    assert "invalid TOML: " in message
    assert message.split("invalid TOML: ", 1)[1].strip()


# --- addresses --------------------------------------------------------------------------------


def addresses_file(tmp_path: Path, *addresses: str, network: str = "mainnet") -> Path:
    entries = "".join(f"[[addresses]]\naddress = {json.dumps(a)}\n" for a in addresses)
    return write(tmp_path, f'[spacescan]\nnetwork = "{network}"\n{entries}')


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (EXAMPLE_ADDRESS[:-1] + "9", "bad checksum"),
        (EXAMPLE_ADDRESS[:10] + "q" + EXAMPLE_ADDRESS[11:], "bad checksum"),
        (encode_bech32m("txch", bytes(32)), "expected prefix 'xch', got 'txch'"),
        (SHORT_ADDRESS, "payload is 31 bytes, expected 32"),
        (LONG_ADDRESS, "payload is 33 bytes, expected 32"),
        ("not-an-address", "missing separator"),
        ("xch1 garbage", "invalid character"),
        ("XCH" + EXAMPLE_ADDRESS[3:], "mixed case"),
        ("\u0441" + EXAMPLE_ADDRESS[1:], "not a bech32m string"),
        ("", "not a bech32m string"),
    ],
)
def test_invalid_address_on_mainnet(tmp_path: Path, bad: str, reason: str) -> None:
    path = addresses_file(tmp_path, EXAMPLE_ADDRESS, bad)
    message = error_of(path)
    assert_names(message, path, "addresses[1].address", repr(bad))
    assert "not a valid Chia address" in message
    assert reason in message


def test_mainnet_address_on_testnet11(tmp_path: Path) -> None:
    path = addresses_file(tmp_path, TESTNET_ADDRESS, EXAMPLE_ADDRESS, network="testnet11")
    message = error_of(path)
    assert_names(message, path, "addresses[1].address", repr(EXAMPLE_ADDRESS))
    assert "expected prefix 'txch', got 'xch'" in message


def test_addresses_are_normalised_and_labels_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        [[addresses]]
        address = "  {EXAMPLE_ADDRESS.upper()}\\n"
        label = "  Cold wallet "

        [[addresses]]
        address = "\\t{OTHER_ADDRESS}"
        """,
    )
    assert load(path, {}).watched == (
        WatchedAddress(EXAMPLE_ADDRESS, "  Cold wallet "),
        WatchedAddress(OTHER_ADDRESS, None),
    )


@pytest.mark.parametrize(
    "duplicate",
    [
        EXAMPLE_ADDRESS,
        EXAMPLE_ADDRESS.upper(),
        f" {EXAMPLE_ADDRESS}  ",
        f"\t{EXAMPLE_ADDRESS.upper()}",
    ],
)
def test_duplicate_addresses(tmp_path: Path, duplicate: str) -> None:
    path = addresses_file(tmp_path, EXAMPLE_ADDRESS, OTHER_ADDRESS, duplicate)
    message = error_of(path)
    # The one-line message collapses runs of whitespace, inside the quoted value too.
    assert_names(message, path, "addresses[2].address", " ".join(repr(duplicate).split()))
    assert "duplicate of addresses[0]" in message


# --- unknown keys, wrong types, out-of-range values -------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[databse]\nurl = 'sqlite:///x.db'\n", "databse"),
        ("interval_seconds = 60\n", "interval_seconds"),
        ("[database]\nuri = 'sqlite:///x.db'\n", "database.uri"),
        ("[spacescan]\ntimeout = 30\n", "spacescan.timeout"),
        ("[spacescan]\napikey = 'abc'\n", "spacescan.apikey"),
        ("[schedule]\ninterval = 60\n", "schedule.interval"),
        (f"[[addresses]]\naddress = '{EXAMPLE_ADDRESS}'\nlable = 'x'\n", "addresses[0].lable"),
        (
            f"[[addresses]]\naddress = '{EXAMPLE_ADDRESS}'\n"
            f"[[addresses]]\naddress = '{OTHER_ADDRESS}'\nname = 'x'\n",
            "addresses[1].name",
        ),
    ],
)
def test_unknown_keys(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert_names(message, path, f"{key}: unknown key", key)


@pytest.mark.parametrize(
    ("text", "key", "shown"),
    [
        ("[spacescan]\ntimeout_seconds = '30'\n", "spacescan.timeout_seconds", "'30'"),
        ("[spacescan]\ninclude_xch = 'yes'\n", "spacescan.include_xch", "'yes'"),
        ("[spacescan]\ninclude_xch = 1\n", "spacescan.include_xch", "got 1"),
        ("[spacescan]\nconcurrency = true\n", "spacescan.concurrency", "True"),
        ("[spacescan]\nconcurrency = 2.0\n", "spacescan.concurrency", "2.0"),
        ("[spacescan]\nrequests_per_minute = '3'\n", "spacescan.requests_per_minute", "'3'"),
        ("[spacescan]\nrequests_per_minute = ''\n", "spacescan.requests_per_minute", "got ''"),
        (
            "[spacescan]\nrequests_per_minute = false\n",
            "spacescan.requests_per_minute",
            "got False",
        ),
        ("[spacescan]\nbase_url = false\n", "spacescan.base_url", "got False"),
        ("[spacescan]\ninclude_dust = 'yes'\n", "spacescan.include_dust", "'yes'"),
        ("[metrics]\nport = '9464'\n", "metrics.port", "'9464'"),
        ("[notifications]\nmax_attempts = 1.5\n", "notifications.max_attempts", "1.5"),
        ("[retention]\nkeep = 7\n", "retention.keep", "got 7"),
        ("[workers]\nmode = 'many'\n", "workers.mode", "'many'"),
        ("[workers]\nbudget = 'half'\n", "workers.budget", "'half'"),
        ("[spacescan]\nnetwork = 'testnet10'\n", "spacescan.network", "'testnet10'"),
        ("[spacescan]\nnetwork = []\n", "spacescan.network", "got []"),
        ("[spacescan]\nnetwork = {a = 1}\n", "spacescan.network", "got {'a': 1}"),
        (
            "[spacescan]\nbase_url = 'api.spacescan.io'\n",
            "spacescan.base_url",
            "'api.spacescan.io'",
        ),
        ("[schedule]\ninterval_seconds = 1.5\n", "schedule.interval_seconds", "1.5"),
        ("[schedule]\ninterval_seconds = '300'\n", "schedule.interval_seconds", "'300'"),
        ("spacescan = 'mainnet'\n", "spacescan", "'mainnet'"),
        (f"addresses = '{EXAMPLE_ADDRESS}'\n", "addresses", repr(EXAMPLE_ADDRESS)),
        (f"addresses = ['{EXAMPLE_ADDRESS}']\n", "addresses[0]", repr(EXAMPLE_ADDRESS)),
        ("[[addresses]]\naddress = 42\n", "addresses[0].address", "got 42"),
        (f"[[addresses]]\naddress = '{EXAMPLE_ADDRESS}'\nlabel = 7\n", "addresses[0].label", "7"),
    ],
)
def test_wrong_types(tmp_path: Path, text: str, key: str, shown: str) -> None:
    path = write(tmp_path, text)
    assert_names(error_of(path), path, f"{key}: ", shown)


def test_missing_address_in_entry(tmp_path: Path) -> None:
    path = write(tmp_path, "[[addresses]]\nlabel = 'no address'\n")
    assert_names(error_of(path), path, "addresses[0].address", "required key is missing")


@pytest.mark.parametrize(
    ("text", "key", "shown"),
    [
        ("[spacescan]\ntimeout_seconds = 0\n", "spacescan.timeout_seconds", "got 0"),
        ("[spacescan]\ntimeout_seconds = -1.5\n", "spacescan.timeout_seconds", "got -1.5"),
        ("[spacescan]\ntimeout_seconds = 601\n", "spacescan.timeout_seconds", "got 601"),
        ("[spacescan]\ntimeout_seconds = nan\n", "spacescan.timeout_seconds", "got nan"),
        ("[spacescan]\nrequests_per_minute = -3\n", "spacescan.requests_per_minute", "got -3"),
        ("[spacescan]\nrequests_per_minute = 0\n", "spacescan.requests_per_minute", "got 0"),
        ("[spacescan]\nrequests_per_minute = inf\n", "spacescan.requests_per_minute", "got inf"),
        ("[spacescan]\nconcurrency = 0\n", "spacescan.concurrency", "got 0"),
        ("[spacescan]\nconcurrency = 257\n", "spacescan.concurrency", "got 257"),
        ('[spacescan]\nconcurrency = "many"\n', "spacescan.concurrency", "got 'many'"),
        ("[spacescan]\nmax_attempts = 0\n", "spacescan.max_attempts", "got 0"),
        ("[schedule]\ninterval_seconds = 0\n", "schedule.interval_seconds", "got 0"),
        ("[schedule]\ninterval_seconds = -300\n", "schedule.interval_seconds", "got -300"),
        ("[database]\nurl = ''\n", "database.url", "got ''"),
        ("[metrics]\nport = 0\n", "metrics.port", "got 0"),
        ("[metrics]\nport = 65536\n", "metrics.port", "got 65536"),
        ("[notifications]\ntimeout_seconds = 0\n", "notifications.timeout_seconds", "got 0"),
        ("[schedule]\ninterval_seconds = 31536001\n", "schedule.interval_seconds", "got 31536001"),
        (
            f"[[addresses]]\naddress = '{EXAMPLE_ADDRESS}'\nlabel = '{'x' * 201}'\n",
            "addresses[0].label",
            "'xxxxxxxx",
        ),
    ],
)
def test_out_of_range_values(tmp_path: Path, text: str, key: str, shown: str) -> None:
    path = write(tmp_path, text)
    assert_names(error_of(path), path, f"{key}: ", shown)


def test_several_problems_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, "[spacescan]\nconcurrency = 0\nmax_attempts = 0\ntimeout = 1\n")
    message = error_of(path)
    assert_names(message, path, "spacescan.concurrency", "got 0")
    assert "(and 2 more problems)" in message


def test_long_bad_value_is_shortened(tmp_path: Path) -> None:
    path = write(tmp_path, f"[spacescan]\nnetwork = '{'m' * 500}'\n")
    message = error_of(path)
    assert_names(message, path, "spacescan.network", "'mmmm")
    assert "..." in message
    assert len(message) < 300


@pytest.mark.parametrize(("quoted", "shown"), [('"a\\nb"', "'a\\nb'"), ('""', "''")])
def test_odd_unknown_keys_stay_on_one_line(tmp_path: Path, quoted: str, shown: str) -> None:
    path = write(tmp_path, f"[spacescan]\n{quoted} = 1\n")
    assert_names(error_of(path), path, f"spacescan.{shown}: unknown key", shown)


# --- the database URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///tracker.db",
        "sqlite://",
        "postgresql://tracker@localhost/tracker",
        "postgresql+psycopg://tracker:pw@localhost:5432/tracker",
    ],
)
def test_supported_database_urls(tmp_path: Path, url: str) -> None:
    assert load(write(tmp_path, f"[database]\nurl = '{url}'\n"), {}).database_url == url


@pytest.mark.parametrize("url", ["tracker.db", "not a url", "sqlite:/tracker.db"])
def test_invalid_database_url(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f"[database]\nurl = '{url}'\n")
    message = error_of(path)
    assert_names(message, path, "database.url", repr(url))
    assert "not a database URL" in message


def test_database_url_with_bad_port(tmp_path: Path) -> None:
    path = write(tmp_path, "[database]\nurl = 'postgresql://user:sekret@host:port/db'\n")
    message = error_of(path)
    assert_names(message, path, "database.url", "host:port/db")
    assert "not a database URL" in message
    assert "sekret" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://user:sekret@host/db", "mysql://user:***@host/db"),
        ("mysql+pymysql://user:sekret@host/db", "mysql+pymysql://user:***@host/db"),
        ("oracle://scott@host/db", "oracle://***@host/db"),
    ],
)
def test_unsupported_database(tmp_path: Path, url: str, shown: str) -> None:
    path = write(tmp_path, f"[database]\nurl = '{url}'\n")
    message = error_of(path)
    assert_names(message, path, "database.url", shown)
    assert "only sqlite and postgresql" in message
    assert "sekret" not in message


def test_password_in_misplaced_database_url_is_hidden(tmp_path: Path) -> None:
    path = write(tmp_path, "database = 'postgresql://user:sekret@host/db'\n")
    message = error_of(path)
    assert_names(message, path, "database: ", "host/db")
    assert "sekret" not in message


def test_password_in_database_array_of_tables_is_hidden(tmp_path: Path) -> None:
    path = write(tmp_path, "[[database]]\nurl = 'postgresql://user:sekret@host/db'\n")
    message = error_of(path)
    assert_names(message, path, "database: ", "{'url': '(hidden)'}")
    assert "sekret" not in message


@pytest.mark.parametrize("value", ["5", "['postgresql://user:sekret@host/db']", "true"])
def test_database_url_of_the_wrong_type_is_hidden(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"[database]\nurl = {value}\n")
    message = error_of(path)
    assert_names(message, path, "database.url: ", "got (hidden)")
    assert "sekret" not in message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql+asyncpg://user:sekret@host/db", "the asyncpg driver is not supported"),
        ("postgresql+psycopg2://user:sekret@host/db", "the psycopg2 driver is not supported"),
        ("sqlite+aiosqlite:///tracker.db", "the aiosqlite driver is not supported"),
        ("postgresql://user:sekret@host/db?timeout=abc", "timeout='abc' must be a number"),
        ("postgresql://user:sekret@host/db?connect_timeout=-1", "connect_timeout='-1'"),
        ("sqlite:///tracker.db?timeout=nan", "timeout='nan' must be a number"),
        ("postgresql://user:sekret@host/db?statement_timeout=1e99", "statement_timeout='1e99'"),
    ],
)
def test_database_url_that_could_not_be_opened_is_refused_at_load(
    tmp_path: Path, url: str, fragment: str
) -> None:
    path = write(tmp_path, f"[database]\nurl = '{url}'\n")
    message = error_of(path)
    assert_names(message, path, "database.url: ", fragment)
    assert "sekret" not in message


@pytest.mark.parametrize(
    "url", ["sqlite:///tracker.db?timeout=30", "postgresql://u@h/db?connect_timeout=10"]
)
def test_numeric_timeouts_in_the_database_url_are_accepted(tmp_path: Path, url: str) -> None:
    assert load(write(tmp_path, f"[database]\nurl = '{url}'\n"), {}).database_url == url


# Passwords as people write them: quotes, spaces, and "/", "?", "#" or "@" left unencoded (which
# SQLAlchemy still reads as part of the password).
ODD_PASSWORDS = ['it\'s a "pass" word', "pa/ss+w0rd==", "pa?ss&w=rd", "pa#ss;word", "p%40ss w0rd"]


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_odd_passwords_never_show(tmp_path: Path, password: str) -> None:
    url = f"postgresql://tracker:{password}@db.example:5432/tracker"
    s = load(write(tmp_path, f"[database]\nurl = {json.dumps(url)}\n"), {})
    assert s.database_url == url
    assert s.masked_database_url == "postgresql://tracker:***@db.example:5432/tracker"
    for shown in (repr(s), str(s), repr(s.database), s.masked_database_url):
        assert password not in shown
    redact = s.redactor()
    assert password not in redact(f"connection to {url} failed: password {password!r} refused")
    decoded = password.replace("%40", "@")  # what the server receives
    assert decoded not in redact(f"password authentication failed for {decoded}")


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_odd_passwords_never_show_in_an_error(tmp_path: Path, password: str) -> None:
    for url in (
        f"mysql://tracker:{password}@db.example/tracker",
        f"postgresql+asyncpg://tracker:{password}@db.example/tracker",
        f"postgresql://tracker:{password}@db.example/tracker?timeout=abc",
    ):
        path = write(tmp_path, f"[database]\nurl = {json.dumps(url)}\n")
        message = error_of(path)
        assert_names(message, path, "database.url: ", "tracker:***@db.example")
        assert password not in message
        message = error_of(write(tmp_path, ""), {"TRACKER_DATABASE_URL": url})
        assert "TRACKER_DATABASE_URL" in message
        assert password not in message


def test_a_database_user_without_a_password_is_not_a_secret(tmp_path: Path) -> None:
    url = "postgresql+psycopg://tracker@db.example/tracker"
    s = load(write(tmp_path, f"[database]\nurl = '{url}'\n"), {})
    # Peer or certificate login: masking the user name would mangle every log line that says
    # "tracker".
    assert s.redactor()("tracker polled 3 addresses") == "tracker polled 3 addresses"
    assert not s.redactor()


def test_redactor_knows_every_secret_of_the_configuration(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        [database]
        url = "postgresql://u:db-sekret@h/db?sslpassword=ssl-sekret"

        [spacescan]
        api_key = "{SECRET}"

        [notifications]
        webhook_url = "https://hook-user:hook-sekret@hooks.example/x?token=tok-sekret"
        """,
    )
    s = load(path, {})
    text = s.redactor()(
        f"{SECRET} db-sekret ssl-sekret hook-sekret tok-sekret {json.dumps(SECRET)} {SECRET!r}"
    )
    for secret in (SECRET, "db-sekret", "ssl-sekret", "hook-sekret", "tok-sekret"):
        assert secret not in text
    assert text.count("***") == 7


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:hook-sekret@hooks.example/x",
        "hooks.example/x?token=hook-sekret",
        "mailto:hook-sekret@example.org",
    ],
)
def test_webhook_url_must_be_http_and_never_shows(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f"[notifications]\nwebhook_url = '{url}'\n")
    message = error_of(path)
    assert_names(message, path, "notifications.webhook_url: ", "must start with http")
    assert "hook-sekret" not in message


def test_webhook_url_is_secret(tmp_path: Path) -> None:
    url = "https://hooks.example/services/T000/B000/hook-sekret"
    s = load(write(tmp_path, f"[notifications]\nwebhook_url = '{url}'\n"), {})
    assert s.notifications.webhook_url is not None
    assert s.notifications.webhook_url.get_secret_value() == url
    assert "hook-sekret" not in repr(s)
    assert "hook-sekret" not in str(s.notifications)


@pytest.mark.parametrize(
    ("keep", "fragment"),
    [
        ("all:7d,hourly:3d", "'hourly:3d': must reach further back than 'all:7d'"),
        ("daily:90d,hourly:forever", "tiers go from finer to coarser"),
        ("yearly:forever", "unknown tier 'yearly'"),
        ("all:7d,hourly:9999999d", "the age is too long"),
        ("", "empty retention policy"),
    ],
)
def test_bad_retention_policy(tmp_path: Path, keep: str, fragment: str) -> None:
    path = write(tmp_path, f"[retention]\nkeep = '{keep}'\n")
    assert_names(error_of(path), path, "retention.keep: ", fragment)


@pytest.mark.parametrize(
    ("text", "env", "where"),
    [
        ("[workers]\nmode = 'shared'\n", {}, "database.url"),
        (
            "[workers]\nmode = 'shared'\n[database]\nurl = 'postgresql://u@h/db'\n",
            {"TRACKER_DATABASE_URL": "sqlite:///x.db"},
            "TRACKER_DATABASE_URL",
        ),
    ],
)
def test_shared_workers_need_postgresql(
    tmp_path: Path, text: str, env: dict[str, str], where: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path, env)
    assert_names(message, path, "workers.mode: ", "needs PostgreSQL")
    assert f"but {where} is a SQLite database" in message


def test_shared_workers_on_postgresql(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\nmode = 'shared'\n")
    s = load(path, {"TRACKER_DATABASE_URL": "postgresql://u@h/db"})
    assert s.workers.mode == "shared"


# --- the API key never shows ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[spacescan]\napi_key = 12345\n", "spacescan.api_key"),
        ("[spacescan]\napi_key = 12345.678\n", "spacescan.api_key"),
        ("[spacescan]\napi_key = ['12345']\n", "spacescan.api_key"),
        ("[spacescan]\napi_key = ''\n", "spacescan.api_key"),
        ("[[spacescan]]\napi_key = '12345'\n", "spacescan"),
        ("spacescan = [{api_key = '12345'}]\n", "spacescan"),
        ("spacescan = [{timeout_seconds = 1}, {nested = {api_key = '12345'}}]\n", "spacescan"),
    ],
)
def test_api_key_never_in_error(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert str(path) in message
    assert f"{key}: " in message
    assert "12345" not in message


def test_api_key_not_in_error_when_another_key_is_wrong(tmp_path: Path) -> None:
    path = write(tmp_path, f"[spacescan]\napi_key = '{SECRET}'\nconcurrency = 0\n")
    message = error_of(path, {"SPACESCAN_API_KEY": SECRET})
    assert_names(message, path, "spacescan.concurrency", "got 0")
    assert SECRET not in message


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (f"[spacescan]\napi_key = '{SECRET}'\n", {}),
        ("", {"SPACESCAN_API_KEY": SECRET}),
    ],
)
def test_api_key_not_in_repr(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    s = load(write(tmp_path, text), env)
    assert s.spacescan.key == SECRET
    for shown in (
        repr(s),
        str(s),
        repr(s.spacescan),
        str(s.spacescan),
        f"{s!r} {s.spacescan}",
        s.model_dump_json(),
        str(s.model_dump()),
    ):
        assert SECRET not in shown
        assert "api_key" in shown
    assert "api_key=None" in repr(load(write(tmp_path, ""), {}).spacescan)


# --- parse never fails in any other way -------------------------------------------------------

KEY_NAMES = [
    "database",
    "url",
    "spacescan",
    "network",
    "base_url",
    "api_key",
    "timeout_seconds",
    "requests_per_minute",
    "concurrency",
    "max_attempts",
    "include_xch",
    "include_dust",
    "schedule",
    "interval_seconds",
    "addresses",
    "address",
    "label",
    "metrics",
    "port",
    "notifications",
    "webhook_url",
    "retention",
    "keep",
    "workers",
    "mode",
    "budget",
]
SAMPLE_STRINGS = [
    "mainnet",
    "testnet11",
    "https://api.spacescan.io/",
    "ftp://x",
    "sqlite:///t.db",
    "postgresql://u:pw@h/db",
    "postgresql://u@h:port/db",
    "mysql://u:pw@h/db",
    "postgresql+asyncpg://u:pw@h/db",
    "sqlite:///t.db?timeout=abc",
    "all:7d,hourly:90d,daily:forever",
    "shared",
    "",
    " ",
    EXAMPLE_ADDRESS,
    EXAMPLE_ADDRESS.upper(),
    TESTNET_ADDRESS,
    SHORT_ADDRESS,
]

keys = st.one_of(st.sampled_from(KEY_NAMES), st.text(max_size=10))
scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(SAMPLE_STRINGS),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)
section_values = st.dictionaries(keys, scalars, max_size=6)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "database": section_values,
        "spacescan": section_values,
        "schedule": section_values,
        "metrics": section_values,
        "notifications": section_values,
        "retention": section_values,
        "workers": section_values,
        "addresses": st.lists(section_values, max_size=4),
    },
)
raw_configs = st.one_of(st.dictionaries(keys, values, max_size=6), shaped)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_configs)
def test_parse_returns_settings_or_one_line_config_error(raw: dict[str, Any]) -> None:
    try:
        result = parse(raw, Path("x.toml"), {})
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("x.toml: ")
        assert len(message.splitlines()) == 1, message
    else:
        assert isinstance(result, Settings)
