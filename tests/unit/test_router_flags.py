"""Caller profile flags: lenient booleans, last header wins, derivation, agent headers, routing on flags."""

from __future__ import annotations

import logging

import pytest

from mediagw.router.flags import (
    AttributeMapping,
    DataParameter,
    FlagError,
    FlagRule,
    derive_flags,
    flags_to_headers,
    last_header_value,
    read_attributes,
    read_bool,
    route_by_flags,
)


@pytest.mark.parametrize(
    "text", ["true", "TRUE", " True ", "1", "yes", "YES", "y", "Y", "on", "On", "\ttrue\r\n"]
)
def test_read_bool_true(text: str) -> None:
    assert read_bool(text) is True


@pytest.mark.parametrize("text", ["false", "False", " FALSE", "0", "no", "NO", "n", "off", " Off "])
def test_read_bool_false(text: str) -> None:
    assert read_bool(text) is False


@pytest.mark.parametrize("text", ["", "  ", "maybe", "2", "tru", "yes please", "t", "-1", "nope"])
def test_read_bool_unreadable_is_none(text: str) -> None:
    assert read_bool(text) is None


def test_read_bool_logs_unreadable_once_with_the_call_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mediagw.router.flags"):
        assert read_bool("maybe", call_id="abc@host", header="X-Verified") is None
        assert read_bool("maybe") is None  # no Call-ID: nothing to log against
        assert read_bool("yes", call_id="abc@host") is True
    assert len(caplog.records) == 1
    assert "abc@host" in caplog.records[0].getMessage()
    assert "X-Verified" in caplog.records[0].getMessage()


def test_last_header_value() -> None:
    assert last_header_value([]) is None
    assert last_header_value(["a", "b"]) == "b"
    assert last_header_value(["true, false"], split_commas=True) == " false"
    assert last_header_value(["a, b"]) == "a, b"


MAPPINGS = (
    AttributeMapping.from_header("verified_customer", "X-Verified", method="header:X-Verify-Method"),
    AttributeMapping.from_header("bad_actor", "X-Bad-Actor"),
    AttributeMapping(
        "repeat_customer", (DataParameter("value", value="yes"), DataParameter("source", value="crm"))
    ),
)


def test_read_attributes_last_header_wins_and_names_are_case_insensitive() -> None:
    headers = {
        "x-verified": ["false", "TRUE"],
        "X-VERIFY-METHOD": ["pin", " voiceprint "],
        "X-Bad-Actor": ["yes, no"],
    }
    attributes = read_attributes(MAPPINGS, headers, call_id="c1@h")
    assert attributes == {
        "verified_customer": "true",
        "verified_customer.method": "voiceprint",
        "bad_actor": "false",
        "repeat_customer": "true",
        "repeat_customer.source": "crm",
    }
    assert derive_flags(attributes) == {"verified", "repeat_customer"}


def test_read_attributes_unreadable_value_is_left_out_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mediagw.router.flags"):
        attributes = read_attributes(MAPPINGS, {"X-Verified": ["true", "perhaps"]}, call_id="c2@h")
        flags = derive_flags(attributes)
    assert "verified_customer" not in attributes
    assert flags == {"unverified", "repeat_customer"}
    assert [r.getMessage().count("c2@h") for r in caplog.records] == [1]


def test_derive_flags() -> None:
    assert derive_flags({}) == {"unverified"}
    assert derive_flags({"verified_customer": "false"}) == {"unverified"}
    assert derive_flags({"verified_customer": "garbage"}) == {"unverified"}
    assert derive_flags({"verified_customer": True, "bad_actor": "Y"}) == {"verified", "bad_actor"}
    assert derive_flags({"bad_actor": "on", "repeat_customer": "1"}) == {
        "unverified",
        "bad_actor",
        "repeat_customer",
    }


def test_mapping_validation() -> None:
    with pytest.raises(FlagError, match="reserved"):
        AttributeMapping.from_header("vip", "X-Vip")
    with pytest.raises(FlagError, match="exactly one"):
        DataParameter("value")
    with pytest.raises(FlagError, match="exactly one"):
        DataParameter("value", header="X-A", value="true")
    with pytest.raises(FlagError, match="named 'value'"):
        AttributeMapping("bad_actor", (DataParameter("reason", value="x"),))
    with pytest.raises(FlagError, match="not a boolean"):
        AttributeMapping("bad_actor", (DataParameter("value", value="sometimes"),))
    with pytest.raises(FlagError, match="SIP header name"):
        DataParameter("value", header="X Bad: header")
    with pytest.raises(FlagError, match="unknown flag"):
        FlagRule("vip", "q")


def test_flags_to_headers_default_and_configured_names() -> None:
    flags = derive_flags({"verified_customer": "true", "bad_actor": "true"})
    assert flags_to_headers(flags, {}) == [
        ("X-Caller-Flags", "bad_actor,verified"),
        ("X-Verified-Customer", "true"),
        ("X-Bad-Actor", "true"),
        ("X-Repeat-Customer", "false"),
    ]
    names = {
        "verified_customer": "X-Cust-Verified",
        "verified_customer.method": "X-Cust-Method",
        "zz.x": "X-None",
    }
    attributes = {"verified_customer.method": "pin\r\nX-Injected: 1"}
    assert flags_to_headers(flags, attributes, names) == [
        ("X-Cust-Verified", "true"),
        ("X-Cust-Method", "pin X-Injected: 1"),
    ]


def test_route_by_flags_first_matching_rule_wins() -> None:
    rules = [
        FlagRule("bad_actor", "review"),
        FlagRule("verified", "priority"),
        FlagRule("repeat_customer", "loyal"),
    ]
    assert route_by_flags(rules, {"verified", "bad_actor"}, "general") == "review"
    assert route_by_flags(rules, {"verified", "repeat_customer"}, "general") == "priority"
    assert route_by_flags(rules, {"unverified", "repeat_customer"}, "general") == "loyal"
    assert route_by_flags(rules, {"unverified"}, "general") == "general"
    assert route_by_flags([], {"bad_actor"}, "general") == "general"
