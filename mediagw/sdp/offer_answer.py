"""RFC 3264 offer/answer for the gateway's single audio stream, as pure functions.

Theory of operation
-------------------
mediagw anchors one G.711 audio stream per leg. Each SIP leg negotiates it one of two ways:

* the peer offers (trunk INVITE, re-INVITE for hold/resume): ``negotiate_answer(offer, ...)`` builds the
  answer and says what was agreed (``NegotiatedAudio``);
* we offer (outbound legs to agents and supervisors, our own re-INVITEs): ``create_offer(...)`` /
  ``create_reoffer(...)``, then ``process_answer(offer, answer)`` on the peer's answer.

Rules, with their sources:

* The answer has exactly the offer's m-lines in the same order (RFC 3264 §6) and its ``t=`` (RFC 3264 §6).
  Only the first usable audio stream is accepted; any other stream is rejected with port 0 (RFC 3264 §6),
  echoing the offered formats because an m-line needs at least one (RFC 4566 §5.14).
* "Usable" means an ``audio`` m-line with a non-zero port (RFC 3264 §6: a port-0 stream stays rejected),
  an unencrypted RTP profile (``RTP/AVP``, or ``RTP/AVPF`` answered without feedback; we have no SRTP) and
  a common codec. The codec is the first in the OFFERER's order that we support (RFC 3264 §6.1 lets the
  answerer choose; we honour the offerer's preference) with the offerer's payload type (RFC 3264 §6.1).
* telephone-event is kept with the offerer's payload type when offered at the codec's clock rate
  (RFC 4733 §7.1.1) and when ``local_codecs`` includes it; the answered events are those both sides list.
* Directions (RFC 3264 §6.1): sendonly -> recvonly, recvonly -> sendonly, inactive -> inactive,
  sendrecv -> our ``local_direction``; in general the answer is our wish intersected with the mirror of the
  offer. An offer with ``c=0.0.0.0`` (RFC 2543 hold, RFC 3264 §8.4) means the offerer will not receive:
  sendrecv becomes sendonly and recvonly becomes inactive.
* ``a=ptime`` states what the SDP's author wants to RECEIVE (RFC 3264 §5.1, §6.1; RFC 4566 §6). Our answer
  asks for ``ptime`` ms (20) unless the offer's ``a=maxptime`` is smaller. We SEND at the offerer's
  ``a=ptime`` when it gave one (capped by its maxptime), else at our own; both are recorded.
* Each failure to agree raises ``SdpError`` 488 (Not Acceptable Here, RFC 3261 §21.4.26) with a message that
  says why. Our own misuse (bad direction name, empty codec list) raises ``LocalError``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mediagw.errors import LocalError, SdpError
from mediagw.sdp.session import (
    DIRECTIONS,
    INACTIVE,
    RECVONLY,
    SENDONLY,
    SENDRECV,
    Attribute,
    Codec,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)

__all__ = [
    "NegotiatedAudio",
    "create_offer",
    "create_reoffer",
    "negotiate_answer",
    "process_answer",
]

ACCEPTED_PROTOS: tuple[str, ...] = ("RTP/AVP", "RTP/AVPF")
"""RTP profiles we answer (RFC 3551; RFC 4585 AVPF degrades to AVP without feedback). No SRTP."""

_DIRECTION_CAPS: dict[str, tuple[bool, bool]] = {  # (sends, receives) from the SDP author's view
    SENDRECV: (True, True),
    SENDONLY: (True, False),
    RECVONLY: (False, True),
    INACTIVE: (False, False),
}
_CAPS_DIRECTION = {caps: name for name, caps in _DIRECTION_CAPS.items()}


@dataclass(frozen=True, slots=True)
class NegotiatedAudio:
    """What one leg's offer/answer agreed for its audio stream."""

    remote_address: str
    """Where the peer wants RTP sent (its c= address; ``0.0.0.0`` for an RFC 2543 hold)."""
    remote_port: int
    """The peer's RTP port (its m= port)."""
    codec: Codec
    """The audio codec, bound to the payload type used on the wire."""
    telephone_event: Codec | None
    """RFC 4733 DTMF events with their payload type, or None when not agreed."""
    ptime: int
    """Packetization interval in ms for the RTP we SEND (the peer's a=ptime, else ours)."""
    remote_direction: str
    """The peer's direction (sendrecv/sendonly/recvonly/inactive), as stated in its SDP except that an
    RFC 2543 ``c=0.0.0.0`` hold reads as not receiving (sendrecv -> sendonly, recvonly -> inactive)."""
    local_direction: str
    """What WE do: sendrecv/sendonly/recvonly/inactive."""
    remote_ptime: int | None = None
    """The peer's a=ptime verbatim (what it wants to receive), or None when it gave none."""
    remote_maxptime: int | None = None
    """The peer's a=maxptime, or None."""

    @property
    def we_send(self) -> bool:
        """True when we send RTP to the peer."""
        return _DIRECTION_CAPS[self.local_direction][0]

    @property
    def we_receive(self) -> bool:
        """True when we expect RTP from the peer."""
        return _DIRECTION_CAPS[self.local_direction][1]


# --------------------------------------------------------------------------------------------------
# Answering an offer
# --------------------------------------------------------------------------------------------------


def negotiate_answer(
    offer: SessionDescription,
    *,
    local_codecs: Sequence[Codec],
    local_address: str,
    local_port: int,
    session_id: int | str,
    session_version: int,
    ptime: int = 20,
    local_direction: str = SENDRECV,
) -> tuple[SessionDescription, NegotiatedAudio]:
    """Answer ``offer`` for one audio stream (RFC 3264 §6); returns the answer and what it agreed.

    ``local_codecs`` lists what we support (e.g. ``(PCMU, PCMA, TELEPHONE_EVENT)``); the codec chosen is the
    first one in the offerer's order that is also in ``local_codecs``. ``local_direction`` is what we want to
    do (``sendonly`` to put the peer on hold, RFC 3264 §8.4).

    Raises SdpError (488) when the offer has no usable audio stream or no codec in common, and
    SdpError (400) when the accepted stream has no c= line. Raises LocalError on bad arguments.
    """
    _check_direction(local_direction)
    _check_port(local_port)
    if ptime <= 0:
        raise LocalError(f"ptime must be positive, got {ptime}")
    audio_codecs = [codec for codec in local_codecs if not codec.is_telephone_event]
    if not audio_codecs:
        raise LocalError("local_codecs has no audio codec")

    audio_offered = False
    rejected_protos: list[str] = []
    accepted: tuple[int, Codec] | None = None  # (m-line index, codec with the offered payload type)
    for index, media in enumerate(offer.media):
        if media.media.lower() != "audio" or media.port == 0:
            continue
        if media.proto.upper() not in ACCEPTED_PROTOS:
            rejected_protos.append(media.proto)
            continue
        audio_offered = True
        codec = _first_common_codec(media.codecs(), audio_codecs)
        if codec is not None:
            accepted = (index, codec)
            break
    if accepted is None:
        if rejected_protos and not audio_offered:
            raise SdpError(f"offered audio uses {', '.join(rejected_protos)}; we answer only "
                           f"{', '.join(ACCEPTED_PROTOS)} (no SRTP)")
        if not audio_offered:
            raise SdpError("offer has no active audio stream (RFC 3264 §6)")
        raise SdpError("no common audio codec in the offer; we support "
                       + ", ".join(f"{c.name}/{c.clock_rate}" for c in audio_codecs))
    index, codec = accepted
    offered = offer.media[index]

    connection = offer.connection_for(offered)
    if connection is None:
        raise SdpError(f"offered audio stream {index + 1} has no c= line (RFC 4566 §5.7)", status_code=400)
    remote_direction = _effective_direction(offer, offered, connection)
    answer_direction = _intersect(local_direction, _mirror(remote_direction))

    telephone_event = _telephone_event_answer(offered, codec, local_codecs)
    remote_ptime = offer.ptime_for(offered)
    remote_maxptime = offer.maxptime_for(offered)
    if remote_maxptime == 0:
        remote_maxptime = None
    if remote_ptime == 0:
        remote_ptime = None
    answer_ptime = min(ptime, remote_maxptime) if remote_maxptime is not None else ptime
    send_ptime = remote_ptime if remote_ptime is not None else answer_ptime
    if remote_maxptime is not None:
        send_ptime = min(send_ptime, remote_maxptime)

    answer_media: list[MediaDescription] = []
    for position, media in enumerate(offer.media):
        if position == index:
            answer_media.append(_audio_media(offered.proto, local_port, codec, telephone_event,
                                             answer_ptime, answer_direction))
        else:
            # RFC 3264 §6: reject with port 0; keep at least one format (RFC 4566 §5.14).
            answer_media.append(MediaDescription(media.media, 0, media.proto, list(media.formats)))

    answer = SessionDescription(
        origin=_origin(local_address, session_id, session_version),
        connection=Connection.for_address(local_address),
        times=[Timing(t.start, t.stop, list(t.repeats)) for t in offer.times] or [Timing()],  # RFC 3264 §6
        media=answer_media,
    )
    negotiated = NegotiatedAudio(
        remote_address=connection.address,
        remote_port=offered.port,
        codec=codec,
        telephone_event=telephone_event,
        ptime=send_ptime,
        remote_direction=remote_direction,
        local_direction=answer_direction,
        remote_ptime=remote_ptime,
        remote_maxptime=remote_maxptime,
    )
    return answer, negotiated


# --------------------------------------------------------------------------------------------------
# Making an offer and processing its answer
# --------------------------------------------------------------------------------------------------


def create_offer(
    *,
    local_address: str,
    local_port: int,
    codecs: Sequence[Codec],
    session_id: int | str,
    session_version: int,
    direction: str = SENDRECV,
    ptime: int = 20,
) -> SessionDescription:
    """An offer with one audio stream listing ``codecs`` in preference order (RFC 3264 §5).

    Use ``direction="sendonly"`` for a hold offer (RFC 3264 §8.4). Raises LocalError on bad arguments
    (unknown direction, no audio codec, a payload type used twice).
    """
    _check_direction(direction)
    _check_port(local_port)
    if ptime <= 0:
        raise LocalError(f"ptime must be positive, got {ptime}")
    if not any(not codec.is_telephone_event for codec in codecs):
        raise LocalError("an offer needs at least one audio codec")
    payload_types = [codec.payload_type for codec in codecs]
    if len(set(payload_types)) != len(payload_types):
        raise LocalError(f"payload types used twice in {payload_types}")
    if any(not 0 <= pt <= 127 for pt in payload_types):
        raise LocalError(f"payload types must be 0..127, got {payload_types}")

    media = MediaDescription("audio", local_port, "RTP/AVP", [str(pt) for pt in payload_types])
    media.attributes.extend(Attribute("rtpmap", codec.rtpmap_value) for codec in codecs)
    media.attributes.extend(
        Attribute("fmtp", f"{codec.payload_type} {codec.fmtp}") for codec in codecs if codec.fmtp is not None
    )
    media.attributes.append(Attribute("ptime", str(ptime)))
    media.attributes.append(Attribute(direction))
    return SessionDescription(
        origin=_origin(local_address, session_id, session_version),
        connection=Connection.for_address(local_address),
        times=[Timing()],
        media=[media],
    )


def create_reoffer(previous: SessionDescription, *, direction: str | None = None,
                   local_port: int | None = None) -> SessionDescription:
    """A new offer for an existing session: ``previous`` with the o= version incremented (RFC 3264 §8).

    ``direction`` changes the audio stream's direction (hold: ``sendonly``, resume: ``sendrecv``,
    RFC 3264 §8.4); ``local_port`` moves it. The m-lines keep their number and order (RFC 3264 §8).
    """
    result = previous.with_next_version()
    if local_port is not None:
        _check_port(local_port)
    for media in result.media:
        if media.media.lower() == "audio" and media.port != 0:
            if direction is not None:
                media.set_direction(direction)
            if local_port is not None:
                media.port = local_port
            break
    else:
        raise LocalError("previous offer has no active audio stream")
    return result


def process_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedAudio:
    """Check the peer's ``answer`` to our ``offer`` and say what was agreed (RFC 3264 §7).

    The codec is the first one in the answer's order that we offered (matched by encoding, so a peer that
    renumbers a dynamic payload type still works; we then send with the answer's number, RFC 3264 §6.1).
    Raises SdpError (488) when the answer changes the m-lines, rejects our audio stream, or picks a codec
    we did not offer; SdpError (400) when the accepted stream has no c= line.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m-lines, offer had {len(offer.media)} (RFC 3264 §6)")
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media)):
        if ours.media.lower() != "audio" or ours.port == 0:
            continue
        if theirs.media.lower() != ours.media.lower():
            raise SdpError(f"answer m-line {index + 1} is {theirs.media!r}, we offered audio (RFC 3264 §6)")
        if theirs.port == 0:
            continue
        offered_codecs = ours.codecs()
        codec: Codec | None = None
        for candidate in theirs.codecs():
            if candidate.is_telephone_event:
                continue
            match = next((c for c in offered_codecs if c.same_format(candidate)), None)
            if match is None:
                raise SdpError(
                    f"answer chose {candidate.name}/{candidate.clock_rate}, "
                    "which we did not offer (RFC 3264 §6.1)"
                )
            codec = match.with_payload_type(candidate.payload_type, candidate.fmtp or match.fmtp)
            break
        if codec is None:
            raise SdpError("answer accepted the audio stream without a codec we offered")
        connection = answer.connection_for(theirs)
        if connection is None:
            raise SdpError(f"answer audio stream {index + 1} has no c= line (RFC 4566 §5.7)",
                           status_code=400)
        remote_direction = _effective_direction(answer, theirs, connection)
        local_direction = _intersect(offer.direction_for(ours), _mirror(remote_direction))
        telephone_event = None
        if any(c.is_telephone_event for c in offered_codecs):
            events = [c for c in theirs.codecs() if c.is_telephone_event and c.clock_rate == codec.clock_rate]
            telephone_event = events[0] if events else None
        remote_ptime = answer.ptime_for(theirs) or None
        remote_maxptime = answer.maxptime_for(theirs) or None
        send_ptime = remote_ptime or offer.ptime_for(ours) or 20
        if remote_maxptime is not None:
            send_ptime = min(send_ptime, remote_maxptime)
        return NegotiatedAudio(
            remote_address=connection.address,
            remote_port=theirs.port,
            codec=codec,
            telephone_event=telephone_event,
            ptime=send_ptime,
            remote_direction=remote_direction,
            local_direction=local_direction,
            remote_ptime=remote_ptime,
            remote_maxptime=remote_maxptime,
        )
    raise SdpError("answer rejected every audio stream we offered (RFC 3264 §6)")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise LocalError(f"unknown media direction {direction!r}; expected one of {DIRECTIONS}")


def _check_port(port: int) -> None:
    if not 0 < port <= 65535:
        raise LocalError(f"RTP port must be 1..65535, got {port}")


def _origin(address: str, session_id: int | str, session_version: int) -> Origin:
    """Our o= line; username ``-`` (RFC 4566 §5.2: no user id), address type from the literal."""
    if session_version < 0:
        raise LocalError(f"session_version must not be negative, got {session_version}")
    connection = Connection.for_address(address)
    return Origin("-", str(session_id), session_version, "IN", connection.addr_type, address)


def _mirror(direction: str) -> str:
    """The direction seen from the other end: sendonly <-> recvonly (RFC 3264 §6.1)."""
    sends, receives = _DIRECTION_CAPS[direction]
    return _CAPS_DIRECTION[(receives, sends)]


def _intersect(first: str, second: str) -> str:
    """Both directions at once: send only where both allow sending, receive likewise."""
    a, b = _DIRECTION_CAPS[first], _DIRECTION_CAPS[second]
    return _CAPS_DIRECTION[(a[0] and b[0], a[1] and b[1])]


def _effective_direction(description: SessionDescription, media: MediaDescription,
                         connection: Connection) -> str:
    """The author's direction; ``c=0.0.0.0`` means the author will not receive (RFC 3264 §8.4)."""
    direction = description.direction_for(media)
    if connection.is_hold_address:
        return _CAPS_DIRECTION[(_DIRECTION_CAPS[direction][0], False)]
    return direction


def _first_common_codec(offered: Sequence[Codec], supported: Sequence[Codec]) -> Codec | None:
    """The first offered codec we support, with the offerer's payload type and our spelling and fmtp."""
    for candidate in offered:
        for local in supported:
            if local.same_format(candidate):
                return local.with_payload_type(candidate.payload_type)
    return None


def _telephone_event_answer(
    media: MediaDescription, codec: Codec, local_codecs: Sequence[Codec]
) -> Codec | None:
    """telephone-event at the codec's clock rate (RFC 4733 §7.1.1), offerer's payload type, common events."""
    local = next((c for c in local_codecs if c.is_telephone_event and c.clock_rate == codec.clock_rate), None)
    if local is None:
        return None
    offered = next(
        (c for c in media.codecs() if c.is_telephone_event and c.clock_rate == codec.clock_rate), None
    )
    if offered is None:
        return None
    return local.with_payload_type(offered.payload_type, _common_events(offered.fmtp, local.fmtp))


def _common_events(offered: str | None, local: str | None) -> str | None:
    """Events both sides list, as an RFC 4733 §7.1.1 range list; ours when the offer's is absent or garbled.

    RFC 4733 §7.1.1: no fmtp means events 0-15.
    """
    ours = _event_set(local)
    theirs = _event_set(offered) if offered is not None else set(range(16))
    if ours is None:
        return local
    if theirs is None:
        return local
    common = ours & theirs
    return _event_ranges(common) if common else local


def _event_set(text: str | None) -> set[int] | None:
    if text is None:
        return None
    events: set[int] = set()
    for item in text.replace(" ", "").split(","):
        low, dash, high = item.partition("-")
        if not low.isascii() or not low.isdigit() or len(low) > 3:
            return None
        if dash and (not high.isascii() or not high.isdigit() or len(high) > 3):
            return None
        first, last = int(low), int(high) if dash else int(low)
        if first > last or last > 255:
            return None
        events.update(range(first, last + 1))
    return events


def _event_ranges(events: set[int]) -> str:
    ordered = sorted(events)
    ranges: list[str] = []
    start = previous = ordered[0]
    for event in ordered[1:] + [-2]:
        if event == previous + 1:
            previous = event
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = event
    return ",".join(ranges)


def _audio_media(proto: str, port: int, codec: Codec, telephone_event: Codec | None, ptime: int,
                 direction: str) -> MediaDescription:
    """The accepted audio m-line of an answer."""
    codecs = [codec] + ([telephone_event] if telephone_event is not None else [])
    media = MediaDescription("audio", port, proto, [str(c.payload_type) for c in codecs])
    media.attributes.extend(Attribute("rtpmap", c.rtpmap_value) for c in codecs)
    media.attributes.extend(
        Attribute("fmtp", f"{c.payload_type} {c.fmtp}") for c in codecs if c.fmtp is not None
    )
    media.attributes.append(Attribute("ptime", str(ptime)))
    media.attributes.append(Attribute(direction))
    return media
