"""The client library's errors: one class per way a call can fail."""

from __future__ import annotations


class TillpayClientError(Exception):
    """Base class of every error the client raises."""


class TransportError(TillpayClientError):
    """The request may or may not have reached the gateway (network error or timeout): query to learn."""


class ResponseError(TillpayClientError):
    """The gateway's answer could not be understood (not MAPI XML, unexpected HTTP status)."""


class SignatureError(TillpayClientError):
    """The response's signature is missing or does not verify: do not trust its content."""


class GatewayRejected(TillpayClientError):
    """The gateway refused the request (``is_success=F``): fix the request; nothing was changed."""

    def __init__(self, error: str, detail: str | None) -> None:
        self.error = error
        self.detail = detail
        super().__init__(f"{error}: {detail}" if detail else error)
