"""The one error type of the sandbox: an HTTP answer shaped like an ADO (or OAuth) error."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised by sandbox logic; the HTTP layer turns it into a response.

    `body` replaces the ADO error envelope (the OAuth endpoint answers `{"error": ...}`).
    """

    def __init__(
        self,
        status: int,
        message: str,
        type_key: str = "VssServiceException",
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        type_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_key = type_key
        self.headers = headers or {}
        self.body = body
        self.type_name = type_name or f"Microsoft.VisualStudio.Services.{type_key}, Microsoft.VisualStudio.Services"

    def payload(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        return {
            "$id": "1",
            "innerException": None,
            "message": self.message,
            "typeName": self.type_name,
            "typeKey": self.type_key,
            "errorCode": 0,
            "eventId": 3000,
        }
