"""SDP for mediagw: RFC 4566 parse/serialize and RFC 3264 audio offer/answer, as pure functions.

```python
from mediagw.sdp import SessionDescription, negotiate_answer, PCMU, PCMA, TELEPHONE_EVENT

offer = SessionDescription.parse(request.body)             # SdpError(400) when unparseable
answer, audio = negotiate_answer(offer, local_codecs=(PCMU, PCMA, TELEPHONE_EVENT),
                                 local_address="192.0.2.1", local_port=40000,
                                 session_id=sid, session_version=1)   # SdpError(488) when no match
body = answer.serialize()
```

See ``mediagw.sdp.session`` (grammar, codec model) and ``mediagw.sdp.offer_answer`` (RFC 3264 rules).
"""
from mediagw.sdp.offer_answer import (
    ACCEPTED_PROTOS,
    NegotiatedAudio,
    create_offer,
    create_reoffer,
    negotiate_answer,
    process_answer,
)
from mediagw.sdp.session import (
    DIRECTIONS,
    INACTIVE,
    PCMA,
    PCMU,
    RECVONLY,
    SENDONLY,
    SENDRECV,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
    parse_rtpmap,
)

__all__ = [
    "ACCEPTED_PROTOS",
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
    "NegotiatedAudio",
    "Origin",
    "SessionDescription",
    "Timing",
    "create_offer",
    "create_reoffer",
    "negotiate_answer",
    "parse_rtpmap",
    "process_answer",
]
