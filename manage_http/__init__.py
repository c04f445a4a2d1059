"""HTTP triggers: the management API under `/api/manage/...`, and `GET /api/health`.

Thin adapters: authenticate with the bearer key, then call a flow with the services and the route's
parameters, each bound by name in the route's own function (so mypy checks every call). Routes are
grouped by what they manage; each module registers its routes on the one blueprint.
"""

from manage_http import integrations, reconcile_routes, records  # noqa: F401  (registers the routes)
from manage_http.common import bp

__all__ = ["bp"]
