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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_key = type_key
        self.headers = headers or {}
        self.body = body

    def payload(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        return {
            "$id": "1",
            "innerException": None,
            "message": self.message,
            "typeName": f"Microsoft.VisualStudio.Services.{self.type_key}, Microsoft.VisualStudio.Services",
            "typeKey": self.type_key,
            "errorCode": 0,
            "eventId": 3000,
        }
