"""The error hierarchy, and the one mapping from an error to OpenAI's error JSON.

Code anywhere raises a `PonderError` subclass; only the server turns it into an
HTTP status and body (`to_body`). Anything that is not a `PonderError` is a bug
and becomes a 500.
"""

from __future__ import annotations

from typing import Any


class PonderError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error's response."""
        return {}

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(PonderError):
    status = 400
    type = "invalid_request_error"


def invalid_value(param: str, why: str) -> InvalidRequest:
    """A 400 for a field whose value is wrong: "Invalid value for 'param': why."."""
    return InvalidRequest(f"Invalid value for '{param}': {why}.", param=param, code="invalid_value")


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class Unsupported(InvalidRequest):
    code = "unsupported_parameter"


class TooLarge(InvalidRequest):
    """Media past a configured size limit."""

    status = 413
    code = "request_too_large"


class ConfigError(PonderError):
    """The server's configuration (config file, environment) is wrong: found at start-up,
    and the operator's to fix, not a client's."""

    type = "config_error"


class AuthenticationError(PonderError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(PonderError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class RateLimited(PonderError):
    """A key's limits, or an engine's full queue: try again after `retry_after` seconds.
    `type` says which limit, as OpenAI's does: "requests" or "tokens"."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int, type: str = "requests", code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.type = type

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ClientDisconnected(PonderError):
    """The client left before its answer: logged and counted as nginx's 499, sent to no one."""

    status = 499
    type = "client_closed_request"
    code = "client_closed_request"


class RequestTimeout(PonderError):
    """A request that ran past the server's `request_timeout_s`."""

    status = 408
    type = "timeout_error"
    code = "request_timeout"


class ModelNotFound(PonderError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(PonderError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class UpstreamError(PonderError):
    """A remote engine failed or could not be reached."""

    status = 502
    type = "upstream_error"


class ModelSourceError(PonderError):
    """A model could not be fetched, joined or verified."""

    status = 503
    type = "server_error"
    code = "model_unavailable"


class StoreUnavailable(PonderError):
    """The store (a PostgreSQL server) could not be reached, or failed mid-call."""

    status = 503
    type = "server_error"
    code = "store_unavailable"
