"""RFC 3261 §12 dialogs: creation, route sets, in-dialog requests, CSeq rules, target refresh."""
from __future__ import annotations

import pytest

from mediagw.errors import LocalError, SipProtocolError
from mediagw.sip.dialog import Dialog, DialogId, DialogState
from mediagw.sip.message import SipRequest, SipResponse, build_response, parse_message

VIA = "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-new;rport"

INVITE = (
    b"INVITE sip:queue@10.0.0.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-1\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=alice-tag\r\n'
    b"To: <sip:queue@example.com>\r\n"
    b"Call-ID: dlg-1@10.0.0.9\r\n"
    b"CSeq: 101 INVITE\r\n"
    b"Contact: <sip:alice@10.0.0.9:5060>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def parsed_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def our_invite(record_route: str = "") -> SipRequest:
    return SipRequest.new(
        "INVITE", "sip:agent@10.0.0.50", via=VIA, from_="<sip:gw@example.com>;tag=ours",
        to="<sip:agent@example.com>", call_id="out-1", cseq=7, contact="<sip:gw@10.0.0.2:5060>",
    )


def answer_from_peer(invite: SipRequest, status: int = 200, *, to_tag: str = "theirs",
                     record_route: tuple[str, ...] = (), contact: str | None = "<sip:agent@10.0.0.50:5062>") -> SipResponse:
    headers = [("Record-Route", rr) for rr in record_route]
    if contact:
        headers.append(("Contact", contact))
    return build_response(invite, status, to_tag=to_tag, headers=headers)


def test_uas_dialog_from_invite_and_our_2xx() -> None:
    invite = parsed_request(INVITE)
    ok = build_response(invite, 200, to_tag="gw-tag", headers=[("Contact", "<sip:gw@10.0.0.2>")])
    dialog = Dialog.create_uas(invite, ok)
    assert dialog.id == DialogId("dlg-1@10.0.0.9", "gw-tag", "alice-tag")
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.remote_target) == "sip:alice@10.0.0.9:5060"
    # §12.1.1: the UAS keeps the Record-Route order
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert dialog.remote_cseq == 101 and dialog.local_cseq is None
    assert dialog.remote_uri.display_name == "Alice"
    assert dialog.local_uri.uri.user == "queue"
    assert not dialog.secure


def test_uas_early_dialog_from_provisional() -> None:
    invite = parsed_request(INVITE)
    ringing = build_response(invite, 180, to_tag="gw-tag")
    assert Dialog.create_uas(invite, ringing).state is DialogState.EARLY
    with pytest.raises(LocalError):
        Dialog.create_uas(invite, build_response(invite, 180))  # no To tag: our bug


def test_uac_dialog_reverses_record_route() -> None:
    invite = our_invite()
    ok = answer_from_peer(invite, record_route=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    dialog = Dialog.create_uac(invite, ok)
    assert dialog.id == DialogId("out-1", "ours", "theirs")
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.local_cseq == 7 and dialog.remote_cseq is None
    assert str(dialog.remote_target) == "sip:agent@10.0.0.50:5062"


def test_uac_early_dialog_confirmed_by_2xx() -> None:
    invite = our_invite()
    early = Dialog.create_uac(invite, answer_from_peer(invite, 183, contact=None))
    assert early.state is DialogState.EARLY
    assert str(early.remote_target) == "sip:agent@10.0.0.50"  # no Contact yet: the Request-URI
    ok = answer_from_peer(invite, 200, record_route=("<sip:edge.example.com;lr>",))
    early.confirm(ok)
    assert early.state is DialogState.CONFIRMED
    assert early.route_set == ["<sip:edge.example.com;lr>"]  # §13.2.2.4 recomputed from the 2xx
    assert str(early.remote_target) == "sip:agent@10.0.0.50:5062"


def test_uac_2xx_without_contact_or_tag_is_protocol_error() -> None:
    invite = our_invite()
    with pytest.raises(SipProtocolError):
        Dialog.create_uac(invite, answer_from_peer(invite, 200, contact=None))
    with pytest.raises(SipProtocolError):
        Dialog.create_uac(invite, build_response(invite, 200, headers=[("Contact", "<sip:x@y>")]))


def test_in_dialog_request_loose_routing() -> None:
    invite = parsed_request(INVITE)
    ok = build_response(invite, 200, to_tag="gw-tag")
    dialog = Dialog.create_uas(invite, ok)
    bye = dialog.create_request("BYE", via=VIA)
    # §12.2.1.1: loose route -> Request-URI is the remote target, Route carries the route set
    assert str(bye.uri) == "sip:alice@10.0.0.9:5060"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.from_tag == "gw-tag" and bye.to_tag == "alice-tag"
    assert bye.headers.get("From") == "<sip:queue@example.com>;tag=gw-tag"
    assert bye.headers.get("To") == '"Alice" <sip:alice@example.com>;tag=alice-tag'
    assert bye.call_id == "dlg-1@10.0.0.9"
    assert bye.cseq == (1, "BYE")  # UAS side: local CSeq starts when we first send
    info = dialog.create_request("INFO", via=VIA, body=b"Signal=5\r\n", content_type="application/dtmf-relay")
    assert info.cseq == (2, "INFO") and info.content_type == "application/dtmf-relay"
    assert parse_message(info.serialize()).body == b"Signal=5\r\n"


def test_in_dialog_request_strict_routing() -> None:
    invite = our_invite()
    ok = answer_from_peer(invite, record_route=("<sip:strict.example.com>",))
    dialog = Dialog.create_uac(invite, ok)
    reinvite = dialog.create_request("INVITE", via=VIA, contact="<sip:gw@10.0.0.2>")
    # strict: first route -> Request-URI, remote target appended as last Route
    assert str(reinvite.uri) == "sip:strict.example.com"
    assert reinvite.headers.get_all("Route") == ["<sip:agent@10.0.0.50:5062>"]
    assert reinvite.cseq == (8, "INVITE")


def test_ack_for_2xx_reuses_invite_cseq() -> None:
    invite = our_invite()
    dialog = Dialog.create_uac(invite, answer_from_peer(invite))
    ack = dialog.create_request("ACK", via=VIA, cseq=invite.cseq[0])
    assert ack.cseq == (7, "ACK") and ack.to_tag == "theirs"
    assert dialog.local_cseq == 7  # not advanced
    with pytest.raises(LocalError):
        dialog.create_request("ACK", via=VIA)
    with pytest.raises(LocalError):
        dialog.create_request("INVITE", via=VIA)  # target refresh needs a Contact


def test_remote_cseq_rule() -> None:
    invite = parsed_request(INVITE)
    dialog = Dialog.create_uas(invite, build_response(invite, 200, to_tag="gw-tag"))

    def in_dialog(method: str, cseq: int) -> SipRequest:
        return SipRequest.new(
            method, "sip:gw@10.0.0.2", via="SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-x",
            from_="<sip:alice@example.com>;tag=alice-tag", to="<sip:queue@example.com>;tag=gw-tag",
            call_id="dlg-1@10.0.0.9", cseq=cseq,
        )

    assert dialog.check_request(in_dialog("INFO", 102)) is None
    assert dialog.remote_cseq == 102
    assert dialog.check_request(in_dialog("INFO", 90)) == 500  # §12.2.2 lower -> 500
    assert dialog.check_request(in_dialog("ACK", 101)) is None  # ACK carries its INVITE's number
    assert dialog.remote_cseq == 102


def test_target_refresh() -> None:
    invite = parsed_request(INVITE)
    dialog = Dialog.create_uas(invite, build_response(invite, 200, to_tag="gw-tag"))
    reinvite = SipRequest.new(
        "INVITE", "sip:gw@10.0.0.2", via="SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-y",
        from_="<sip:alice@example.com>;tag=alice-tag", to="<sip:queue@example.com>;tag=gw-tag",
        call_id="dlg-1@10.0.0.9", cseq=102, contact="<sip:alice@198.51.100.7:6000>",
    )
    dialog.refresh_target(reinvite)
    assert str(dialog.remote_target) == "sip:alice@198.51.100.7:6000"
    assert str(dialog.next_hop) == "sip:p1.example.com;lr"


def test_terminated_dialog_refuses_new_requests() -> None:
    invite = parsed_request(INVITE)
    dialog = Dialog.create_uas(invite, build_response(invite, 200, to_tag="gw-tag"))
    dialog.terminate()
    with pytest.raises(LocalError):
        dialog.create_request("INFO", via=VIA)
    assert dialog.create_request("BYE", via=VIA).method == "BYE"
