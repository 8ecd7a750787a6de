"""SQL that migrations have applied: the views, written once, never edited.

A migration that ran must produce the same schema forever, so the migrations import nothing from
the live code but this module, and nothing here changes once a migration uses it: a new version
of a view is a new function, used by a new migration. The views' column meanings are the stable
interface for SQL users (see the README).
"""

from __future__ import annotations


def token_units(dialect: str, mojos: str, decimals: str) -> str:
    """SQL for an exact amount in token units, the same value on both databases.

    PostgreSQL gets a NUMERIC with exactly ``decimals`` digits after the point. SQLite has no
    decimal type and would turn a division into a float, so it gets the same digits as text.
    """
    if dialect == "postgresql":
        return f"round(CAST({mojos} AS NUMERIC) / power(10::numeric, {decimals}), {decimals})"
    padded = f"printf('%0*d', {decimals} + 1, abs({mojos}))"
    return (
        f"(CASE WHEN {mojos} < 0 THEN '-' ELSE '' END"
        f" || substr({padded}, 1, length({padded}) - {decimals})"
        f" || '.' || substr({padded}, -{decimals}))"
    )


def balance_history_v1(dialect: str) -> str:
    """``balance_history``: one row for every asset of every snapshot (revision 0001)."""
    return f"""
        CREATE VIEW balance_history AS
        SELECT ad.address AS address,
               ad.label AS label,
               a.asset_id AS asset_id,
               a.token_id AS token_id,
               a.symbol AS symbol,
               a.name AS name,
               s.taken_at AS taken_at,
               b.balance_mojos AS balance_mojos,
               {token_units(dialect, "b.balance_mojos", "a.decimals")} AS balance
        FROM snapshot_balances b
        JOIN snapshots s ON s.id = b.snapshot_id
        JOIN addresses ad ON ad.id = s.address_id
        JOIN assets a ON a.id = b.asset_id
        """


def balance_changes_v1(dialect: str) -> str:
    """``balance_changes``: one row per delta (revision 0001)."""
    return f"""
        CREATE VIEW balance_changes AS
        SELECT ad.address AS address,
               ad.label AS label,
               a.asset_id AS asset_id,
               a.symbol AS symbol,
               s.taken_at AS taken_at,
               p.taken_at AS previous_taken_at,
               d.previous_balance_mojos AS previous_balance_mojos,
               d.balance_mojos AS balance_mojos,
               d.delta_mojos AS delta_mojos,
               {token_units(dialect, "d.delta_mojos", "a.decimals")} AS delta
        FROM deltas d
        JOIN snapshots s ON s.id = d.snapshot_id
        JOIN snapshots p ON p.id = d.previous_snapshot_id
        JOIN addresses ad ON ad.id = s.address_id
        JOIN assets a ON a.id = d.asset_id
        """


# -- balance_values (revision 0005) ---------------------------------------------------------

_MAX = 9223372036854775807
_LIMB = 1_000_000_000
# Limbs of 10^9 a factor needs: a balance in mojos is below 2^63 (< 10^19), a price's digits
# (at most 18 significant ones, see tracker.valuation) below 10^18.
_MOJO_LIMBS = 3
_PRICE_LIMBS = 2


def _digits(price: str) -> str:
    """SQLite: the integer of a stored price's digits (``0.0011`` -> 11)."""
    return f"CAST(replace({price}, '.', '') AS INTEGER)"


def _scale(price: str) -> str:
    """SQLite: how many decimals a stored price has (``0.0011`` -> 4)."""
    return (
        f"(CASE WHEN instr({price}, '.') > 0 THEN length({price}) - instr({price}, '.') ELSE 0 END)"
    )


def _limbs(value: str, count: int) -> list[str]:
    """``value`` (a non-negative integer) as ``count`` (2 or 3) base-10^9 limbs, lowest first."""
    if count == 2:
        return [f"({value} % {_LIMB})", f"({value} / {_LIMB})"]
    return [f"({value} % {_LIMB})", f"({value} / {_LIMB} % {_LIMB})", f"({value} / {_LIMB**2})"]


def _multiply(a: list[str], b: list[str]) -> list[str]:
    """Schoolbook product of two limb lists (``b`` of 2 limbs), carried back into limbs.

    A position sums at most two products of limbs (< 2·10^18) and a carry (< 3·10^9): always
    within SQLite's 64-bit integers, so no step overflows into a float.
    """
    raw = []
    for k in range(len(a) + len(b) - 1):
        terms = [f"{a[i]} * {b[k - i]}" for i in range(len(a)) if 0 <= k - i < len(b)]
        raw.append("(" + " + ".join(terms) + ")")
    limbs, carry = [], "0"
    for term in raw:
        both = f"({term} + {carry})"
        limbs.append(f"({both} % {_LIMB})")
        carry = f"({both} / {_LIMB})"
    return [*limbs, carry]


def _sqlite_text(digits: str, width: int, scale: str) -> str:
    """Decimal text of ``digits`` (a string of exactly ``width`` digits, zeros in front
    allowed) divided by 10^``scale``, with every one of the ``scale`` decimals written."""
    padded = f"('{'0' * 80}' || {digits})"
    length = 80 + width
    scale = f"({scale})"
    whole = f"coalesce(nullif(ltrim(substr({padded}, 1, {length} - {scale}), '0'), ''), '0')"
    fraction = f"substr({padded}, {length} - {scale} + 1)"
    return f"({whole} || CASE WHEN {scale} > 0 THEN '.' || {fraction} ELSE '' END)"


def _sqlite_product(mojos: str | None, prices: list[str], scale: str) -> str:
    """SQLite: the exact product of a balance in mojos (or none) and one or two prices' digits
    (positive integers below 10^18), as text with ``scale`` decimals.

    SQLite has no exact decimal type and turns an integer overflow into a float, so a product
    that fits in 64 bits is computed at once, and any other in base-10^9 limbs.
    """
    fits = [f"{prices[0]} <= {_MAX} / {prices[1]}"] if len(prices) == 2 else []
    both = " * ".join(prices)
    if mojos is not None:
        fits.append(f"({mojos} = 0 OR {mojos} <= {_MAX} / ({both}))")
    product = " * ".join([*prices, *([mojos] if mojos is not None else [])])
    fast = _sqlite_text(f"printf('%030d', {product})", 30, scale)
    limbs = _limbs(mojos, 3) if mojos is not None else _limbs(prices[0], 2)
    for price in prices if mojos is not None else prices[1:]:
        limbs = _multiply(limbs, _limbs(price, 2))
    template = "%09d" * len(limbs)
    slow = _sqlite_text(
        f"printf('{template}', {', '.join(reversed(limbs))})", 9 * len(limbs), scale
    )
    if not fits:
        return fast
    return f"(CASE WHEN {' AND '.join(fits)} THEN {fast} ELSE {slow} END)"


def _value_sql(dialect: str, units: str) -> tuple[str, str, str, str, str, str]:
    """balance_values' expressions: the oldest price time that counts, the number 1, a CAT's
    value in XCH, a CAT's price, XCH's value and a CAT's value (px: the CAT's price in XCH,
    pf: XCH's price in the currency)."""
    if dialect == "postgresql":
        return (
            "s.taken_at - make_interval(secs => cfg.max_age_seconds)",
            "CAST(1 AS NUMERIC)",
            f"{units} * px.price",
            "px.price * pf.price",
            f"{units} * pf.price",
            f"{units} * px.price * pf.price",
        )
    x, f = _digits("px.price"), _digits("pf.price")
    sx, sf = _scale("px.price"), _scale("pf.price")
    return (
        # The whole seconds moved back, then the same microseconds (strftime alone would round
        # the time to milliseconds).
        "strftime('%Y-%m-%d %H:%M:%S', substr(s.taken_at, 1, 19),"
        " '-' || cfg.max_age_seconds || ' seconds') || substr(s.taken_at, 20)",
        "'1'",
        _sqlite_product("b.balance_mojos", [x], f"a.decimals + {sx}"),
        _sqlite_product(None, [x, f], f"{sx} + {sf}"),
        _sqlite_product("b.balance_mojos", [f], f"a.decimals + {sf}"),
        _sqlite_product("b.balance_mojos", [x, f], f"a.decimals + {sx} + {sf}"),
    )


def balance_values_v1(dialect: str) -> str:
    """``balance_values``: every snapshot balance with its price and value (revision 0005).

    A CAT's price in XCH (``prices.quote = 'xch'``) and the XCH price in the currency of
    ``price_settings`` are each the latest observed at or before the snapshot and at most
    ``max_age_seconds`` old then; without one, the columns that need it are NULL (unpriced).
    Values are exact products: NUMERIC on PostgreSQL, the same digits as text on SQLite.
    """
    units = token_units(dialect, "b.balance_mojos", "a.decimals")
    cutoff, one, value_xch, price, xch_value, cat_value = _value_sql(dialect, units)

    def latest(asset: str, quote: str) -> str:
        return (
            f"(SELECT p.id FROM prices p WHERE p.asset_id = {asset} AND p.quote = {quote}"
            f" AND p.observed_at <= s.taken_at AND p.observed_at >= {cutoff}"
            " ORDER BY p.observed_at DESC LIMIT 1)"
        )

    return f"""
        CREATE VIEW balance_values AS
        SELECT ad.address AS address,
               ad.label AS label,
               a.asset_id AS asset_id,
               a.symbol AS symbol,
               s.taken_at AS taken_at,
               {units} AS balance,
               cfg.currency AS currency,
               CASE WHEN a.asset_id = 'xch' THEN {one} ELSE px.price END AS price_xch,
               CASE WHEN a.asset_id = 'xch' THEN {units}
                    WHEN px.price IS NOT NULL THEN {value_xch} END AS value_xch,
               CASE WHEN pf.price IS NULL THEN NULL
                    WHEN a.asset_id = 'xch' THEN pf.price
                    WHEN px.price IS NOT NULL THEN {price} END AS price,
               CASE WHEN pf.price IS NULL THEN NULL
                    WHEN a.asset_id = 'xch' THEN {xch_value}
                    WHEN px.price IS NOT NULL THEN {cat_value} END AS value,
               CASE WHEN a.asset_id = 'xch' THEN pf.observed_at
                    WHEN px.price IS NULL THEN NULL
                    WHEN pf.price IS NULL OR px.observed_at < pf.observed_at THEN px.observed_at
                    ELSE pf.observed_at END AS priced_at
        FROM snapshot_balances b
        JOIN snapshots s ON s.id = b.snapshot_id
        JOIN addresses ad ON ad.id = s.address_id
        JOIN assets a ON a.id = b.asset_id
        LEFT JOIN price_settings cfg ON cfg.id = 1
        LEFT JOIN prices px ON a.asset_id <> 'xch' AND px.id = {latest("b.asset_id", "'xch'")}
        LEFT JOIN prices pf ON cfg.currency IS NOT NULL AND pf.id = {
        latest("(SELECT x.id FROM assets x WHERE x.asset_id = 'xch')", "cfg.currency")
    }
        """
