"""The one parser of ISO-8601 instants given as query parameters (journal, fills, orders filters)."""

from __future__ import annotations

from datetime import UTC, datetime

from api.errors import ApiError


def query_instant(name: str, text: str | None) -> datetime | None:
    """`text` as an aware UTC instant; a 422 `invalid_query` naming `name` when it is not one.

    Converting to UTC here (not later, in the journal's timestamp text) keeps an instant that is valid in
    its own offset but outside the calendar in UTC (`9999-12-31T23:59:59-14:00`) a client error."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(name, "must be an ISO-8601 date-time") from None
    if value.tzinfo is None:
        raise _invalid(name, "must carry a timezone (e.g. Z or +00:00)")
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _invalid(name, "must be between years 1 and 9999 in UTC") from None


def _invalid(name: str, error: str) -> ApiError:
    return ApiError(422, "invalid_query", [{"field": name, "error": error}])
