"""RFC 4566 session descriptions: parse and serialize, plus the codec model of RFC 3551.

Theory of operation
-------------------
``SessionDescription.parse(data)`` turns an SDP body (bytes or str) into plain dataclasses;
``serialize()`` turns them back into bytes. Pure functions: no I/O, no clock.

* Lines are ``<type>=<value>`` (RFC 4566 §5). CRLF is what we write; LF-only input is accepted too
  (RFC 4566 §5: "a parser SHOULD be tolerant and also accept records terminated with a single newline").
  Blank lines are skipped.
* The body is decoded as UTF-8 (RFC 4566 §5) with ``surrogateescape``, so bytes that are not UTF-8 (a
  Latin-1 ``s=`` from an old PBX) survive a round trip unchanged instead of failing the call.
* Attribute order is kept exactly; fields are written back in the order of the RFC 4566 §5 grammar, so a
  typical body (already in that order) round-trips byte-exact. Input that puts session-level lines out of
  order is accepted and written back in grammar order (Postel; seen from several SBCs).
* Leniency, each on purpose: a missing ``s=`` becomes ``s=-`` and a missing ``t=`` becomes ``t=0 0`` on
  output; ``a=ptime`` is also read at session level; blanks at the end of a line are ignored (so
  ``a=sendrecv `` reads as ``a=sendrecv``, and is written back without the blank). Everything else that
  breaks the grammar raises
  ``SdpError`` with ``status_code=400`` and a message naming the line number and its text.
* An unknown type letter rejects the whole description (RFC 4566 §5: a parser "MUST completely ignore any
  session description that contains a type letter that it does not understand").

Attribute helpers (``get_attribute``, ``rtpmap``, ``fmtp``, ``ptime``, ``maxptime``, ``direction``) are
lenient readers: a malformed attribute value reads as absent rather than failing the whole call.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field, replace

from mediagw.errors import LocalError, SdpError

__all__ = [
    "DIRECTIONS",
    "INACTIVE",
    "PCMA",
    "PCMU",
    "RECVONLY",
    "SENDONLY",
    "SENDRECV",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "Attribute",
    "Bandwidth",
    "Codec",
    "Connection",
    "MediaDescription",
    "Origin",
    "SessionDescription",
    "Timing",
    "parse_rtpmap",
]

SENDRECV = "sendrecv"
SENDONLY = "sendonly"
RECVONLY = "recvonly"
INACTIVE = "inactive"
DIRECTIONS: tuple[str, ...] = (SENDRECV, SENDONLY, RECVONLY, INACTIVE)
"""Media direction attributes, RFC 4566 §6 (default sendrecv, RFC 3264 §5.1)."""

_MAX_DIGITS = 20  # enough for a 64-bit NTP value or session id; bounds int() on hostile input
_UINT = re.compile(r"[0-9]{1,20}")
_DECIMAL = re.compile(r"([0-9]{1,9})(?:\.[0-9]{1,9})?")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 4566 §9 token-char
_SESSION_LETTERS = "vosiuepcbtrzka"  # RFC 4566 §5 order of session-level fields
_MEDIA_LETTERS = "icbka"  # RFC 4566 §5 order of media-level fields (after m=)
_ALL_LETTERS = set(_SESSION_LETTERS) | {"m"}


# --------------------------------------------------------------------------------------------------
# Codec model (RFC 3551 §6, RFC 4566 §6 a=rtpmap)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format bound to a payload type, as an ``a=rtpmap`` line describes it."""

    name: str
    """Encoding name, e.g. ``"PCMU"`` (compared case-insensitively, RFC 4855 §3)."""
    clock_rate: int
    """RTP clock rate in Hz."""
    channels: int = 1
    """Audio channel count (the optional third rtpmap field; 1 when absent)."""
    _: KW_ONLY
    payload_type: int
    """RTP payload type, 0..127 (RFC 3550 §5.1)."""
    fmtp: str | None = None
    """The ``a=fmtp`` parameters for this payload type, verbatim, or None."""

    def same_format(self, other: Codec) -> bool:
        """True for the same encoding (name, clock rate, channels), whatever the payload type."""
        return (
            self.name.lower() == other.name.lower()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    @property
    def is_telephone_event(self) -> bool:
        """True for RFC 4733 named telephone events (DTMF)."""
        return self.name.lower() == "telephone-event"

    @property
    def rtpmap_value(self) -> str:
        """The ``a=rtpmap`` value, e.g. ``"0 PCMU/8000"`` (channels only when not 1, RFC 4566 §6)."""
        text = f"{self.payload_type} {self.name}/{self.clock_rate}"
        return f"{text}/{self.channels}" if self.channels != 1 else text

    def with_payload_type(self, payload_type: int, fmtp: str | None = None) -> Codec:
        """A copy bound to another payload type (and optionally other fmtp parameters)."""
        return replace(self, payload_type=payload_type, fmtp=fmtp if fmtp is not None else self.fmtp)


PCMU = Codec("PCMU", 8000, payload_type=0)
"""G.711 mu-law, static payload type 0 (RFC 3551 §6 table 4)."""
PCMA = Codec("PCMA", 8000, payload_type=8)
"""G.711 A-law, static payload type 8 (RFC 3551 §6 table 4)."""
TELEPHONE_EVENT = Codec("telephone-event", 8000, payload_type=101, fmtp="0-16")
"""RFC 4733 DTMF events; dynamic payload type (101 by convention), events 0-16 (RFC 4733 §3.2)."""

STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    codec.payload_type: codec
    for codec in (
        PCMU,
        Codec("GSM", 8000, payload_type=3),
        Codec("G723", 8000, payload_type=4),
        Codec("DVI4", 8000, payload_type=5),
        Codec("DVI4", 16000, payload_type=6),
        Codec("LPC", 8000, payload_type=7),
        PCMA,
        Codec("G722", 8000, payload_type=9),
        Codec("L16", 44100, 2, payload_type=10),
        Codec("L16", 44100, payload_type=11),
        Codec("QCELP", 8000, payload_type=12),
        Codec("CN", 8000, payload_type=13),
        Codec("MPA", 90000, payload_type=14),
        Codec("G728", 8000, payload_type=15),
        Codec("DVI4", 11025, payload_type=16),
        Codec("DVI4", 22050, payload_type=17),
        Codec("G729", 8000, payload_type=18),
        Codec("CelB", 90000, payload_type=25),
        Codec("JPEG", 90000, payload_type=26),
        Codec("nv", 90000, payload_type=28),
        Codec("H261", 90000, payload_type=31),
        Codec("MPV", 90000, payload_type=32),
        Codec("MP2T", 90000, payload_type=33),
        Codec("H263", 90000, payload_type=34),
    )
}
"""Static payload types usable without ``a=rtpmap`` (RFC 3551 §6 tables 4 and 5)."""


def parse_rtpmap(value: str) -> Codec | None:
    """Parse an ``a=rtpmap`` value ``<pt> <name>/<rate>[/<channels>]`` (RFC 4566 §6); None when malformed."""
    pt_text, _, rest = value.strip().partition(" ")
    parts = rest.strip().split("/")
    payload_type = _uint(pt_text)
    if payload_type is None or payload_type > 127 or len(parts) not in (2, 3) or not parts[0]:
        return None
    clock_rate = _uint(parts[1])
    channels = _uint(parts[2]) if len(parts) == 3 else 1
    if clock_rate is None or clock_rate == 0 or channels is None or channels == 0:
        return None
    return Codec(parts[0], clock_rate, channels, payload_type=payload_type)


# --------------------------------------------------------------------------------------------------
# Field dataclasses
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``o=`` line (RFC 4566 §5.2)."""

    username: str
    session_id: str
    session_version: int
    net_type: str
    addr_type: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.net_type} {self.addr_type} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A ``c=`` line (RFC 4566 §5.7); ``ttl``/``number_of_addresses`` only for multicast."""

    net_type: str
    addr_type: str
    address: str
    ttl: int | None = None
    number_of_addresses: int | None = None

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4 address`` or ``IN IP6 address`` depending on the literal."""
        return cls("IN", "IP6" if ":" in address else "IP4", address)

    @property
    def is_hold_address(self) -> bool:
        """True for the RFC 2543 hold address ``0.0.0.0`` (RFC 3264 §8.4)."""
        return self.addr_type.upper() == "IP4" and self.address == "0.0.0.0"

    def __str__(self) -> str:
        text = f"{self.net_type} {self.addr_type} {self.address}"
        if self.ttl is not None:
            text += f"/{self.ttl}"
        if self.number_of_addresses is not None:
            text += f"/{self.number_of_addresses}"
        return text


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A ``b=<bwtype>:<bandwidth>`` line (RFC 4566 §5.8), bandwidth in kbit/s (AS, CT) or bit/s (TIAS)."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(slots=True)
class Timing:
    """A ``t=`` line with the ``r=`` lines that follow it (RFC 4566 §5.9, §5.10); ``r=`` kept verbatim."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Attribute:
    """An ``a=`` line (RFC 4566 §5.13): ``name`` alone is a property attribute (``value`` is None)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


class _Attributes:
    """Ordered ``a=`` helpers shared by session and media descriptions."""

    __slots__ = ()
    attributes: list[Attribute]

    def get_attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` (``""`` for a property attribute), or None when absent."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute.value if attribute.value is not None else ""
        return None

    def get_attributes(self, name: str) -> list[str]:
        """Values of every ``a=name`` in order (``""`` for property attributes)."""
        return [a.value if a.value is not None else "" for a in self.attributes if a.name == name]

    def has_attribute(self, name: str) -> bool:
        """True when at least one ``a=name`` is present."""
        return any(attribute.name == name for attribute in self.attributes)

    def add_attribute(self, name: str, value: str | None = None) -> None:
        """Append ``a=name[:value]``."""
        self.attributes.append(Attribute(name, value))

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """Replace the first ``a=name`` in place (dropping later ones), or append it."""
        self._replace_attributes({name}, Attribute(name, value))

    def remove_attribute(self, name: str) -> None:
        """Remove every ``a=name``."""
        self.attributes[:] = [attribute for attribute in self.attributes if attribute.name != name]

    @property
    def direction(self) -> str | None:
        """The direction attribute at this level (RFC 4566 §6), the last one if repeated, or None."""
        found = None
        for attribute in self.attributes:
            if attribute.name in DIRECTIONS and attribute.value is None:
                found = attribute.name
        return found

    def set_direction(self, direction: str) -> None:
        """Replace any direction attribute at this level with ``a=<direction>``, at the same position."""
        if direction not in DIRECTIONS:
            raise LocalError(f"unknown media direction {direction!r}")
        self._replace_attributes(set(DIRECTIONS), Attribute(direction))

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (RFC 4566 §6), rounded down; None when absent or malformed."""
        return _milliseconds(self.get_attribute("ptime"))

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in milliseconds (RFC 4566 §6); None when absent or malformed."""
        return _milliseconds(self.get_attribute("maxptime"))

    def _replace_attributes(self, names: set[str], new: Attribute) -> None:
        result: list[Attribute] = []
        placed = False
        for attribute in self.attributes:
            if attribute.name in names:
                if not placed:
                    result.append(new)
                    placed = True
            else:
                result.append(attribute)
        if not placed:
            result.append(new)
        self.attributes[:] = result


@dataclass(slots=True)
class MediaDescription(_Attributes):
    """One media section: the ``m=`` line and its ``i= c= b= k= a=`` lines (RFC 4566 §5.14)."""

    media: str
    """Media type: ``audio``, ``video``, ``text``, ``application``, ``message`` ..."""
    port: int
    """Transport port; 0 marks a rejected or disabled stream (RFC 3264 §6, §8.2)."""
    proto: str
    """Transport protocol, e.g. ``RTP/AVP``."""
    formats: list[str] = field(default_factory=list)
    """Media formats in preference order (payload type numbers for RTP)."""
    _: KW_ONLY
    port_count: int | None = None
    """The ``/<number of ports>`` suffix of the port, or None."""
    information: str | None = None
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    encryption_key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)

    @property
    def is_rtp(self) -> bool:
        """True for RTP profiles (``RTP/AVP``, ``RTP/AVPF``, ``RTP/SAVP``, ``UDP/TLS/RTP/SAVPF`` ...)."""
        return "RTP/" in self.proto.upper()

    @property
    def payload_types(self) -> list[int]:
        """The formats that are valid RTP payload types (0..127), in order; others are skipped."""
        result = []
        for fmt in self.formats:
            value = _uint(fmt)
            if value is not None and value <= 127:
                result.append(value)
        return result

    def rtpmap(self, payload_type: int) -> Codec | None:
        """The codec that ``a=rtpmap:<payload_type>`` declares, or None (absent or malformed)."""
        for value in self.get_attributes("rtpmap"):
            codec = parse_rtpmap(value)
            if codec is not None and codec.payload_type == payload_type:
                return codec
        return None

    def fmtp(self, payload_type: int) -> str | None:
        """The parameters of ``a=fmtp:<payload_type> <params>`` (RFC 4566 §6), or None."""
        for value in self.get_attributes("fmtp"):
            pt_text, _, params = value.partition(" ")
            if _uint(pt_text) == payload_type:
                return params.strip()
        return None

    def codecs(self) -> list[Codec]:
        """The RTP formats as codecs in offer order, with fmtp attached.

        A payload type without ``a=rtpmap`` resolves through the static table (RFC 3551 §6); an unknown
        dynamic one is skipped (RFC 4566 §6 requires rtpmap for dynamic types).
        """
        result: list[Codec] = []
        for payload_type in self.payload_types:
            codec = self.rtpmap(payload_type) or STATIC_PAYLOAD_TYPES.get(payload_type)
            if codec is not None:
                result.append(codec.with_payload_type(payload_type, self.fmtp(payload_type)))
        return result


@dataclass(slots=True)
class SessionDescription(_Attributes):
    """A whole SDP body (RFC 4566 §5): session-level fields followed by media sections."""

    _: KW_ONLY
    origin: Origin
    version: int = 0
    session_name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    times: list[Timing] = field(default_factory=list)
    time_zones: str | None = None
    encryption_key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    # ---- parsing -------------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body.

        Raises SdpError (status_code 400) naming the offending line when the body breaks RFC 4566 grammar.
        """
        return _Parser(data).parse()

    # ---- serializing ---------------------------------------------------------------------------

    def lines(self) -> Iterator[str]:
        """The body's lines without line ends, in RFC 4566 §5 order."""
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        if self.information is not None:
            yield f"i={self.information}"
        if self.uri is not None:
            yield f"u={self.uri}"
        yield from (f"e={email}" for email in self.emails)
        yield from (f"p={phone}" for phone in self.phones)
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={bandwidth}" for bandwidth in self.bandwidths)
        for timing in self.times or [Timing()]:
            yield f"t={timing.start} {timing.stop}"
            yield from (f"r={repeat}" for repeat in timing.repeats)
        if self.time_zones is not None:
            yield f"z={self.time_zones}"
        if self.encryption_key is not None:
            yield f"k={self.encryption_key}"
        yield from (f"a={attribute}" for attribute in self.attributes)
        for media in self.media:
            port = f"{media.port}/{media.port_count}" if media.port_count is not None else str(media.port)
            yield " ".join([f"m={media.media}", port, media.proto, *media.formats])
            if media.information is not None:
                yield f"i={media.information}"
            if media.connection is not None:
                yield f"c={media.connection}"
            yield from (f"b={bandwidth}" for bandwidth in media.bandwidths)
            if media.encryption_key is not None:
                yield f"k={media.encryption_key}"
            yield from (f"a={attribute}" for attribute in media.attributes)

    def serialize(self) -> bytes:
        """The body as bytes, CRLF after every line (RFC 4566 §5)."""
        return "".join(f"{line}\r\n" for line in self.lines()).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return "".join(f"{line}\r\n" for line in self.lines())

    # ---- helpers -------------------------------------------------------------------------------

    def copy(self) -> SessionDescription:
        """A deep copy, safe to modify."""
        return copy.deepcopy(self)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The media-level ``c=``, else the session-level one (RFC 4566 §5.7)."""
        return media.connection if media.connection is not None else self.connection

    def direction_for(self, media: MediaDescription) -> str:
        """Effective direction: media, else session level, else sendrecv (RFC 4566 §6, RFC 3264 §5.1)."""
        return media.direction or self.direction or SENDRECV

    def ptime_for(self, media: MediaDescription) -> int | None:
        """``a=ptime`` of the media section, else a (non-standard but common) session-level one."""
        return media.ptime if media.ptime is not None else self.ptime

    def maxptime_for(self, media: MediaDescription) -> int | None:
        """``a=maxptime`` of the media section, else a session-level one."""
        return media.maxptime if media.maxptime is not None else self.maxptime

    def is_same_version_as(self, other: SessionDescription) -> bool:
        """True when ``other`` has the same o= line, i.e. the session did not change (RFC 3264 §8).

        A re-INVITE whose offer repeats the previous o= version changes nothing and may be answered with the
        previous answer.
        """
        return self.origin == other.origin

    def with_next_version(self) -> SessionDescription:
        """A copy whose ``o=`` session version is incremented by one (RFC 3264 §8, RFC 4566 §5.2)."""
        result = self.copy()
        result.origin = replace(self.origin, session_version=self.origin.session_version + 1)
        return result


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------


class _Parser:
    """One pass over the lines; every error names the 1-based line number and the line."""

    def __init__(self, data: bytes | str) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "surrogateescape")
        self.text = data
        self.lineno = 0
        self.line = ""

    def fail(self, problem: str) -> SdpError:
        shown = self.line if len(self.line) <= 80 else self.line[:77] + "..."
        return SdpError(f"SDP line {self.lineno}: {shown!r}: {problem}", status_code=400)

    def parse(self) -> SessionDescription:
        version: int | None = None
        origin: Origin | None = None
        session: dict[str, str] = {}
        emails: list[str] = []
        phones: list[str] = []
        connection: Connection | None = None
        bandwidths: list[Bandwidth] = []
        times: list[Timing] = []
        attributes: list[Attribute] = []
        media: list[MediaDescription] = []
        current: MediaDescription | None = None

        for lineno, raw in enumerate(self.text.split("\n"), start=1):
            line = raw.removesuffix("\r")
            self.lineno, self.line = lineno, line
            if not line.strip():
                continue
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise self.fail("not a <type>=<value> line (RFC 4566 §5)")
            letter, value = line[0], line[2:]
            if letter not in _ALL_LETTERS:
                raise self.fail(f"unknown type letter {letter!r} (RFC 4566 §5)")
            if version is None:
                if letter != "v":
                    raise self.fail("an SDP body must start with v= (RFC 4566 §5)")
                if value.strip() != "0":
                    raise self.fail("unsupported SDP version, expected v=0 (RFC 4566 §5.1)")
                version = 0
                continue
            if letter == "v":
                raise self.fail("duplicate v= line")
            if letter == "m":
                current = self.parse_media(value)
                media.append(current)
                continue
            if current is not None:
                self.parse_media_field(current, letter, value)
                continue
            if letter == "o":
                if origin is not None:
                    raise self.fail("duplicate o= line")
                origin = self.parse_origin(value)
            elif letter in "siuzk":
                if letter in session:
                    raise self.fail(f"duplicate {letter}= line")
                session[letter] = value
            elif letter == "e":
                emails.append(value)
            elif letter == "p":
                phones.append(value)
            elif letter == "c":
                if connection is not None:
                    raise self.fail("duplicate session-level c= line (RFC 4566 §5.7)")
                connection = self.parse_connection(value)
            elif letter == "b":
                bandwidths.append(self.parse_bandwidth(value))
            elif letter == "t":
                times.append(self.parse_timing(value))
            elif letter == "r":
                if not times:
                    raise self.fail("r= must follow a t= line (RFC 4566 §5.10)")
                times[-1].repeats.append(value)
            else:  # "a"
                attributes.append(self.parse_attribute(value))

        self.lineno, self.line = 0, ""
        if version is None:
            raise SdpError("SDP body is empty (RFC 4566 §5: v= line expected)", status_code=400)
        if origin is None:
            raise SdpError("SDP body has no o= line (RFC 4566 §5.2)", status_code=400)
        return SessionDescription(
            origin=origin,
            version=version,
            session_name=session.get("s", "-"),
            information=session.get("i"),
            uri=session.get("u"),
            emails=emails,
            phones=phones,
            connection=connection,
            bandwidths=bandwidths,
            times=times,
            time_zones=session.get("z"),
            encryption_key=session.get("k"),
            attributes=attributes,
            media=media,
        )

    def parse_media_field(self, media: MediaDescription, letter: str, value: str) -> None:
        if letter not in _MEDIA_LETTERS:
            raise self.fail(f"{letter}= is not allowed in a media description (RFC 4566 §5)")
        if letter == "a":
            media.attributes.append(self.parse_attribute(value))
        elif letter == "b":
            media.bandwidths.append(self.parse_bandwidth(value))
        elif letter == "c":
            if media.connection is not None:
                raise self.fail("more than one c= line in a media description is not supported")
            media.connection = self.parse_connection(value)
        elif letter == "i":
            if media.information is not None:
                raise self.fail("duplicate i= line in a media description")
            media.information = value
        else:  # "k"
            if media.encryption_key is not None:
                raise self.fail("duplicate k= line in a media description")
            media.encryption_key = value

    def number(self, text: str, what: str) -> int:
        value = _uint(text.strip())
        if value is None:
            raise self.fail(f"{what} must be a decimal number of at most {_MAX_DIGITS} digits")
        return value

    def parse_origin(self, value: str) -> Origin:
        # RFC 4566 §5.2: o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
        parts = value.split()
        if len(parts) != 6:
            raise self.fail("o= needs 6 fields: username sess-id sess-version nettype addrtype address")
        username, session_id, version_text, net_type, addr_type, address = parts
        return Origin(username, session_id, self.number(version_text, "o= sess-version"), net_type, addr_type,
                      address)

    def parse_connection(self, value: str) -> Connection:
        # RFC 4566 §5.7: c=<nettype> <addrtype> <connection-address>[/<ttl>][/<number of addresses>]
        parts = value.split()
        if len(parts) != 3:
            raise self.fail("c= needs 3 fields: nettype addrtype connection-address (RFC 4566 §5.7)")
        net_type, addr_type, address = parts
        host, *suffix = address.split("/")
        if not host or len(suffix) > 2:
            raise self.fail("malformed connection-address (RFC 4566 §5.7)")
        numbers = [self.number(text, "c= ttl / number of addresses") for text in suffix]
        if addr_type.upper() == "IP6" and numbers:
            if len(numbers) != 1:
                raise self.fail("an IP6 connection-address has no ttl (RFC 4566 §5.7)")
            return Connection(net_type, addr_type, host, None, numbers[0])
        return Connection(net_type, addr_type, host, *numbers)

    def parse_bandwidth(self, value: str) -> Bandwidth:
        # RFC 4566 §5.8: b=<bwtype>:<bandwidth>
        bwtype, colon, amount = value.partition(":")
        if not colon or not _TOKEN.fullmatch(bwtype):
            raise self.fail("b= must be <bwtype>:<bandwidth> (RFC 4566 §5.8)")
        return Bandwidth(bwtype, self.number(amount, "b= bandwidth"))

    def parse_timing(self, value: str) -> Timing:
        # RFC 4566 §5.9: t=<start-time> <stop-time>
        parts = value.split()
        if len(parts) != 2:
            raise self.fail("t= needs <start-time> <stop-time> (RFC 4566 §5.9)")
        return Timing(self.number(parts[0], "t= start-time"), self.number(parts[1], "t= stop-time"))

    def parse_attribute(self, value: str) -> Attribute:
        # RFC 4566 §5.13: a=<attribute> / a=<attribute>:<value>
        name, colon, rest = value.partition(":")
        if not colon:
            name = name.rstrip(" \t")  # "a=sendrecv " with a trailing blank is common; read as a=sendrecv
        if not _TOKEN.fullmatch(name):
            raise self.fail("attribute name must be a token (RFC 4566 §5.13)")
        return Attribute(name, rest if colon else None)

    def parse_media(self, value: str) -> MediaDescription:
        # RFC 4566 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
        parts = value.split()
        if len(parts) < 3:
            raise self.fail("m= needs <media> <port> <proto> <fmt> ... (RFC 4566 §5.14)")
        media, port_text, proto, *formats = parts
        if not _TOKEN.fullmatch(media):
            raise self.fail("m= media type must be a token (RFC 4566 §5.14)")
        port_part, slash, count_part = port_text.partition("/")
        port = self.number(port_part, "m= port")
        if port > 65535:
            raise self.fail("m= port out of range 0-65535")
        port_count = self.number(count_part, "m= number of ports") if slash else None
        return MediaDescription(media, port, proto, formats, port_count=port_count)


def _uint(text: str) -> int | None:
    """A non-negative ASCII decimal of at most 20 digits, or None."""
    return int(text) if _UINT.fullmatch(text) else None


def _milliseconds(value: str | None) -> int | None:
    """Parse ``20`` or ``20.0`` (seen from some IADs) as whole milliseconds; None when absent/malformed."""
    if value is None:
        return None
    match = _DECIMAL.fullmatch(value.strip())
    return int(match.group(1)) if match else None
