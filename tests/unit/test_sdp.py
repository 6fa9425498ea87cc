"""SDP parse/serialize (RFC 4566) and audio offer/answer (RFC 3264) against raw fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediagw.errors import LocalError, SdpError
from mediagw.sdp import (
    PCMA,
    PCMU,
    STATIC_PAYLOAD_TYPES,
    TELEPHONE_EVENT,
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    MediaDescription,
    NegotiatedAudio,
    Origin,
    SessionDescription,
    Timing,
    create_offer,
    create_reoffer,
    negotiate_answer,
    parse_rtpmap,
    process_answer,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sdp"
ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.sdp"))
LOCAL = (PCMU, PCMA, TELEPHONE_EVENT)


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(name: str) -> SessionDescription:
    return SessionDescription.parse(load(name))


def answer(offer: SessionDescription, **kwargs: object) -> tuple[SessionDescription, NegotiatedAudio]:
    params: dict[str, object] = {
        "local_codecs": LOCAL,
        "local_address": "192.0.2.1",
        "local_port": 40000,
        "session_id": 4242,
        "session_version": 1,
    }
    params.update(kwargs)
    return negotiate_answer(offer, **params)  # type: ignore[arg-type]


def sdp(text: str) -> SessionDescription:
    return SessionDescription.parse(text.replace("\n", "\r\n"))


AUDIO_ONLY = """v=0
o=- 1 1 IN IP4 10.1.1.1
s=-
c=IN IP4 10.1.1.1
t=0 0
m=audio 5004 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
"""


# --------------------------------------------------------------------------------------------------
# Parsing and serializing
# --------------------------------------------------------------------------------------------------


def test_fixtures_present() -> None:
    assert len(ALL_FIXTURES) >= 9


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_round_trip_byte_exact(name: str) -> None:
    data = load(name)
    assert data.endswith(b"\r\n")
    assert SessionDescription.parse(data).serialize() == data


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_lf_only_input_is_accepted_and_written_with_crlf(name: str) -> None:
    data = load(name)
    parsed = SessionDescription.parse(data.replace(b"\r\n", b"\n"))
    assert parsed == SessionDescription.parse(data)
    assert parsed.serialize() == data


def test_input_without_final_line_end_and_with_blank_lines() -> None:
    data = load("asterisk_offer.sdp")
    assert SessionDescription.parse(data.rstrip(b"\r\n")).serialize() == data
    assert SessionDescription.parse(data + b"\r\n\r\n").serialize() == data


def test_str_input_equals_bytes_input() -> None:
    data = load("carrier_trunk_offer.sdp")
    assert SessionDescription.parse(data.decode()) == SessionDescription.parse(data)
    assert str(SessionDescription.parse(data)) == data.decode()


def test_non_utf8_bytes_survive_round_trip() -> None:
    data = load("asterisk_offer.sdp").replace(b"s=Asterisk", b"s=Caf\xe9 PBX")
    parsed = SessionDescription.parse(data)
    assert parsed.session_name.startswith("Caf")
    assert parsed.serialize() == data


def test_rfc4566_example_fields() -> None:
    desc = parse("rfc4566_example.sdp")
    assert desc.version == 0
    assert desc.origin == Origin("jdoe", "2890844526", 2890842807, "IN", "IP4", "10.47.16.5")
    assert desc.session_name == "SDP Seminar"
    assert desc.information == "A Seminar on the session description protocol"
    assert desc.uri == "http://www.example.com/seminars/sdp.pdf"
    assert desc.emails == ["j.doe@example.com (Jane Doe)"]
    assert desc.phones == ["+1 617 555-6011"]
    assert desc.connection == Connection("IN", "IP4", "224.2.17.12", ttl=127)
    assert desc.bandwidths == [Bandwidth("CT", 128)]
    assert desc.times == [Timing(2873397496, 2873404696, ["7d 1h 0 25h"])]
    assert desc.time_zones == "2882844526 -1h 2898848070 0"
    assert desc.encryption_key == "prompt"
    assert desc.attributes == [Attribute("recvonly")]
    assert desc.direction == "recvonly"
    audio, video = desc.media
    assert (audio.media, audio.port, audio.port_count, audio.proto, audio.formats) == (
        "audio", 49170, None, "RTP/AVP", ["0"])
    assert audio.information == "Audio stream"
    assert audio.bandwidths == [Bandwidth("AS", 64)]
    assert desc.connection_for(audio) == desc.connection
    assert desc.direction_for(audio) == "recvonly"
    assert (video.port, video.port_count, video.formats) == (51372, 2, ["99"])
    assert video.connection == Connection("IN", "IP6", "FF15::101", None, 3)
    assert video.encryption_key == "clear:secret"
    assert video.rtpmap(99) == Codec("h263-1998", 90000, payload_type=99)


def test_pjsua2_offer_fields_and_static_payload_types_without_rtpmap() -> None:
    desc = parse("pjsua2_offer.sdp")
    assert desc.origin.session_version == 3925046190
    assert desc.get_attribute("X-nat") == "0"
    (audio,) = desc.media
    assert audio.payload_types == [96, 97, 98, 99, 3, 0, 8, 9, 120, 121, 101]
    assert audio.direction == "sendrecv"
    assert audio.get_attribute("rtcp") == "4001 IN IP4 192.168.56.10"
    assert audio.rtpmap(0) is None  # static, no rtpmap line
    assert audio.fmtp(99) == "mode=30"
    assert audio.fmtp(0) is None
    assert audio.ptime is None
    codecs = audio.codecs()
    assert [(c.name, c.clock_rate, c.payload_type) for c in codecs] == [
        ("speex", 16000, 96), ("speex", 8000, 97), ("speex", 32000, 98), ("iLBC", 8000, 99),
        ("GSM", 8000, 3), ("PCMU", 8000, 0), ("PCMA", 8000, 8), ("G722", 8000, 9),
        ("telephone-event", 16000, 120), ("telephone-event", 32000, 121), ("telephone-event", 8000, 101),
    ]
    assert codecs[3].fmtp == "mode=30"
    assert codecs[-1].fmtp == "0-16"
    # Attribute order is kept exactly.
    assert [a.name for a in audio.attributes][:3] == ["rtcp", "sendrecv", "rtpmap"]
    assert audio.attributes[-1] == Attribute("ssrc", "1849123582 cname:4e1a2c5b3f7d6e8a")


def test_carrier_offer_ptime_maxptime() -> None:
    (audio,) = parse("carrier_trunk_offer.sdp").media
    assert audio.ptime == 20
    assert audio.maxptime == 40
    assert audio.fmtp(18) == "annexb=no"


def test_attribute_helpers_edit_in_place() -> None:
    desc = parse("asterisk_offer.sdp")
    audio = desc.media[0]
    audio.set_direction("sendonly")
    assert audio.attributes[-1] == Attribute("sendonly")
    audio.set_attribute("ptime", "30")
    assert audio.ptime == 30
    assert [a.name for a in audio.attributes].index("ptime") == 6
    audio.remove_attribute("maxptime")
    assert audio.maxptime is None and not audio.has_attribute("maxptime")
    audio.add_attribute("rtcp-mux")
    assert audio.get_attribute("rtcp-mux") == ""
    assert b"a=ptime:30\r\na=sendonly\r\na=rtcp-mux\r\n" in desc.serialize()
    with pytest.raises(LocalError):
        audio.set_direction("sideways")


def test_malformed_attribute_values_read_as_absent() -> None:
    desc = sdp(AUDIO_ONLY + "a=ptime:twenty\na=maxptime:20.0\na=rtpmap:101 garbage\n")
    audio = desc.media[0]
    assert audio.ptime is None
    assert audio.maxptime == 20
    assert audio.rtpmap(101) == Codec("telephone-event", 8000, payload_type=101)  # the good one, first


def test_parse_rtpmap() -> None:
    assert parse_rtpmap("96 opus/48000/2") == Codec("opus", 48000, 2, payload_type=96)
    assert parse_rtpmap("0 PCMU/8000") == PCMU
    bad_values = ("", "96", "96 opus", "x opus/48000", "200 opus/48000", "96 opus/0", "96 /8000",
                  "96 a/8000/0")
    for bad in bad_values:
        assert parse_rtpmap(bad) is None, bad


def test_codec_model() -> None:
    assert PCMU.payload_type == 0 and PCMA.payload_type == 8
    assert STATIC_PAYLOAD_TYPES[0] == PCMU and STATIC_PAYLOAD_TYPES[8] == PCMA
    assert TELEPHONE_EVENT.payload_type == 101 and TELEPHONE_EVENT.fmtp == "0-16"
    assert TELEPHONE_EVENT.is_telephone_event
    assert Codec("pcmu", 8000, payload_type=7).same_format(PCMU)
    assert not Codec("PCMU", 16000, payload_type=0).same_format(PCMU)
    assert Codec("opus", 48000, 2, payload_type=111).rtpmap_value == "111 opus/48000/2"
    assert PCMU.with_payload_type(96).payload_type == 96


def test_session_version_increment() -> None:
    desc = parse("asterisk_offer.sdp")
    bumped = desc.with_next_version()
    assert bumped.origin.session_version == desc.origin.session_version + 1
    assert bumped.origin.session_id == desc.origin.session_id
    assert desc.origin.session_version == 1185963513  # original untouched
    assert bumped.media == desc.media and bumped.media[0] is not desc.media[0]


def test_session_lines_in_any_order_are_accepted_and_written_in_rfc_order() -> None:
    desc = sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\nt=0 0\na=tool:x\nc=IN IP4 10.0.0.1\ns=-\nm=audio 1 RTP/AVP 0\n")
    assert desc.serialize() == (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=tool:x\r\n"
        b"m=audio 1 RTP/AVP 0\r\n"
    )


def test_missing_s_and_t_are_tolerated() -> None:
    desc = sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\nc=IN IP4 10.0.0.1\nm=audio 1 RTP/AVP 0\n")
    assert desc.session_name == "-" and desc.times == []
    assert b"s=-\r\n" in desc.serialize() and b"t=0 0\r\n" in desc.serialize()


def test_trailing_blanks_are_tolerated() -> None:
    desc = sdp(
        "v=0 \no=- 1 1 IN IP4 10.0.0.1 \ns=-\nb=AS:64 \nt=0 0 \nm=audio 4000 RTP/AVP 0 \na=sendonly \n"
    )
    assert desc.media[0].direction == "sendonly"
    assert desc.bandwidths == [Bandwidth("AS", 64)]
    assert desc.media[0].formats == ["0"]


def test_same_version_detects_unchanged_reoffer() -> None:
    first = parse("asterisk_offer.sdp")
    assert first.is_same_version_as(parse("asterisk_offer.sdp"))
    assert not first.is_same_version_as(parse("hold_sendonly_offer.sdp"))
    assert not first.is_same_version_as(first.with_next_version())


HEAD = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\n"
MALFORMED = [
    ("", None, "empty"),
    ("o=- 1 1 IN IP4 x\n", 1, "must start with v="),
    ("v=1\no=- 1 1 IN IP4 x\n", 1, "v=0"),
    ("v=0\ns=-\n", None, "no o= line"),
    ("v=0\no=- 1 1 IN IP4\n", 2, "o= needs 6 fields"),
    ("v=0\no=- 1 x IN IP4 10.0.0.1\n", 2, "sess-version"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nhello\n", 4, "<type>=<value>"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nA=x\n", 4, "<type>=<value>"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\na =x\n", 4, "<type>=<value>"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nx=unknown\n", 4, "unknown type letter"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4\n", 4, "c= needs 3 fields"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 1.2.3.4/x\n", 4, "ttl"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nb=AS\n", 4, "b= must be"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nb=AS:lots\n", 4, "bandwidth"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0\n", 4, "t= needs"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nr=7d 1h 0\n", 4, "r= must follow"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\na=:x\n", 5, "attribute name"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio\n", 5, "m= needs"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 70000 RTP/AVP 0\n", 5, "out of range"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio abc RTP/AVP 0\n", 5, "m= port"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000/x RTP/AVP 0\n", 5, "number of ports"),
    (HEAD + "t=0 0\nm=audio 4000 RTP/AVP 0\nt=0 0\n", 6, "not allowed in a media"),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\ns=again\n", 4, "duplicate s="),
    ("v=0\nv=0\n", 2, "duplicate v="),
    ("v=0\no=- 1 1 IN IP4 10.0.0.1\no=- 1 1 IN IP4 10.0.0.1\n", 3, "duplicate o="),
    (HEAD + "c=IN IP4 1.1.1.1\nc=IN IP4 2.2.2.2\n", 5, "duplicate session-level c="),
    ("v=0\no=- 1 99999999999999999999999 IN IP4 10.0.0.1\n", 2, "at most 20 digits"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), MALFORMED)
def test_malformed_input_raises_sdp_error_400_naming_the_line(
    text: str, line: int | None, fragment: str
) -> None:
    for data in (text, text.replace("\n", "\r\n")):
        with pytest.raises(SdpError) as info:
            SessionDescription.parse(data.encode())
        assert info.value.status_code == 400
        assert info.value.reason == "Bad Request"
        message = str(info.value)
        assert fragment in message
        if line is not None:
            bad_line = data.split("\n")[line - 1].rstrip("\r")
            assert message.startswith(f"SDP line {line}: {bad_line!r}")


def test_long_bad_line_is_shortened_in_the_message() -> None:
    with pytest.raises(SdpError) as info:
        SessionDescription.parse(b"v=0\r\n" + b"X" * 5000 + b"\r\n")
    assert len(str(info.value)) < 200


# --------------------------------------------------------------------------------------------------
# Answering offers (RFC 3264 §6)
# --------------------------------------------------------------------------------------------------


def test_answer_pjsua2_offer_picks_first_supported_in_offerer_order() -> None:
    offer = parse("pjsua2_offer.sdp")
    ans, audio = answer(offer)
    assert audio.codec == PCMU
    assert audio.telephone_event == Codec("telephone-event", 8000, payload_type=101, fmtp="0-16")
    assert (audio.remote_address, audio.remote_port) == ("192.168.56.10", 4000)
    assert audio.ptime == 20 and audio.remote_ptime is None
    assert (audio.remote_direction, audio.local_direction) == ("sendrecv", "sendrecv")
    assert audio.we_send and audio.we_receive
    assert ans.serialize() == (
        b"v=0\r\n"
        b"o=- 4242 1 IN IP4 192.0.2.1\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    # The answer parses back into the same structure.
    assert SessionDescription.parse(ans.serialize()) == ans


def test_answer_carrier_offer_keeps_pcma_first_and_common_events() -> None:
    ans, audio = answer(parse("carrier_trunk_offer.sdp"))
    assert audio.codec == PCMA
    assert audio.telephone_event is not None and audio.telephone_event.payload_type == 101
    assert audio.telephone_event.fmtp == "0-15"  # events both sides support (RFC 4733 §7.1.1)
    assert (audio.remote_address, audio.remote_port) == ("203.0.113.20", 31554)
    assert audio.ptime == 20 and audio.remote_ptime == 20 and audio.remote_maxptime == 40
    assert ans.media[0].formats == ["8", "101"]
    assert ans.media[0].ptime == 20


def test_answer_follows_offerer_order_not_ours() -> None:
    _, audio = answer(parse("asterisk_offer.sdp"), local_codecs=(PCMA, PCMU, TELEPHONE_EVENT))
    assert audio.codec == PCMU


def test_answer_with_dynamic_payload_type_for_g711() -> None:
    offer = sdp(AUDIO_ONLY.replace("RTP/AVP 0 101", "RTP/AVP 96 101") + "a=rtpmap:96 pcma/8000\n")
    ans, audio = answer(offer)
    assert audio.codec == Codec("PCMA", 8000, payload_type=96)
    assert ans.media[0].formats == ["96", "101"]
    assert ans.media[0].rtpmap(96) == Codec("PCMA", 8000, payload_type=96)


def test_answer_without_telephone_event_support_or_offer() -> None:
    _, audio = answer(parse("asterisk_offer.sdp"), local_codecs=(PCMU, PCMA))
    assert audio.telephone_event is None
    ans, audio = answer(sdp(AUDIO_ONLY.replace(" 0 101", " 0")))
    assert audio.telephone_event is None
    assert ans.media[0].formats == ["0"]


def test_answer_sendonly_hold_is_recvonly() -> None:
    ans, audio = answer(parse("hold_sendonly_offer.sdp"), session_version=2)
    assert ans.media[0].direction == "recvonly"
    assert (audio.remote_direction, audio.local_direction) == ("sendonly", "recvonly")
    assert not audio.we_send and audio.we_receive
    assert ans.origin.session_version == 2


def test_answer_zero_address_hold_is_treated_as_sendonly() -> None:
    ans, audio = answer(parse("hold_zero_address_offer.sdp"))
    assert audio.remote_address == "0.0.0.0"
    assert audio.remote_direction == "sendonly"
    assert audio.local_direction == "recvonly"
    assert not audio.we_send
    assert ans.media[0].direction == "recvonly"
    assert ans.connection == Connection("IN", "IP4", "192.0.2.1")


def test_answer_inactive_is_inactive() -> None:
    ans, audio = answer(parse("inactive_offer.sdp"))
    assert ans.media[0].direction == "inactive"
    assert audio.local_direction == "inactive"
    assert not audio.we_send and not audio.we_receive
    assert audio.codec == PCMA


@pytest.mark.parametrize(
    ("offered", "local", "expected"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendrecv", "recvonly"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "sendrecv", "sendonly"),
        ("recvonly", "recvonly", "inactive"),
        ("inactive", "sendrecv", "inactive"),
    ],
)
def test_direction_table_rfc3264_6_1(offered: str, local: str, expected: str) -> None:
    ans, audio = answer(sdp(AUDIO_ONLY + f"a={offered}\n"), local_direction=local)
    assert ans.media[0].direction == expected == audio.local_direction
    assert audio.remote_direction == offered


def test_session_level_direction_applies_to_media() -> None:
    offer = sdp(AUDIO_ONLY.replace("t=0 0\n", "t=0 0\na=sendonly\n"))
    _, audio = answer(offer)
    assert audio.local_direction == "recvonly"


def test_zero_address_with_recvonly_is_inactive() -> None:
    offer = sdp(AUDIO_ONLY.replace("c=IN IP4 10.1.1.1", "c=IN IP4 0.0.0.0") + "a=recvonly\n")
    _, audio = answer(offer)
    assert audio.local_direction == "inactive" and audio.remote_direction == "inactive"


def test_video_and_audio_offer_rejects_video_with_port_zero() -> None:
    offer = parse("video_audio_offer.sdp")
    ans, audio = answer(offer)
    assert [(m.media, m.port) for m in ans.media] == [("audio", 40000), ("video", 0)]
    assert ans.media[1].formats == ["102", "103"] and ans.media[1].attributes == []
    assert audio.codec == PCMU
    # telephone-event chosen at the codec's clock rate (8000 -> pt 100), not the first listed (48000).
    assert audio.telephone_event is not None and audio.telephone_event.payload_type == 100
    assert audio.telephone_event.fmtp == "0-15"  # no fmtp offered means 0-15 (RFC 4733 §7.1.1)
    assert ans.serialize().count(b"m=") == 2


def test_video_first_and_second_audio_line_are_rejected_in_order() -> None:
    offer = sdp(
        "v=0\no=- 7 7 IN IP4 10.2.2.2\ns=-\nc=IN IP4 10.2.2.2\nt=0 0\n"
        "m=video 6000 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
        "m=audio 6002 RTP/AVP 18\n"
        "m=audio 6004 RTP/AVP 8 0\n"
        "m=audio 6006 RTP/AVP 0\n"
        "m=application 6008 UDP/BFCP *\n"
    )
    ans, audio = answer(offer)
    assert [(m.media, m.port, m.formats) for m in ans.media] == [
        ("video", 0, ["96"]), ("audio", 0, ["18"]), ("audio", 40000, ["8"]), ("audio", 0, ["0"]),
        ("application", 0, ["*"]),
    ]
    assert (audio.remote_port, audio.codec) == (6004, PCMA)
    assert SessionDescription.parse(ans.serialize()) == ans


def test_offer_with_port_zero_audio_stays_rejected() -> None:
    offer = sdp(AUDIO_ONLY.replace("m=audio 5004", "m=audio 0") + "m=audio 5006 RTP/AVP 8\n")
    ans, audio = answer(offer)
    assert [m.port for m in ans.media] == [0, 40000]
    assert audio.remote_port == 5006


def test_media_level_connection_overrides_session_level() -> None:
    offer = sdp(AUDIO_ONLY + "c=IN IP4 10.9.9.9\n")
    _, audio = answer(offer)
    assert audio.remote_address == "10.9.9.9"


def test_answer_copies_offer_timing_and_uses_ipv6_origin() -> None:
    offer = sdp(AUDIO_ONLY.replace("t=0 0", "t=3034423619 3042462419"))
    ans, _ = answer(offer, local_address="2001:db8::1", session_id="99")
    assert ans.times == [Timing(3034423619, 3042462419)]
    assert ans.origin == Origin("-", "99", 1, "IN", "IP6", "2001:db8::1")
    assert ans.connection == Connection("IN", "IP6", "2001:db8::1")


def test_ptime_offered_30_is_recorded_and_used_for_sending() -> None:
    ans, audio = answer(sdp(AUDIO_ONLY + "a=ptime:30\n"))
    assert ans.media[0].ptime == 20
    assert audio.remote_ptime == 30 and audio.ptime == 30


def test_ptime_limited_by_offered_maxptime() -> None:
    ans, audio = answer(sdp(AUDIO_ONLY + "a=ptime:10\na=maxptime:10\n"))
    assert ans.media[0].ptime == 10
    assert audio.ptime == 10 and audio.remote_maxptime == 10
    ans, audio = answer(sdp(AUDIO_ONLY + "a=ptime:40\n"), ptime=30)
    assert ans.media[0].ptime == 30 and audio.ptime == 40


def test_no_common_codec_is_488() -> None:
    with pytest.raises(SdpError) as info:
        answer(parse("no_common_codec_offer.sdp"))
    assert info.value.status_code == 488
    assert info.value.reason == "Not Acceptable Here"
    assert "no common audio codec" in str(info.value)


def test_only_telephone_event_is_488() -> None:
    with pytest.raises(SdpError) as info:
        answer(sdp(AUDIO_ONLY.replace("RTP/AVP 0 101", "RTP/AVP 101")))
    assert info.value.status_code == 488


def test_no_audio_stream_is_488() -> None:
    offer = sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=video 6000 RTP/AVP 96\n"
                "a=rtpmap:96 VP8/90000\n")
    with pytest.raises(SdpError) as info:
        answer(offer)
    assert info.value.status_code == 488 and "no active audio stream" in str(info.value)
    with pytest.raises(SdpError) as info:
        answer(sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n"))
    assert info.value.status_code == 488


def test_srtp_offer_is_488() -> None:
    offer = sdp(AUDIO_ONLY.replace("RTP/AVP", "RTP/SAVP") + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n")
    with pytest.raises(SdpError) as info:
        answer(offer)
    assert info.value.status_code == 488 and "RTP/SAVP" in str(info.value)


def test_avpf_offer_is_answered_with_the_same_profile() -> None:
    ans, _ = answer(sdp(AUDIO_ONLY.replace("RTP/AVP", "RTP/AVPF")))
    assert ans.media[0].proto == "RTP/AVPF"


def test_missing_connection_is_400() -> None:
    with pytest.raises(SdpError) as info:
        answer(sdp(AUDIO_ONLY.replace("c=IN IP4 10.1.1.1\n", "")))
    assert info.value.status_code == 400


def test_local_misuse_raises_local_error() -> None:
    offer = parse("asterisk_offer.sdp")
    with pytest.raises(LocalError):
        answer(offer, local_direction="both")
    with pytest.raises(LocalError):
        answer(offer, local_codecs=(TELEPHONE_EVENT,))
    with pytest.raises(LocalError):
        answer(offer, local_port=0)
    with pytest.raises(LocalError):
        answer(offer, ptime=0)


# --------------------------------------------------------------------------------------------------
# Our offers and their answers (RFC 3264 §5, §7, §8)
# --------------------------------------------------------------------------------------------------


def make_offer(**kwargs: object) -> SessionDescription:
    params: dict[str, object] = {
        "local_address": "192.0.2.1",
        "local_port": 30000,
        "codecs": LOCAL,
        "session_id": 777,
        "session_version": 1,
    }
    params.update(kwargs)
    return create_offer(**params)  # type: ignore[arg-type]


def test_create_offer_bytes() -> None:
    assert make_offer().serialize() == (
        b"v=0\r\n"
        b"o=- 777 1 IN IP4 192.0.2.1\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_create_offer_rejects_misuse() -> None:
    with pytest.raises(LocalError):
        make_offer(codecs=(PCMU, Codec("PCMA", 8000, payload_type=0)))
    with pytest.raises(LocalError):
        make_offer(codecs=(TELEPHONE_EVENT,))
    with pytest.raises(LocalError):
        make_offer(direction="up")


def test_offer_answered_by_our_own_negotiator() -> None:
    offer = make_offer()
    ans, theirs = answer(SessionDescription.parse(offer.serialize()), local_address="198.51.100.9",
                         local_port=50000, local_codecs=(PCMA, PCMU, TELEPHONE_EVENT))
    ours = process_answer(offer, SessionDescription.parse(ans.serialize()))
    assert ours.codec == theirs.codec == PCMU
    assert (ours.remote_address, ours.remote_port) == ("198.51.100.9", 50000)
    assert ours.telephone_event is not None and ours.telephone_event.payload_type == 101
    assert ours.local_direction == "sendrecv" and ours.ptime == 20


def test_process_answer_from_asterisk_style_agent_phone() -> None:
    offer = make_offer()
    reply = sdp(
        "v=0\no=- 5 5 IN IP4 10.3.3.3\ns=Asterisk\nc=IN IP4 10.3.3.3\nt=0 0\n"
        "m=audio 12000 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-16\na=ptime:30\na=sendrecv\n"
    )
    audio = process_answer(offer, reply)
    assert audio.codec == PCMA
    assert audio.ptime == 30 and audio.remote_ptime == 30


def test_process_answer_renumbered_dynamic_payload_type() -> None:
    offer = make_offer()
    reply = sdp(AUDIO_ONLY.replace("RTP/AVP 0 101", "RTP/AVP 0 96").replace("101", "96"))
    audio = process_answer(offer, reply)
    assert audio.telephone_event is not None and audio.telephone_event.payload_type == 96


def test_process_answer_codec_not_offered_is_488() -> None:
    offer = make_offer(codecs=(PCMU, TELEPHONE_EVENT))
    reply = sdp(AUDIO_ONLY.replace("RTP/AVP 0 101", "RTP/AVP 8 101"))
    with pytest.raises(SdpError) as info:
        process_answer(offer, reply)
    assert info.value.status_code == 488 and "PCMA/8000" in str(info.value)


def test_process_answer_rejected_or_wrong_shape_is_488() -> None:
    offer = make_offer()
    with pytest.raises(SdpError, match="rejected"):
        process_answer(offer, sdp(AUDIO_ONLY.replace("m=audio 5004", "m=audio 0")))
    with pytest.raises(SdpError, match="m-lines"):
        process_answer(offer, sdp(AUDIO_ONLY + "m=video 0 RTP/AVP 96\n"))
    with pytest.raises(SdpError, match="without a codec"):
        process_answer(offer, sdp(AUDIO_ONLY.replace("RTP/AVP 0 101", "RTP/AVP 101")))


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ("sendonly", "recvonly", "sendonly"),
        ("sendrecv", "sendonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendrecv", "sendonly"),  # non-compliant answer: we still only send
    ],
)
def test_process_answer_directions(ours: str, theirs: str, expected: str) -> None:
    audio = process_answer(make_offer(direction=ours), sdp(AUDIO_ONLY + f"a={theirs}\n"))
    assert audio.local_direction == expected


def test_hold_and_resume_reoffer_cycle() -> None:
    """We put an agent leg on hold (RFC 3264 §8.4) and resume it; the o= version goes up each time."""
    offer = make_offer()
    hold = create_reoffer(offer, direction="sendonly")
    assert hold.origin.session_version == 2 and hold.origin.session_id == "777"
    assert hold.media[0].direction == "sendonly"
    assert offer.media[0].direction == "sendrecv"
    peer_answer, peer_view = answer(hold)
    assert peer_answer.media[0].direction == "recvonly" and not peer_view.we_send
    ours = process_answer(hold, peer_answer)
    assert ours.we_send and not ours.we_receive
    resume = create_reoffer(hold, direction="sendrecv", local_port=30002)
    assert resume.origin.session_version == 3 and resume.media[0].port == 30002
    assert process_answer(resume, answer(resume)[0]).local_direction == "sendrecv"


def test_reoffer_without_audio_is_local_error() -> None:
    with pytest.raises(LocalError):
        create_reoffer(sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\n"), direction="sendonly")


# --------------------------------------------------------------------------------------------------
# Robustness: nothing a peer sends raises anything but SdpError
# --------------------------------------------------------------------------------------------------


def _exercise(data: bytes) -> None:
    """Parse and, when it parses, serialize idempotently and negotiate; only SdpError may escape."""
    try:
        desc = SessionDescription.parse(data)
    except SdpError as error:
        assert error.status_code == 400
        return
    once = desc.serialize()
    assert SessionDescription.parse(once).serialize() == once
    for media in desc.media:
        media.codecs()
        _ = (media.ptime, media.maxptime, media.direction, desc.connection_for(media))
    try:
        _, audio = answer(desc)
    except SdpError as error:
        assert error.status_code in (400, 488)
    else:
        assert audio.local_direction in ("sendrecv", "sendonly", "recvonly", "inactive")
    try:
        process_answer(make_offer(), desc)
    except SdpError as error:
        assert error.status_code in (400, 488)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_sdp_error(data: bytes) -> None:
    _exercise(data)


SDP_ALPHABET = "vosiuepcbtrzkamx=: /-.0123456789INPAVTRCMUaudiovideosendrecvonlyinactive\r\n\t\x00\xff"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=SDP_ALPHABET, max_size=300))
def test_sdp_like_text_only_raises_sdp_error(text: str) -> None:
    _exercise(("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n" + text).encode("utf-8", "surrogatepass"))


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    data = bytearray(load(draw(st.sampled_from(ALL_FIXTURES))))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "dup_line", "drop_line"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 10))]
        else:
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(index, lines[index])
            else:
                del lines[index]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_fixture())
def test_mutated_fixtures_only_raise_sdp_error(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=200, deadline=None)
@given(
    codecs=st.lists(st.sampled_from([PCMU, PCMA, TELEPHONE_EVENT, STATIC_PAYLOAD_TYPES[18],
                                     Codec("opus", 48000, 2, payload_type=111)]), min_size=1, unique=True),
    direction=st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]),
    local=st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]),
    ptime=st.sampled_from([10, 20, 30, 60]),
)
def test_offer_answer_agree_on_both_sides(
    codecs: list[Codec], direction: str, local: str, ptime: int
) -> None:
    """Whatever we offer, both sides derive mirrored directions and the same codec (RFC 3264 §6.1)."""
    if all(c.is_telephone_event for c in codecs):
        return
    offer = make_offer(codecs=codecs, direction=direction, ptime=ptime)
    wire = SessionDescription.parse(offer.serialize())
    try:
        ans, theirs = answer(wire, local_direction=local)
    except SdpError as error:
        assert error.status_code == 488
        assert not any(c.same_format(PCMU) or c.same_format(PCMA) for c in codecs)
        return
    ours = process_answer(offer, SessionDescription.parse(ans.serialize()))
    assert ours.codec == theirs.codec
    assert ours.we_send == theirs.we_receive and ours.we_receive == theirs.we_send
    assert theirs.ptime == ptime
    assert (ours.telephone_event is None) == (TELEPHONE_EVENT not in codecs)


def test_media_description_constructor_defaults() -> None:
    media = MediaDescription("audio", 4000, "RTP/AVP", ["0"])
    assert media.port_count is None and media.connection is None and media.attributes == []
    assert media.is_rtp and media.direction is None
