"""Every HTTP route of the bundle, described: one `Op` per registered route and method.

Adding a route is one entry here (keep them grouped by path). `tests/test_openapi.py` fails, naming
the route, when a registered route has no entry or an entry names no registered route. Paths are
the registered routes (without the `/api` prefix); their `{parameters}` are ids (`schemas.ID`).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.openapi.schemas import Schema

# Answers every management route may give besides its own `errors`: bad id or body, wrong key, a write
# that lost too many races, storage unavailable; and with a body: too large, not JSON, a field unusable.
COMMON = (400, 401, 409, 503)
WITH_BODY = (413, 415, 422)
ADO = (422, 502)


@dataclass(frozen=True)
class Query:
    name: str
    schema: Schema
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Op:
    """One route and method: what it takes (`body`, `query`), answers (`answer`, `errors`) and who may call it."""

    method: str
    path: str
    summary: str
    answer: str | None  # component schema of the answer; None: an empty body
    body: str | None = None  # component schema of the JSON body
    errors: tuple[int, ...] = ()  # besides COMMON (and WITH_BODY when it takes a body) of management routes
    auth: str | None = "manageKey"  # None: anonymous; "serviceHook": the service hook secret
    query: tuple[Query, ...] = ()
    body_required: bool = True
    description: str = ""
    tag: str = "manage"

    def statuses(self) -> list[int]:
        """Every status the route may answer besides 200."""
        found = set(self.errors)
        if self.auth == "manageKey":
            found |= set(COMMON) | (set(WITH_BODY) if self.body else set())
        return sorted(found)


PAGE = (Query("top", {"type": "integer", "minimum": 1, "maximum": 1000}),
        Query("skip", {"type": "integer", "minimum": 0}))

OPERATIONS: tuple[Op, ...] = (
    Op("GET", "health", "Storage answers", "Health", errors=(503,), auth=None, tag="health"),
    Op("GET", "openapi.json", "This document", "OpenApiDocument", auth=None, tag="health"),
    Op("POST", "vsts/issue-updated", "Azure DevOps service hook receiver (workitem.updated)", None,
       body="ServiceHookEvent", errors=(400, 401, 413, 415, 503), auth="serviceHook", tag="webhook",
       description="400 when the organization is not installed (or uninstalled); 401 on a wrong secret; "
                   "other event types are answered 200 and ignored."),
    # -- integrations ----------------------------------------------------------------------------
    Op("PUT", "manage/integrations/{account_id}", "Install or re-install an integration", "Integration",
       body="InstallRequest", errors=ADO,
       description="Checks the organization URL, creates the service hook unless a healthy one exists, "
                   "queues the migration of legacy repositories. Re-installs after an uninstall."),
    Op("GET", "manage/integrations/{account_id}", "The integration (never secrets or tokens)", "Integration",
       errors=(404,)),
    Op("POST", "manage/integrations/{account_id}/reconcile", "Reconcile now (queued; answers 202)", "Reconcile",
       errors=(404,), body_required=False,
       description="Queues a subscription check, which also reads the linked work items changed since the "
                   "last pass, applies what the service hook never delivered and pushes what never reached "
                   "Azure DevOps. `last_reconciled` and `repaired` in the integration view show the result."),
    Op("POST", "manage/integrations/{account_id}/rotate-secret", "Rotate the service hook's secret", "Integration",
       errors=(*ADO, 404),
       description="A new hook with a new secret; the old secret stays accepted for a short overlap and the "
                   "old hook is deleted once it drained, so no delivery is lost."),
    Op("DELETE", "manage/integrations/{account_id}", "Uninstall: disable, delete service hooks and credential",
       "Uninstalled", errors=(404,),
       description="Kickoff checks stop and webhook deliveries are refused at once; service hooks are deleted "
                   "in Azure DevOps (best effort, reported); the credential is deleted unless a retry is needed "
                   "to finish (`complete: false`). Links and history stay readable. Idempotent: a repeat "
                   "answers 200 with nothing more deleted. PUT installs again."),
    Op("DELETE", "manage/integrations/{account_id}/organizations/{org_id}", "Unlink a tracker organization",
       "OrgLink", errors=(404,),
       description="The organization link becomes inactive (no sync either way, no checks); its config and "
                   "the groups' links stay. Idempotent; PUT of the integration for the organization re-links."),
    Op("PUT", "manage/integrations/{account_id}/organizations/{org_id}/config", "Replace an organization's sync "
       "config", "OrgLink", body="OrgConfig", errors=(404,)),
    Op("POST", "manage/integrations/{account_id}/organizations/{org_id}/issues", "Create a work item for a group "
       "and link it", "IssueOrDryRun", body="IssueCreate", errors=(*ADO, 404),
       query=(Query("dry_run", {"enum": ["true", "false", "1", "0"]},
                    description="true: answer the field errors a create would meet, create nothing"),)),
    # -- discovery (paged with top/skip; X-Total-Count and Link rel=next headers) ---------------------
    Op("GET", "manage/integrations/{account_id}/projects", "Projects of the organization", "AdoProjects",
       errors=(*ADO, 404), query=PAGE),
    Op("GET", "manage/integrations/{account_id}/projects/{project}/work-item-types", "Work item types of a "
       "project, with their fields and states", "AdoWorkItemTypes", errors=(*ADO, 404), query=PAGE),
    Op("GET", "manage/integrations/{account_id}/projects/{project}/work-item-types/{type}/states", "States of "
       "a work item type", "AdoStates", errors=(*ADO, 404), query=PAGE),
    Op("GET", "manage/integrations/{account_id}/projects/{project}/areas", "Area paths of a project",
       "AdoPaths", errors=(*ADO, 404), query=PAGE),
    Op("GET", "manage/integrations/{account_id}/projects/{project}/iterations", "Iteration paths of a project",
       "AdoPaths", errors=(*ADO, 404), query=PAGE),
    Op("GET", "manage/integrations/{account_id}/users", "Users of the organization by name or e-mail",
       "AdoUsers", errors=(*ADO, 404),
       query=(*PAGE, Query("query", {"type": "string", "maxLength": 256}, description="name or e-mail"))),
    Op("POST", "manage/integrations/{account_id}/organizations/{org_id}/issues/link", "Link a group to an "
       "existing work item", "Issue", body="IssueLink", errors=(*ADO, 404)),
    Op("GET", "manage/integrations/{account_id}/repositories", "Git repositories of the organization",
       "AdoRepositories", errors=(*ADO, 404)),
    Op("GET", "manage/integrations/{account_id}/search", "Search work items", "SearchChoices",
       errors=(*ADO, 404), query=(
           Query("field", {"const": "externalIssue"}, required=True),
           Query("query", {"type": "string", "minLength": 1, "maxLength": 1000}, required=True))),
    # -- the tracker's records -------------------------------------------------------------------
    Op("PUT", "manage/organizations/{org_id}/groups/{group_id}", "Create or replace a group", "Group",
       body="GroupRequest"),
    Op("PATCH", "manage/organizations/{org_id}/groups/{group_id}", "Change a group from the tracker (queues "
       "outbound sync)", "Group", body="GroupChange", errors=(404,)),
    Op("GET", "manage/organizations/{org_id}/groups/{group_id}", "A group with its links and activity", "Group",
       errors=(404,)),
    Op("DELETE", "manage/organizations/{org_id}/groups/{group_id}/links/{account_id}/{key}", "Unlink a work "
       "item from a group", "Unlinked", body="UnlinkOptions", body_required=False,
       errors=(404,), query=(
           Query("comment", {"enum": ["true", "false"]},
                 description="Also comment on the work item that it is no longer linked"),),
       description="Removes the link with its pending pushes in one transaction and tells the tracker "
                   "(`group.unlinked`). Idempotent: a link already gone answers `removed: false`. The optional "
                   "comment is posted once, after the removal; its failure is reported, not raised."),
    Op("PUT", "manage/organizations/{org_id}/repositories/{repo_id}", "Create or replace a repository",
       "Repository", body="RepositoryRequest"),
    Op("PUT", "manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}", "Create or edit a group "
       "comment (pushed to linked work items when the organization syncs comments)", "Comment",
       body="CommentRequest", errors=(404,)),
    Op("DELETE", "manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}", "Delete a group "
       "comment (and its copies on work items)", "Comment", errors=(404,)),
    Op("GET", "manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}", "A group comment with "
       "its copies on work items", "Comment", errors=(404,)),
    # -- tracker events ---------------------------------------------------------------------------
    Op("GET", "manage/organizations/{org_id}/events", "The pull feed of events, in commit order", "EventPage",
       query=(Query("after", {"type": "string", "maxLength": 4096}, description="the `next` of the last page"),
              Query("limit", {"type": "integer", "minimum": 1, "maximum": 500}))),
    Op("GET", "manage/organizations/{org_id}/deliveries", "Event deliveries that did not succeed at once",
       "DeliveryPage",
       query=(Query("status", {"enum": ["queued", "retrying", "failed", "delivered"]}),
              Query("after", {"type": "string", "maxLength": 4096}),
              Query("limit", {"type": "integer", "minimum": 1, "maximum": 500}))),
    Op("POST", "manage/organizations/{org_id}/deliveries/{delivery_id}/replay", "Deliver an event again",
       "Replayed", errors=(404,), body_required=False),
    Op("PUT", "manage/organizations/{org_id}/config", "The organization's event endpoint (the secret is stored "
       "sealed and never returned)", "TrackerConfig", body="TrackerConfigRequest"),
    Op("GET", "manage/organizations/{org_id}/config", "The organization's event endpoint", "TrackerConfig"),
    Op("GET", "manage/organizations/{org_id}/repositories/{repo_id}", "A repository", "Repository",
       errors=(404,)),
    Op("PUT", "manage/organizations/{org_id}/users/{user_id}", "Create or replace a user", "User",
       body="UserRequest"),
    Op("GET", "manage/organizations/{org_id}/users/{user_id}", "A user", "User", errors=(404,)),
)
