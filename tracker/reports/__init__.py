"""What users read: balances, history, change reports, poll status, exports and charts.

Everything here reads; nothing writes. Amounts leave as exact ``Decimal`` token units next to
their integer mojos, so every output format can show them without rounding.
"""
