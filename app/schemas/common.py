"""Field types the API shares: row ids and timestamps, so each rule lives in one place.

`RowId`: an id (or a version number) names a row only from 1 up to 2**31 - 1, the range of
the INTEGER id columns on PostgreSQL. A larger number reaches no row, and the database refuses
to even compare it (PostgreSQL: "integer out of range"; SQLite past 2**63: OverflowError), which
was a 500; bounded here it is a 422 like any other bad input, and the OpenAPI document states
the range. Path parameters and body fields that name rows use it.

`UtcDateTime`: every timestamp the API returns carries its zone (UTC), so it is an RFC 3339
`date-time` as the document claims. PostgreSQL gives aware datetimes back, SQLite naive ones
(in UTC, since the app only writes UTC): those get the zone they were written in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

ROW_ID_MAX = 2**31 - 1

RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX)]


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
