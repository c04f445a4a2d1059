"""HTTP triggers: the management API under `/api/manage/...`, and `GET /api/health`.

Thin adapters: authenticate with the bearer key, then call a flow with the services and the route's
parameters, each bound by name in the route's own function (so mypy checks every call). Routes are
grouped by what they manage; each module registers its routes on the one blueprint.
"""

from manage_http import (  # noqa: F401  (each module registers its routes)
    comments,
    discovery,
    events,
    integrations,
    lifecycle_routes,
    openapi,
    reconcile_routes,
    records,
    security_routes,
)
from manage_http.common import bp

__all__ = ["bp"]
