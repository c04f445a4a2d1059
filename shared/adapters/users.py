"""Tracker users in Table Storage, with the index of their verified e-mails.

Table `Users`, one partition per tracker organization: `user|<user id>` holds a user's e-mails and
projects; `email|<e-mail>|<user id>` rows index verified e-mails (carrying the projects), so the
webhook finds the members with an e-mail in one query. A user and its index rows are replaced in
one transaction.
"""

from __future__ import annotations

from shared.adapters import tables
from shared.core.keys import escape, join
from shared.core.models import User

TABLE = "Users"


def _email_row(email: str, user_id: str) -> str:
    return join("email", escape(email.lower()), user_id)


class UserStore:
    def get(self, org_id: str, user_id: str) -> User | None:
        entity = tables.get(TABLE, org_id, join("user", user_id))
        if entity is None:
            return None
        return User(org_id=org_id, user_id=user_id, emails=tables.loads(entity.get("emails"), []),
                    projects=tables.loads(entity.get("projects"), []))

    def put(self, user: User) -> None:
        """Create or replace a user and its e-mail index in one transaction."""

        def attempt() -> None:
            existing = tables.get(TABLE, user.org_id, join("user", user.user_id))
            old_rows = set()
            if existing is not None:
                old_rows = {_email_row(e, user.user_id) for e in tables.loads(existing.get("emails"), [])}
            new_rows = {_email_row(e, user.user_id) for e in user.emails}
            entity = {"PartitionKey": user.org_id, "RowKey": join("user", user.user_id),
                      "emails": tables.dumps(user.emails), "projects": tables.dumps(user.projects)}
            ops: list[tables.Op] = [tables.write(entity, tables.etag(existing) if existing else None)]
            ops += [("delete", {"PartitionKey": user.org_id, "RowKey": row}) for row in old_rows - new_rows]
            ops += [("upsert", {"PartitionKey": user.org_id, "RowKey": row, "user_id": user.user_id,
                                "projects": tables.dumps(user.projects)}) for row in new_rows]
            tables.transact(TABLE, ops)

        tables.optimistic(f"user {user.user_id}", attempt)

    def members_with_email(self, org_id: str, email: str) -> list[tuple[str, list[str]]]:
        """(user id, projects) of the users with this verified e-mail, from the index alone (one query)."""
        low, high = tables.prefix_range(join("email", escape(email.lower()), ""))
        rows = tables.query(TABLE, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                            pk=org_id, low=low, high=high)
        return [(row["user_id"], tables.loads(row.get("projects"), [])) for row in rows]
