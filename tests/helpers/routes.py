"""The app's own route table, flattened: every (method, path) a request can reach.

FastAPI 0.16x keeps included routers as nested entries; this walks them so tests can cover every
route, including ones added later, without listing them by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    protected: bool  # behind app.web.deps.authorised (current user + CSRF)
    endpoint: Any


def _dependency_calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _dependency_calls(sub)


def iter_routes(app: Any) -> Iterator[RouteInfo]:
    from app.web.deps import authorised, get_current_user

    def walk(entries: list[Any]) -> Iterator[Any]:
        for entry in entries:
            if hasattr(entry, "effective_candidates"):
                yield from walk(entry.effective_candidates())
            else:
                yield entry

    for route in walk(list(app.routes)):
        methods = getattr(route, "methods", None)
        dependant = getattr(route, "dependant", None)
        if not methods or dependant is None:
            continue  # static files, the OpenAPI document's own route
        calls = set(_dependency_calls(dependant))
        protected = authorised in calls or get_current_user in calls
        for method in sorted(methods - {"HEAD"}):
            yield RouteInfo(method, route.path, protected, route.endpoint)
