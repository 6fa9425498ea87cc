"""Error hierarchy of mediagw and the one table that maps errors to SIP and HTTP replies.

Two families, kept apart on purpose (see STYLE.md):

* ``RemoteError``: a peer sent something invalid. It carries the reply it implies (``status_code`` and
  ``reason`` for SIP, ``http_status`` for the API). Code that receives from the network catches these,
  answers or drops, logs once, and goes on serving.
* ``LocalError``: our own misuse or configuration; a bug or an operator mistake, never a peer's doing.
"""
from __future__ import annotations


class MediagwError(Exception):
    """Root of every error mediagw raises on purpose."""


class RemoteError(MediagwError):
    """A peer violated a protocol; the attributes say how to answer it."""

    status_code: int = 400
    reason: str = "Bad Request"
    http_status: int = 400

    def __init__(self, message: str, *, status_code: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
            self.reason = reason if reason is not None else SIP_REASONS.get(status_code, "Error")
        elif reason is not None:
            self.reason = reason


class SipProtocolError(RemoteError):
    """A SIP message that violates RFC 3261 grammar or rules (default reply: 400 Bad Request)."""


class SipMessageTooLarge(SipProtocolError):
    """A message larger than the transport accepts (RFC 3261 §18.1.1 / §21.5.14: 513)."""

    status_code = 513
    reason = "Message Too Large"


class SdpError(RemoteError):
    """An SDP body that cannot be parsed or negotiated (RFC 3264: 488 Not Acceptable Here)."""

    status_code = 488
    reason = "Not Acceptable Here"


class RtpError(RemoteError):
    """An RTP/RTCP packet that cannot be parsed; it is dropped and counted."""


class LocalError(MediagwError):
    """Our own misuse of an API: a bug, raised loudly."""


class ConfigError(LocalError):
    """An invalid profile; names the file and the key (dotted path) that is wrong."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


SIP_REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}
"""RFC 3261 §21 reason phrases, used wherever a reply is built from a status code."""

HTTP_STATUS: dict[type[MediagwError], int] = {
    RemoteError: 400,
    ConfigError: 422,
    LocalError: 500,
}
"""How the API answers each error family (the most specific class listed wins)."""


def http_status_for(error: MediagwError) -> int:
    """The HTTP status the API returns for ``error``."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
