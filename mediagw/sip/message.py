"""SIP requests and responses (RFC 3261 §7): parse, inspect, build, serialize byte for byte (sans-I/O).

Theory of operation
-------------------
:func:`parse_message` cuts a message into start line, header fields and body (RFC 3261 §7, §18.3), decoding
the header block once with ``surrogateescape`` so any octet survives. Each header field keeps its raw line
(name, whitespace, colon, value, folding) so that an unmodified message serializes to the exact input bytes;
a field that is set or added programmatically is written as ``Name: value``.

After framing, the headers that every element depends on (Via, From, To, Call-ID, CSeq, Max-Forwards,
Contact, Route, Record-Route) are parsed once and cached; a syntax error in any of them raises
:class:`~mediagw.errors.SipProtocolError`. Every error raised by ``parse_message`` carries ``.partial``: a
best-effort :class:`SipRequest` from which a 400 can still be built (start line is a request, the top Via
parses, From/To/Call-ID/CSeq are present and can be copied verbatim), else ``None``.

Semantic checks that RFC 4475 leaves to the element (CSeq method mismatch, a single-value header given
twice, missing mandatory headers, unsupported Request-URI scheme) are in :func:`check_request`, which the
endpoint calls after parsing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from mediagw.errors import SIP_REASONS, SipMessageTooLarge, SipProtocolError
from mediagw.sip.grammar import (
    NameAddr,
    SipUri,
    Via,
    is_token,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    split_commas,
)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "build_response",
    "canonical_name",
    "check_request",
    "parse_message",
]

MAX_MESSAGE_SIZE = 65535  # octets; the largest UDP payload, RFC 3261 §18.1.1 / §21.5.14 (513)
MAX_CSEQ = 2**32 - 1  # RFC 3261 §8.1.1.5: CSeq must be expressible as a 32-bit unsigned integer
MAX_MAX_FORWARDS = 255  # RFC 3261 §20.22 (0-255 in practice; RFC 4475 §3.1.2.4)

COMPACT_FORMS: dict[str, str] = {  # RFC 3261 §7.3.3 and the extension RFCs that define them
    "i": "call-id", "m": "contact", "f": "from", "t": "to", "v": "via", "l": "content-length",
    "c": "content-type", "e": "content-encoding", "k": "supported", "s": "subject", "o": "event",
    "r": "refer-to", "u": "allow-events", "x": "session-expires", "b": "referred-by",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
    "n": "identity-info",
}

LIST_HEADERS = frozenset({  # header fields whose values are comma-separated lists (RFC 3261 §7.3.1)
    "via", "contact", "route", "record-route", "path", "service-route", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language", "allow-events",
    "content-encoding", "content-language", "alert-info", "call-info", "error-info", "in-reply-to",
    "warning", "reason", "p-asserted-identity", "p-preferred-identity", "history-info",
    "accept-contact", "reject-contact", "security-client", "security-server", "security-verify",
})
"""Never the *-Authenticate / *-Authorization family: their commas separate auth-params."""

SINGLE_VALUE_HEADERS = frozenset({  # RFC 3261 §7.3.1: may appear once (checked by check_request)
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type", "expires",
})

_T = TypeVar("_T")


@lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """Lower-case long form of a header name (compact forms expanded, RFC 3261 §7.3.3)."""
    key = name.lower()
    if len(key) == 1:
        return COMPACT_FORMS.get(key, key)
    return key


def _error(message: str, status_code: int = 400, partial: SipRequest | None = None) -> SipProtocolError:
    err = SipProtocolError(message) if status_code == 400 else SipProtocolError(message,
                                                                                 status_code=status_code)
    err.partial = partial  # type: ignore[attr-defined]
    return err


class _Field:
    """One header field line: raw name, unfolded value, and the raw text when it came off the wire."""

    __slots__ = ("key", "name", "raw", "value")

    def __init__(self, name: str, value: str, raw: str | None = None) -> None:
        self.name = name
        self.key = canonical_name(name)
        self.value = value
        self.raw = raw

    def render(self) -> str:
        return self.raw if self.raw is not None else f"{self.name}: {self.value}"


class Headers:
    """Ordered multimap of header fields keeping raw names, raw text and order (RFC 3261 §7.3)."""

    __slots__ = ("_fields", "version")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[_Field] = []
        self.version = 0
        """Bumped on every change; messages use it to drop cached parses."""
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_fields(cls, fields: list[_Field]) -> Headers:
        h = cls()
        h._fields = fields
        return h

    def get(self, name: str) -> str | None:
        """First value of ``name`` (case-insensitive, compact forms equivalent), unfolded and stripped."""
        key = canonical_name(name)
        for f in self._fields:
            if f.key == key:
                return f.value
        return None

    def get_lines(self, name: str) -> list[str]:
        """The value of every line of ``name``, without comma splitting."""
        key = canonical_name(name)
        return [f.value for f in self._fields if f.key == key]

    def get_all(self, name: str) -> list[str]:
        """Every value of every line; comma-split for list headers, empty elements dropped."""
        key = canonical_name(name)
        lines = [f.value for f in self._fields if f.key == key]
        if key not in LIST_HEADERS:
            return lines
        out: list[str] = []
        for line in lines:
            out.extend(part for part in split_commas(line) if part)
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one ``name: value`` at the position of the first."""
        key = canonical_name(name)
        new = _Field(name, value.strip())
        out: list[_Field] = []
        placed = False
        for f in self._fields:
            if f.key == key:
                if not placed:
                    out.append(new)
                    placed = True
            else:
                out.append(f)
        if not placed:
            out.append(new)
        self._fields = out
        self.version += 1

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Add a line; ``first=True`` puts it before the first line of the same name (or at the top)."""
        new = _Field(name, value.strip())
        if first:
            key = new.key
            for i, f in enumerate(self._fields):
                if f.key == key:
                    self._fields.insert(i, new)
                    break
            else:
                self._fields.insert(0, new)
        else:
            self._fields.append(new)
        self.version += 1

    def remove(self, name: str) -> None:
        """Remove every line of ``name``."""
        key = canonical_name(name)
        self._fields = [f for f in self._fields if f.key != key]
        self.version += 1

    def remove_first_value(self, name: str) -> str | None:
        """Remove the first comma-separated value of ``name`` (a proxy popping Route or Via); return it."""
        key = canonical_name(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                parts = split_commas(f.value) if key in LIST_HEADERS else [f.value]
                first, rest = parts[0], [p for p in parts[1:] if p]
                if rest:
                    self._fields[i] = _Field(f.name, ", ".join(rest))
                else:
                    del self._fields[i]
                self.version += 1
                return first
        return None

    def count(self, name: str) -> int:
        """Number of lines of ``name``."""
        key = canonical_name(name)
        return sum(1 for f in self._fields if f.key == key)

    def copy(self) -> Headers:
        """A shallow copy (fields are immutable once created)."""
        return Headers._from_fields(list(self._fields))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        return any(f.key == key for f in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((f.name, f.value) for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def serialize(self) -> bytes:
        """Header lines, each followed by CRLF, as they go on the wire."""
        if not self._fields:
            return b""
        return ("\r\n".join(f.render() for f in self._fields) + "\r\n").encode("utf-8", "surrogateescape")


def _to_headers(headers: Headers | Iterable[tuple[str, str]] | None) -> Headers:
    if headers is None:
        return Headers()
    if isinstance(headers, Headers):
        return headers
    return Headers(headers)


class SipMessage:
    """What requests and responses share: headers, body, version and the typed header accessors."""

    version: str
    headers: Headers
    body: bytes

    def __init__(self, headers: Headers | Iterable[tuple[str, str]] | None, body: bytes,
                 version: str) -> None:
        self.headers = _to_headers(headers)
        self.body = body
        self.version = version
        self._cache: dict[str, Any] = {}
        self._cache_version = -1
        self._raw_start: str | None = None

    # -- caching -------------------------------------------------------------------------------------------
    def _cached(self, key: str, compute: Callable[[], _T]) -> _T:
        if self._cache_version != self.headers.version:
            self._cache = {}
            self._cache_version = self.headers.version
        if key not in self._cache:
            self._cache[key] = compute()
        value: _T = self._cache[key]
        return value

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise _error(f"missing {name} header")
        return value

    # -- typed accessors (RFC 3261 §20) --------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        """Call-ID (RFC 3261 §20.8)."""
        return self._cached("call_id", self._parse_call_id)

    def _parse_call_id(self) -> str:
        value = self._required("Call-ID")
        if not value or any(c in " \t" for c in value):
            raise _error("malformed Call-ID header")
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        """CSeq as (sequence number, method) (RFC 3261 §20.16)."""
        return self._cached("cseq", self._parse_cseq)

    def _parse_cseq(self) -> tuple[int, str]:
        parts = self._required("CSeq").split()
        if len(parts) != 2 or not parts[0].isascii() or not parts[0].isdigit() or not is_token(parts[1]):
            raise _error("malformed CSeq header")
        if len(parts[0]) > 10 or int(parts[0]) > MAX_CSEQ:
            raise _error("CSeq sequence number out of range")
        return int(parts[0]), parts[1]

    @property
    def from_(self) -> NameAddr:
        """From (RFC 3261 §20.20)."""
        return self._cached("from", lambda: self._parse_address("From"))

    @property
    def to(self) -> NameAddr:
        """To (RFC 3261 §20.39)."""
        return self._cached("to", lambda: self._parse_address("To"))

    def _parse_address(self, name: str) -> NameAddr:
        try:
            return parse_name_addr(self._required(name))
        except SipProtocolError as exc:
            raise _error(f"malformed {name} header: {exc}") from None

    @property
    def from_tag(self) -> str | None:
        """The From tag (RFC 3261 §19.3)."""
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag (RFC 3261 §19.3)."""
        return self.to.tag

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first (RFC 3261 §20.42)."""
        return self._cached("vias", self._parse_vias)

    def _parse_vias(self) -> list[Via]:
        out: list[Via] = []
        for line in self.headers.get_lines("Via"):
            for part in split_commas(line):
                try:
                    out.append(parse_via(part))
                except SipProtocolError as exc:
                    raise _error(f"malformed Via header: {exc}") from None
        return out

    @property
    def top_via(self) -> Via:
        """The topmost Via value."""
        vias = self.vias
        if not vias:
            raise _error("missing Via header")
        return vias[0]

    @property
    def branch(self) -> str | None:
        """The branch of the top Via (RFC 3261 §8.1.1.7)."""
        return self.top_via.branch

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (RFC 3261 §20.22), None when absent."""
        return self._cached("max_forwards", self._parse_max_forwards)

    def _parse_max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 10:
            raise _error("malformed Max-Forwards header")
        if int(value) > MAX_MAX_FORWARDS:
            raise _error("Max-Forwards out of range")
        return int(value)

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (RFC 3261 §20.10); empty for the wildcard ``*``."""
        return self._cached("contacts", lambda: self._parse_address_list("Contact", wildcard=True))

    @property
    def is_wildcard_contact(self) -> bool:
        """True for ``Contact: *`` (RFC 3261 §10.2.2)."""
        self.contacts  # noqa: B018 - validates
        return self.headers.get_all("Contact") == ["*"]

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route value (RFC 3261 §20.34)."""
        return self._cached("routes", lambda: self._parse_address_list("Route"))

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route value (RFC 3261 §20.30)."""
        return self._cached("record_routes", lambda: self._parse_address_list("Record-Route"))

    def _parse_address_list(self, name: str, wildcard: bool = False) -> list[NameAddr]:
        values = self.headers.get_all(name)
        if wildcard and "*" in values:
            if len(values) != 1:
                raise _error(f"{name} '*' mixed with other values")  # RFC 3261 §10.2.2
            return []
        out: list[NameAddr] = []
        for value in values:
            try:
                out.append(parse_name_addr(value))
            except SipProtocolError as exc:
                raise _error(f"malformed {name} header: {exc}") from None
        return out

    @property
    def content_type(self) -> str | None:
        """The media type of Content-Type, lower-cased, without parameters (RFC 3261 §20.15)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        media = value.split(";", 1)[0].strip(" \t").lower()
        slash = media.find("/")
        if slash <= 0 or not is_token(media[:slash].strip()) or not is_token(media[slash + 1:].strip()):
            raise _error("malformed Content-Type header")
        return media[:slash].strip() + "/" + media[slash + 1:].strip()

    @property
    def content_type_params(self) -> dict[str, str | None]:
        """Parameters of Content-Type (``boundary``, ``charset`` ...), names lower-cased."""
        value = self.headers.get("Content-Type")
        if value is None or ";" not in value:
            return {}
        try:
            return parse_params(value[value.find(";"):], "Content-Type")
        except SipProtocolError as exc:
            raise _error(f"malformed Content-Type header: {exc}") from None

    @property
    def expires(self) -> int | None:
        """Expires (RFC 3261 §20.19); a malformed or overflowing value counts as 3600 as §20.19 says."""
        value = self.headers.get("Expires")
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > MAX_CSEQ:
            return 3600
        return int(value)

    @property
    def content_length(self) -> int | None:
        """Content-Length (RFC 3261 §20.14), None when absent."""
        return _content_length(self.headers)

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body and keep Content-Length (and Content-Type when given) in step."""
        self.body = body
        if content_type is not None:
            self.headers.set("Content-Type", content_type)
        elif not body:
            self.headers.remove("Content-Type")
        self.headers.set("Content-Length", str(len(body)))

    # -- serialization ---------------------------------------------------------------------------------------
    def start_line(self) -> str:
        """The request or status line, without CRLF."""
        raise NotImplementedError

    def _start_unchanged(self) -> bool:
        return False

    def serialize(self) -> bytes:
        """The message as it goes on the wire; byte-exact to the parsed input while unmodified."""
        start = self._raw_start if self._raw_start is not None and self._start_unchanged() else self.start_line()
        return (start.encode("utf-8", "surrogateescape") + b"\r\n" + self.headers.serialize() + b"\r\n"
                + self.body)

    def __bytes__(self) -> bytes:
        return self.serialize()


class SipRequest(SipMessage):
    """A SIP request (RFC 3261 §7.1)."""

    def __init__(self, method: str, uri: SipUri | str, headers: Headers | Iterable[tuple[str, str]] | None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body, version)
        self.method = method
        self.uri: SipUri = parse_uri(uri) if isinstance(uri, str) else uri
        self._start_snapshot: tuple[str, SipUri, str] | None = None

    def start_line(self) -> str:
        """``Method SP Request-URI SP SIP-Version`` (RFC 3261 §7.1)."""
        return f"{self.method} {self.uri} {self.version}"

    def _start_unchanged(self) -> bool:
        snap = self._start_snapshot
        return (snap is not None and snap[0] == self.method and snap[1] is self.uri
                and snap[2] == self.version)

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"

    @classmethod
    def new(cls, method: str, uri: SipUri | str, *, via: Via | str | Sequence[Via | str],
            from_: NameAddr | str, to: NameAddr | str, call_id: str, cseq: int | tuple[int, str],
            contact: NameAddr | str | None = None, max_forwards: int | None = 70,
            headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
            content_type: str | None = None) -> SipRequest:
        """Build a request from scratch in RFC 3261 §8.1.1 order, with Content-Length set."""
        h = Headers()
        for v in ([via] if isinstance(via, (Via, str)) else via):
            h.add("Via", str(v))
        if max_forwards is not None:
            h.add("Max-Forwards", str(max_forwards))
        h.add("From", str(from_))
        h.add("To", str(to))
        h.add("Call-ID", call_id)
        seq, cseq_method = (cseq, method) if isinstance(cseq, int) else cseq
        h.add("CSeq", f"{seq} {cseq_method}")
        if contact is not None:
            h.add("Contact", str(contact))
        for name, value in headers:
            h.add(name, value)
        if content_type is not None:
            h.add("Content-Type", content_type)
        h.add("Content-Length", str(len(body)))
        return cls(method, uri, h, body)


class SipResponse(SipMessage):
    """A SIP response (RFC 3261 §7.2)."""

    def __init__(self, status_code: int, reason: str, headers: Headers | Iterable[tuple[str, str]] | None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body, version)
        self.status_code = status_code
        self.reason = reason
        self._start_snapshot: tuple[int, str, str] | None = None

    def start_line(self) -> str:
        """``SIP-Version SP Status-Code SP Reason-Phrase`` (RFC 3261 §7.2)."""
        return f"{self.version} {self.status_code} {self.reason}"

    def _start_unchanged(self) -> bool:
        return self._start_snapshot == (self.status_code, self.reason, self.version)

    def __repr__(self) -> str:
        return f"<SipResponse {self.status_code} {self.reason}>"


# -- parsing ------------------------------------------------------------------------------------------------

def _content_length(headers: Headers) -> int | None:
    values = headers.get_lines("Content-Length")
    if not values:
        return None
    parsed: set[int] = set()
    for value in values:
        if not value.isascii() or not value.isdigit() or len(value) > 10:
            raise _error(f"malformed Content-Length {value[:20]!r}")
        parsed.add(int(value))
    if len(parsed) > 1:
        raise _error("conflicting Content-Length values")  # RFC 4475 §3.3.9: framing is ambiguous
    return parsed.pop()


def _split_fields(block: str) -> list[_Field]:
    """Header lines (RFC 3261 §7.3); a line starting with SP/HTAB continues the previous one (§7.3.1)."""
    fields: list[_Field] = []
    if not block:
        return fields
    lines = block.split("\r\n")
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        j = i + 1
        while j < n and lines[j][:1] in (" ", "\t"):
            j += 1
        raw = line if j == i + 1 else "\r\n".join(lines[i:j])
        colon = line.find(":")
        if colon <= 0:
            if line[:1] in (" ", "\t"):
                raise _error("continuation line before the first header")
            raise _error(f"header line without colon: {line[:40]!r}")
        name = line[:colon].rstrip(" \t")
        if not is_token(name):
            raise _error(f"invalid header name {name[:40]!r}")
        value = raw[raw.find(":") + 1:]
        if "\r\n" in value:
            value = value.replace("\r\n", "")
        if "\r" in value or "\n" in value:
            raise _error(f"bare CR or LF in {name} header")
        f = _Field(name, value.strip(" \t"), raw)
        fields.append(f)
        i = j
    return fields


def _parse_version(text: str) -> str | None:
    """Return the version if it has the SIP-Version form (RFC 3261 §25.1), else None."""
    if len(text) < 7 or text[:4].upper() != "SIP/":
        return None
    major, dot, minor = text[4:].partition(".")
    if not dot or not major.isascii() or not major.isdigit() or not minor.isascii() or not minor.isdigit():
        return None
    return text


def _parse_request_line(line: str) -> tuple[str, SipUri, str]:
    """Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §7.1, exactly one SP each)."""
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _error("malformed Request-Line (elements must be separated by exactly one SP)")
    method, uri_text, version = parts
    if not is_token(method):
        raise _error(f"invalid method {method[:40]!r}")
    if _parse_version(version) is None:
        raise _error(f"malformed SIP-Version {version[:20]!r}")
    try:
        uri = parse_uri(uri_text)
    except SipProtocolError as exc:
        raise _error(f"malformed Request-URI: {exc}") from None
    err: SipProtocolError | None = None
    if uri.headers:
        err = _error("Request-URI must not contain headers")  # RFC 3261 §19.1.1 table
    elif version.upper() != "SIP/2.0":
        err = _error(f"unsupported SIP version {version[:20]}", 505)  # RFC 3261 §8.2.2 / §21.5.20
    if err is not None:
        err.uri = uri  # type: ignore[attr-defined]
        raise err
    return method, uri, version


def _parse_status_line(line: str) -> tuple[str, int, str]:
    """Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §7.2)."""
    version, _, rest = line.partition(" ")
    if _parse_version(version) is None:
        raise _error(f"malformed SIP-Version {version[:20]!r}")
    code, _, reason = rest.partition(" ")  # a missing SP after the code is tolerated (RFC 4475 §3.1.1.13)
    if len(code) != 3 or not code.isascii() or not code.isdigit() or not 100 <= int(code) <= 699:
        raise _error(f"invalid status code {code[:20]!r}")  # RFC 3261 §25.1: 3DIGIT, §21 classes 1xx-6xx
    if version.upper() != "SIP/2.0":
        raise _error(f"unsupported SIP version {version[:20]}", 505)
    return version, int(code), reason


def _make_partial(method: str | None, uri: SipUri | None, raw_uri: str, fields: list[_Field],
                  version: str) -> SipRequest | None:
    """A request good enough to answer with 400/505/513: top Via parses, dialog headers present."""
    if method is None:
        return None
    headers = Headers._from_fields(fields)
    for name in ("From", "To", "Call-ID", "CSeq"):
        if headers.get(name) is None:
            return None
    if uri is None:
        uri = SipUri(scheme="", opaque=raw_uri)
    request = SipRequest(method, uri, headers, b"", version)
    try:
        request.top_via  # noqa: B018
    except SipProtocolError:
        # RFC 4475 §3.1.2.1: empty parameters and list elements must not stop the 400; answer to the
        # top Via with its empty elements dropped
        first = (headers.get("Via") or "").split(",", 1)[0]
        lenient = ";".join(p for p in first.split(";") if p.strip(" \t"))
        try:
            via = parse_via(lenient)
        except SipProtocolError:
            return None
        request.headers = headers.copy()
        request.headers.set("Via", str(via))
    return request


def _validate(message: SipMessage) -> None:
    """Parse the headers every element relies on, so syntax errors surface at parse time."""
    message.vias  # noqa: B018
    h = message.headers
    if "Call-ID" in h:
        message.call_id  # noqa: B018
    if "CSeq" in h:
        message.cseq  # noqa: B018
    if "From" in h:
        message.from_  # noqa: B018
    if "To" in h:
        message.to  # noqa: B018
    if "Max-Forwards" in h:
        message.max_forwards  # noqa: B018
    if "Contact" in h:
        message.contacts  # noqa: B018
    if "Route" in h:
        message.routes  # noqa: B018
    if "Record-Route" in h:
        message.record_routes  # noqa: B018


def parse_message(data: bytes, *, datagram: bool = True,
                  max_size: int = MAX_MESSAGE_SIZE) -> SipRequest | SipResponse:
    """Parse one SIP message (RFC 3261 §7); raises SipProtocolError (400, 505, 513) with ``.partial``.

    ``datagram=True`` applies RFC 3261 §18.3 to UDP: without Content-Length the body is the rest; octets
    beyond Content-Length are discarded; fewer are a 400. ``datagram=False`` (a framed stream message)
    requires Content-Length and an exact body.
    """
    start = 0
    n = len(data)
    while data.startswith(b"\r\n", start):  # RFC 3261 §7.5: ignore CRLF before the start-line
        start += 2
    if start >= n:
        raise _error("empty message")
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        head, body_start = data[start:], n
        if head.endswith(b"\r\n"):
            head = head[:-2]
    else:
        head, body_start = data[start:end], end + 4
    text = head.decode("utf-8", "surrogateescape")
    line_end = text.find("\r\n")
    first, block = (text, "") if line_end < 0 else (text[:line_end], text[line_end + 2:])

    is_response = first[:4].upper() == "SIP/"
    start_error: SipProtocolError | None = None
    method: str | None = None
    uri: SipUri | None = None
    raw_uri = ""
    version = "SIP/2.0"
    status_code, reason = 0, ""
    if is_response:
        try:
            version, status_code, reason = _parse_status_line(first)
        except SipProtocolError as exc:
            start_error = exc
    else:
        method_text, _, after = first.partition(" ")
        if is_token(method_text):
            method = method_text
            raw_uri = after.rsplit(" ", 1)[0].strip(" ")
        try:
            method, uri, version = _parse_request_line(first)
        except SipProtocolError as exc:
            start_error = exc
            uri = getattr(exc, "uri", None)

    try:
        fields = _split_fields(block)
    except SipProtocolError as exc:
        exc.partial = None  # type: ignore[attr-defined]
        raise

    def fail(exc: SipProtocolError) -> SipProtocolError:
        partial = None if is_response else _make_partial(method, uri, raw_uri, fields, version)
        return _error(str(exc), exc.status_code, partial)

    if start_error is not None:
        raise fail(start_error)
    if end < 0:
        raise fail(_error("message without the empty line that ends the headers"))
    if n - start > max_size:
        err = fail(_error(f"message of {n - start} octets exceeds {max_size}", 513))
        too_large = SipMessageTooLarge(str(err))
        too_large.partial = err.partial  # type: ignore[attr-defined]
        raise too_large

    headers = Headers._from_fields(fields)
    try:
        length = _content_length(headers)
    except SipProtocolError as exc:
        raise fail(exc) from None
    available = n - body_start
    if length is None:
        if not datagram:
            raise fail(_error("missing Content-Length on a stream transport"))  # RFC 3261 §18.3
        body = data[body_start:]
    elif length > available:
        raise fail(_error(f"Content-Length {length} exceeds the {available} octets received"))
    elif length < available and not datagram:
        raise fail(_error("octets after the body on a stream message"))
    else:
        body = data[body_start:body_start + length]  # RFC 3261 §18.3: extra datagram octets discarded

    message: SipRequest | SipResponse
    if is_response:
        message = SipResponse(status_code, reason, headers, body, version)
        message._start_snapshot = (status_code, reason, version)
    else:
        assert method is not None and uri is not None
        message = SipRequest(method, uri, headers, body, version)
        message._start_snapshot = (method, uri, version)
    message._raw_start = first
    try:
        _validate(message)
    except SipProtocolError as exc:
        raise fail(exc) from None
    return message


# -- building -----------------------------------------------------------------------------------------------

def build_response(request: SipRequest, status_code: int, reason: str | None = None, *,
                   to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                   content_type: str | None = None) -> SipResponse:
    """Build a response per RFC 3261 §8.2.6.2: Via list, From, To (+tag), Call-ID, CSeq, Content-Length.

    Values are copied verbatim (so a response can be built from a ``.partial`` whose To does not parse);
    ``to_tag`` is added only when the To has no tag yet.
    """
    h = Headers()
    for via in request.headers.get_lines("Via"):
        h.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag is not None and not _has_tag(value):
            value = f"{value};tag={to_tag}"
        h.add(name, value)
    if status_code == 100:
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            h.add("Timestamp", timestamp)  # RFC 3261 §8.2.6.1
    for name, value in headers:
        h.add(name, value)
    if content_type is not None:
        h.add("Content-Type", content_type)
    h.add("Content-Length", str(len(body)))
    return SipResponse(status_code, reason if reason is not None else SIP_REASONS.get(status_code, "Unknown"),
                       h, body)


def _has_tag(to_value: str) -> bool:
    try:
        return parse_name_addr(to_value).tag is not None
    except SipProtocolError:
        return ";tag=" in to_value.replace(" ", "").lower()


def check_request(request: SipRequest) -> None:
    """Semantic checks a UAS applies after parsing (RFC 3261 §8.2); raises SipProtocolError (400 / 416).

    Mandatory headers present (§8.1.1), single-value headers given once (§7.3.1, RFC 4475 §3.3.8), CSeq
    method equal to the request method (§8.1.1.5, RFC 4475 §3.1.2.17), and a sip/sips/tel Request-URI
    (§8.2.2.1: 416). An endpoint answers 501 for an unknown method before calling this (RFC 4475 §3.1.2.18).
    """
    h = request.headers
    for name in ("Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards"):
        if name not in h:
            raise _error(f"missing {name} header", partial=request)
    for key in sorted(SINGLE_VALUE_HEADERS):
        if h.count(key) > 1:
            raise _error(f"more than one {key} header", partial=request)
    _, cseq_method = request.cseq
    if cseq_method != request.method:
        raise _error(f"CSeq method {cseq_method} does not match {request.method}", partial=request)
    if request.uri.scheme not in ("sip", "sips", "tel"):
        raise _error(f"unsupported Request-URI scheme {request.uri.scheme!r}", 416, partial=request)

