"""API errors as grpc-gateway writes them: an HTTP status from the gRPC code and a JSON body.

Body: ``{"code": <int>, "message": "...", "details": []}``. RESOURCE_EXHAUSTED and UNAVAILABLE may
carry a ``Retry-After`` header (seconds).
"""

from __future__ import annotations

from enum import IntEnum

from starlette.responses import JSONResponse

__all__ = ["Code", "HTTP_STATUS", "ApiError", "error_response", "invalid_argument", "not_found"]


class Code(IntEnum):
    """gRPC status codes the sandbox answers with."""

    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


#: HTTP status for each gRPC code (grpc-gateway's mapping).
HTTP_STATUS: dict[Code, int] = {
    Code.INVALID_ARGUMENT: 400,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.UNAUTHENTICATED: 401,
}


class ApiError(Exception):
    """A failed API call: a gRPC code, a message, and optionally seconds to wait before retrying."""

    def __init__(self, code: Code, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        """The HTTP status this error is sent with."""
        return HTTP_STATUS[self.code]


def error_response(err: ApiError) -> JSONResponse:
    """The HTTP response for ``err``, with ``Retry-After`` when the error carries one."""
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    body = {"code": int(err.code), "message": err.message, "details": []}
    return JSONResponse(body, status_code=err.http_status, headers=headers)


def invalid_argument(message: str) -> ApiError:
    """An INVALID_ARGUMENT error (HTTP 400)."""
    return ApiError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ApiError:
    """A NOT_FOUND error (HTTP 404)."""
    return ApiError(Code.NOT_FOUND, message)
