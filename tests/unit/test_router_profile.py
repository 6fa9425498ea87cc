"""Contact-center profile sections: loading with config's generic loader, validation with dotted keys, and the
converters to router values.

``mediagw.config`` gets the new fields when the lead applies /tmp/spec/router_wiring.md. Until then these
tests build stand-in classes: config's own classes plus the documented new fields (``cc_classes``), loaded
with config's ``_build``. Once the wiring is in, ``load_cc`` uses ``profile_from_dict`` itself.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any, Literal

import pytest

from mediagw import config
from mediagw.config import _build
from mediagw.errors import ConfigError
from mediagw.router.core import OverflowAction
from mediagw.router.flags import derive_flags, flags_to_headers, read_attributes
from mediagw.router.hours import is_open
from mediagw.router.profile import (
    AfterHoursConfig,
    AttributeConfig,
    FlagHeadersConfig,
    FlagRouteConfig,
    HoursConfig,
    QueueConfig,
    RoutingEntry,
    agent_header_names,
    agent_settings,
    attribute_mappings,
    flag_rules,
    hours_of,
    parse_span,
    queue_order,
    queue_settings,
    resolve_path,
    validate_contact_center,
    whisper_plan,
    whisper_text,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "sip_profiles" / "contact_center_example.toml"
DEFAULT = ROOT / "sip_profiles" / "default.toml"

DEMO_CENTER = """
[[trunks]]
name = "loopback"
sources = ["127.0.0.0/8"]

[[trunks.attributes]]
field = "verified_customer"
header = "X-Verified-Customer"

[[trunks.attributes]]
field = "bad_actor"
header = "X-Bad-Actor"

[[trunks.attributes]]
field = "repeat_customer"
header = "X-Repeat-Customer"

[[queues]]
id = "demo"
name = "Demo Support"
call_type = "Inbound call"
whisper = "call_type"
countdown = true
ring_timeout = 15.0
after_call_work = 5.0
max_size = 10
overflow = "message"
overflow_message = "All our agents are busy and the queue is full. Please call again later. Goodbye."
announcement_text = "Thank you for waiting. An agent will be with you shortly."
announcement_interval = 30.0

[queues.hours]
always_open = true

[[agents]]
id = "agent1"
name = "Demo Agent One"
password = "demo-agent1"
rona_recovery = 60.0
routing = [{ queue = "demo", priority = 1 }]

[[agents]]
id = "agent2"
name = "Demo Agent Two"
password = "demo-agent2"
rona_recovery = 60.0
routing = [{ queue = "demo", priority = 1 }]

[[agents]]
id = "supervisor1"
name = "Demo Supervisor"
password = "demo-supervisor"
role = "supervisor"

[[numbers]]
number = "2000"
action = "queue"
queue = "demo"
"""
"""The demo center of the default profile, as /tmp/spec/router_wiring.md adds it."""


# ------------------------------------------------------------------------------------------ stand-in classes


def _extended(cls: type, extra: dict[str, tuple[Any, Any]], replace: dict[str, Any] | None = None) -> type:
    """``cls`` plus ``extra`` fields ``{name: (type, default)}`` (skipped when ``cls`` has them already), and
    ``replace`` types for existing fields. Annotations written as strings still resolve in mediagw.config."""
    specs: list[tuple[str, Any, Any]] = []
    present = set()
    for item in dataclasses.fields(cls):
        present.add(item.name)
        kwargs: dict[str, Any] = {"metadata": item.metadata}
        if item.default is not dataclasses.MISSING:
            kwargs["default"] = item.default
        if item.default_factory is not dataclasses.MISSING:
            kwargs["default_factory"] = item.default_factory
        specs.append((item.name, (replace or {}).get(item.name, item.type), dataclasses.field(**kwargs)))
    for name, (hint, default) in extra.items():
        if name not in present:
            specs.append((name, hint, dataclasses.field(default=default)))
    made = dataclasses.make_dataclass(f"Test{cls.__name__}", specs, frozen=True, slots=True)
    made.__module__ = config.__name__
    return made


@functools.cache
def cc_classes() -> dict[str, type]:
    """Stand-ins for config's classes with the fields router_wiring.md adds."""
    wired = "queues" in {f.name for f in dataclasses.fields(config.Profile)}
    if wired:
        return {
            "Profile": config.Profile,
            "AgentConfig": config.AgentConfig,
            "NumberConfig": config.NumberConfig,
            "TrunkConfig": config.TrunkConfig,
        }
    agent = _extended(
        config.AgentConfig,
        {
            "routing": (tuple[RoutingEntry, ...], ()),
            "after_call_work": (float | None, None),
            "rona_recovery": (float | None, None),
        },
    )
    number = _extended(
        config.NumberConfig,
        {"queue": (str, "")},
        {"action": Literal["answer", "ring", "echo", "prompt", "reject", "queue"]},
    )
    trunk = _extended(config.TrunkConfig, {"attributes": (tuple[AttributeConfig, ...], ())})
    profile = _extended(
        config.Profile,
        {
            "queues": (tuple[QueueConfig, ...], ()),
            "flag_routes": (tuple[FlagRouteConfig, ...], ()),
            "flag_headers": (FlagHeadersConfig, FlagHeadersConfig()),
        },
        {"agents": tuple[agent, ...], "numbers": tuple[number, ...], "trunks": tuple[trunk, ...]},
    )
    return {"Profile": profile, "AgentConfig": agent, "NumberConfig": number, "TrunkConfig": trunk}


def load_cc(data: dict[str, Any], source: str = "<memory>") -> Any:
    """A profile with the contact-center sections, loaded and validated (config's checks, then ours)."""
    classes = cc_classes()
    if classes["Profile"] is config.Profile:
        return config.profile_from_dict(data, source)
    profile = _build(classes["Profile"], data, source, "")
    profile = dataclasses.replace(profile, source=source)
    config._validate(profile)
    validate_contact_center(profile, source)
    return profile


def load_cc_file(path: Path) -> Any:
    """:func:`load_cc` of a TOML file."""
    return load_cc(tomllib.loads(path.read_text("utf-8")), str(path))


def queue(**values: Any) -> QueueConfig:
    """A QueueConfig built by the loader from a table."""
    return _build(QueueConfig, {"id": "q", **values}, "<test>", "queues[0]")


# ------------------------------------------------------------------------------------------ loading


def test_queue_defaults_from_a_minimal_table() -> None:
    q = queue()
    assert q.whisper == "call_type" and q.whisper_speed == 175 and not q.countdown
    assert q.countdown_text == "your next call begins in 3, 2, 1"
    assert q.max_size == 0 and q.overflow == "reject" and q.overflow_status == 486
    assert q.hours.always_open and q.hours.timezone == "UTC"
    assert q.after_hours.action == "message" and q.after_hours.message_text


def test_nested_tables_load() -> None:
    q = queue(
        hours={
            "timezone": "Europe/Berlin",
            "always_open": False,
            "monday": ["09:00-17:00"],
            "holidays": ["2026-12-24"],
        },
        after_hours={"action": "voicemail", "voicemail_max_seconds": 60},
    )
    assert q.hours.monday == ("09:00-17:00",) and q.hours.holidays == ("2026-12-24",)
    assert q.after_hours.voicemail_max_seconds == 60


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"whsper": "text"}, "queues[0].whsper", "unknown key"),
        ({"whisper": "loud"}, "queues[0].whisper", "is not one of"),
        ({"hours": {"monday": "09:00-17:00"}}, "queues[0].hours.monday", "expected an array"),
        ({"after_hours": {"action": "sing"}}, "queues[0].after_hours.action", "is not one of"),
        ({"countdown": "yes"}, "queues[0].countdown", "true or false"),
    ],
)
def test_structure_errors_name_the_key(values: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        queue(**values)
    assert caught.value.key == key and fragment in caught.value.message


def test_example_profile_loads_and_is_complete() -> None:
    profile = load_cc_file(EXAMPLE)
    ids = [q.id for q in profile.queues]
    assert ids == ["sales", "sales-overflow", "support", "support-emea", "billing", "review"]
    actions = {q.after_hours.action for q in profile.queues if not q.hours.always_open}
    assert actions == {"message", "queue", "transfer", "voicemail"}
    assert {q.overflow for q in profile.queues} == {"reject", "queue", "message"}
    assert [r.flag for r in profile.flag_routes] == ["bad_actor", "unverified"]
    assert all(q.hours.holidays for q in profile.queues if not q.hours.always_open)
    carrier = profile.trunks[0]
    assert [a.field for a in carrier.attributes] == ["verified_customer", "bad_actor", "repeat_customer"]
    agents = {a.id: a for a in profile.agents}
    assert agents["1002"].after_call_work == 15.0 and agents["1003"].rona_recovery == 120.0
    assert agent_settings(agents["1003"]).routing_profile.levels() == (
        ("billing", "support"),
        ("sales-overflow",),
    )
    assert not any(a.password.startswith("demo-") for a in profile.agents)


def test_default_profile_and_demo_center_load() -> None:
    default = tomllib.loads(DEFAULT.read_text("utf-8"))
    profile = load_cc_file(DEFAULT)
    if not profile.queues:  # the wiring is not applied yet: check the block it adds
        for section in ("trunks", "agents"):
            default.pop(section, None)
        data = {**default, **tomllib.loads(DEMO_CENTER)}
        data["numbers"] = default.get("numbers", []) + data["numbers"]
        profile = load_cc(data, str(DEFAULT))
    (demo,) = profile.queues
    assert (
        demo.whisper == "call_type"
        and demo.countdown
        and whisper_text(demo) == "Inbound call of Demo Support"
    )
    number = next(n for n in profile.numbers if n.action == "queue")
    assert number.queue == "demo"
    roles = [a.role for a in profile.agents]
    assert roles.count("agent") == 2 and roles.count("supervisor") == 1
    assert all(a.routing for a in profile.agents if a.role == "agent")
    assert all(address.is_loopback for address in profile.sip.listen_addresses)
    assert len(profile.trunks[0].attributes) == 3


# ------------------------------------------------------------------------------------------ validation


def _center(**changes: Any) -> dict[str, Any]:
    """A small valid center as TOML data; ``changes`` replace top-level sections."""
    data: dict[str, Any] = {
        "trunks": [
            {
                "name": "carrier",
                "sources": ["192.0.2.0/24"],
                "attributes": [{"field": "bad_actor", "header": "X-Bad"}],
            }
        ],
        "queues": [
            {
                "id": "main",
                "hours": {"timezone": "America/New_York", "always_open": False, "monday": ["09:00-17:00"]},
            },
            {"id": "review"},
        ],
        "agents": [
            {"id": "a1", "password": "x", "routing": [{"queue": "main"}, {"queue": "review", "priority": 2}]}
        ],
        "numbers": [{"number": "100", "action": "queue", "queue": "main"}],
        "flag_routes": [{"flag": "bad_actor", "queue": "review"}],
    }
    data.update(changes)
    return data


def _queues(*extra: dict[str, Any], **main: Any) -> list[dict[str, Any]]:
    first = {"id": "main", **main}
    return [first, {"id": "review"}, *extra]


def test_small_center_is_valid() -> None:
    profile = load_cc(_center())
    assert [q.id for q in profile.queues] == ["main", "review"]


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"queues": _queues({"id": "main"})}, "queues[2].id", "duplicate queue"),
        ({"queues": [{"id": "bad id"}]}, "queues[0].id", "not a valid id"),
        (
            {"numbers": [{"number": "1", "action": "queue", "queue": "nope"}]},
            "numbers[0].queue",
            "unknown queue 'nope'",
        ),
        ({"numbers": [{"number": "1", "action": "queue"}]}, "numbers[0].queue", "needs the id"),
        (
            {"numbers": [{"number": "1", "action": "echo", "queue": "main"}]},
            "numbers[0].queue",
            "only used with",
        ),
        (
            {"agents": [{"id": "a", "password": "x", "routing": [{"queue": "gone"}]}]},
            "agents[0].routing[0].queue",
            "unknown queue",
        ),
        (
            {"agents": [{"id": "a", "password": "x", "routing": [{"queue": "main"}, {"queue": "main"}]}]},
            "agents[0].routing[1].queue",
            "listed twice",
        ),
        (
            {"agents": [{"id": "a", "password": "x", "rona_recovery": -1.0}]},
            "agents[0].rona_recovery",
            ">= 0",
        ),
        (
            {"flag_routes": [{"flag": "bad_actor", "queue": "nowhere"}]},
            "flag_routes[0].queue",
            "unknown queue",
        ),
        (
            {"flag_routes": [{"flag": "bad_actor", "queue": "review", "applies_to": ["x"]}]},
            "flag_routes[0].applies_to[0]",
            "unknown queue",
        ),
        (
            {"queues": _queues(overflow="queue", overflow_queue="ghost")},
            "queues[0].overflow_queue",
            "unknown queue",
        ),
        ({"queues": _queues(overflow="queue")}, "queues[0].overflow_queue", "needs overflow_queue"),
        (
            {"queues": _queues(overflow="queue", overflow_queue="main")},
            "queues[0].overflow_queue",
            "into itself",
        ),
        ({"queues": _queues(overflow="message")}, "queues[0].overflow_message", "needs overflow_message"),
        ({"queues": _queues(overflow_status=200)}, "queues[0].overflow_status", "400-699"),
        (
            {
                "queues": [
                    {"id": "a", "overflow": "queue", "overflow_queue": "b"},
                    {"id": "b", "overflow": "queue", "overflow_queue": "a"},
                    {"id": "main"},
                    {"id": "review"},
                ]
            },
            "queues[0].overflow_queue",
            "overflow cycle: a -> b -> a",
        ),
        (
            {"queues": _queues(hours={"timezone": "Mars/Olympus", "always_open": True})},
            "queues[0].hours.timezone",
            "unknown IANA time zone",
        ),
        (
            {"queues": _queues(hours={"always_open": False, "tuesday": ["9-17"]})},
            "queues[0].hours.tuesday[0]",
            "HH:MM-HH:MM",
        ),
        (
            {"queues": _queues(hours={"always_open": False, "friday": ["09:00-25:00"]})},
            "queues[0].hours.friday[0]",
            "23:59",
        ),
        (
            {"queues": _queues(hours={"monday": ["09:00-17:00"]})},
            "queues[0].hours.always_open",
            "ignores the weekly schedule",
        ),
        ({"queues": _queues(hours={"always_open": False})}, "queues[0].hours", "no opening spans"),
        (
            {"queues": _queues(hours={"holidays": ["2026-02-30"]})},
            "queues[0].hours.holidays[0]",
            "YYYY-MM-DD",
        ),
        ({"queues": _queues(whisper="text")}, "queues[0].whisper_text", "needs whisper_text"),
        ({"queues": _queues(whisper="file")}, "queues[0].whisper_file", "needs whisper_file"),
        (
            {"queues": _queues(whisper="file", whisper_file="nope.wav")},
            "queues[0].whisper_file",
            "does not exist",
        ),
        ({"queues": _queues(hold_music="/nonexistent/hold.wav")}, "queues[0].hold_music", "does not exist"),
        ({"queues": _queues(whisper_speed=20)}, "queues[0].whisper_speed", "80-450"),
        ({"queues": _queues(ring_timeout=0.0)}, "queues[0].ring_timeout", "positive"),
        ({"queues": _queues(max_size=-1)}, "queues[0].max_size", ">= 0"),
        (
            {"queues": _queues(after_hours={"action": "voicemail", "voicemail_max_seconds": 0})},
            "queues[0].after_hours.voicemail_max_seconds",
            "positive",
        ),
        ({"queues": _queues(after_hours={"action": "queue"})}, "queues[0].after_hours.queue", "needs queue"),
        (
            {"queues": _queues(after_hours={"action": "queue", "queue": "main"})},
            "queues[0].after_hours.queue",
            "into itself",
        ),
        (
            {"queues": _queues(after_hours={"action": "message", "message_text": " "})},
            "queues[0].after_hours.message_text",
            "needs message_text",
        ),
        (
            {"queues": _queues(after_hours={"action": "transfer", "transfer_target": "+4930"})},
            "queues[0].after_hours.transfer_target",
            "URI",
        ),
        (
            {
                "queues": _queues(
                    after_hours={"action": "transfer", "transfer_target": "sip:x@y", "transfer_mode": "dial"}
                )
            },
            "queues[0].after_hours.transfer_trunk",
            "needs the trunk",
        ),
        (
            {
                "queues": _queues(
                    after_hours={
                        "action": "transfer",
                        "transfer_target": "tel:+4930",
                        "transfer_mode": "dial",
                        "transfer_trunk": "other",
                    }
                )
            },
            "queues[0].after_hours.transfer_trunk",
            "unknown trunk",
        ),
        (
            {
                "queues": [
                    {"id": "main", "after_hours": {"action": "queue", "queue": "review"}},
                    {"id": "review", "after_hours": {"action": "queue", "queue": "main"}},
                ]
            },
            "queues[0].after_hours.queue",
            "after-hours cycle: main -> review -> main",
        ),
        (
            {
                "trunks": [
                    {
                        "name": "t",
                        "sources": ["10.0.0.1"],
                        "attributes": [
                            {"field": "bad_actor", "header": "X-A"},
                            {"field": "bad_actor", "header": "X-B"},
                        ],
                    }
                ]
            },
            "trunks[0].attributes[1].field",
            "mapped twice",
        ),
        (
            {"trunks": [{"name": "t", "sources": ["10.0.0.1"], "attributes": [{"field": "bad_actor"}]}]},
            "trunks[0].attributes[0].header",
            "needs the source header",
        ),
        (
            {
                "trunks": [
                    {
                        "name": "t",
                        "sources": ["10.0.0.1"],
                        "attributes": [{"field": "bad_actor", "header": "X Bad"}],
                    }
                ]
            },
            "trunks[0].attributes[0].header",
            "not a SIP header name",
        ),
        (
            {
                "trunks": [
                    {
                        "name": "t",
                        "sources": ["10.0.0.1"],
                        "attributes": [{"field": "bad_actor", "mode": "static", "value": "maybe"}],
                    }
                ]
            },
            "trunks[0].attributes[0].value",
            "not true or false",
        ),
        (
            {
                "trunks": [
                    {
                        "name": "t",
                        "sources": ["10.0.0.1"],
                        "attributes": [
                            {"field": "bad_actor", "mode": "static", "value": "true", "header": "X"}
                        ],
                    }
                ]
            },
            "trunks[0].attributes[0].header",
            "only used with mode = 'dynamic'",
        ),
        (
            {
                "trunks": [
                    {
                        "name": "t",
                        "sources": ["10.0.0.1"],
                        "attributes": [{"field": "bad_actor", "header": "X", "details": [{"name": "why"}]}],
                    }
                ]
            },
            "trunks[0].attributes[0].details[0]",
            "exactly one of header",
        ),
        (
            {"flag_headers": {"flags": "X-Same", "bad_actor": "x-same"}},
            "flag_headers.bad_actor",
            "also used for flags",
        ),
        ({"flag_headers": {"flags": "X Flags"}}, "flag_headers.flags", "not a SIP header name"),
    ],
)
def test_validation_errors_name_file_and_key(changes: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_cc(_center(**changes), "/etc/mediagw/center.toml")
    assert caught.value.file == "/etc/mediagw/center.toml"
    assert caught.value.key == key, caught.value
    assert fragment in caught.value.message, caught.value


def test_files_resolve_against_the_profile_directory(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "whisper.wav").write_bytes(b"RIFF")
    source = str(tmp_path / "center.toml")
    profile = load_cc(_center(queues=_queues(whisper="file", whisper_file="prompts/whisper.wav")), source)
    plan = whisper_plan(profile.queues[0], source)
    assert plan.file == tmp_path / "prompts" / "whisper.wav" and plan.text is None
    assert resolve_path("/abs/x.wav", source) == Path("/abs/x.wav")
    assert resolve_path("x.wav", "<memory>") == Path("x.wav")


def test_validate_accepts_any_object_shaped_like_a_profile() -> None:
    @dataclasses.dataclass
    class Shape:
        queues: tuple[QueueConfig, ...]
        numbers: tuple[Any, ...] = ()
        agents: tuple[Any, ...] = ()
        trunks: tuple[Any, ...] = ()
        flag_routes: tuple[FlagRouteConfig, ...] = ()
        flag_headers: FlagHeadersConfig = dataclasses.field(default_factory=FlagHeadersConfig)

    validate_contact_center(Shape((queue(),)), "<shape>")
    with pytest.raises(ConfigError, match="flag_routes.0..queue"):
        validate_contact_center(
            Shape((queue(),), flag_routes=(FlagRouteConfig("bad_actor", "x"),)), "<shape>"
        )


# ------------------------------------------------------------------------------------------ converters


def test_queue_settings() -> None:
    settings = queue_settings(
        queue(
            name="Sales",
            ring_timeout=12.0,
            after_call_work=7.0,
            max_size=3,
            overflow="queue",
            overflow_queue="b",
        )
    )
    assert (settings.queue_id, settings.name, settings.ring_timeout, settings.after_call_work) == (
        "q",
        "Sales",
        12.0,
        7.0,
    )
    assert (
        settings.max_size == 3
        and settings.overflow_action is OverflowAction.QUEUE
        and settings.overflow_target == "b"
    )
    unlimited = queue_settings(queue())
    assert unlimited.max_size is None and unlimited.overflow_action is OverflowAction.REJECT
    message = queue_settings(queue(overflow="message", overflow_message="Busy. Goodbye."))
    assert message.overflow_action is OverflowAction.MESSAGE and message.overflow_target == "Busy. Goodbye."
    rejected = queue_settings(queue(max_size=1, overflow_status=503))
    assert rejected.overflow_status == 503


def test_agent_settings_keep_priorities_and_optional_times() -> None:
    agent = _build(
        cc_classes()["AgentConfig"],
        {
            "id": "a",
            "password": "x",
            "routing": [{"queue": "s", "priority": 2}, {"queue": "b"}],
            "rona_recovery": 30.0,
        },
        "<t>",
        "agents[0]",
    )
    settings = agent_settings(agent)
    assert settings.routing_profile.queues == (("s", 2), ("b", 1))
    assert settings.after_call_work is None and settings.rona_recovery == 30.0


def test_hours_of_across_dst_and_holiday() -> None:
    hours = hours_of(
        HoursConfig(
            timezone="America/New_York",
            always_open=False,
            monday=("09:00-17:00",),
            friday=("22:00-24:00",),
            holidays=("2026-12-21",),
        )
    )
    assert hours.weekly[0][0].open == time(9) and hours.weekly[4][0].close == time(0)
    # 13:30 UTC is 08:30 EST before the switch (closed) and 09:30 EDT after it (open).
    assert not is_open(hours, datetime(2026, 3, 2, 13, 30, tzinfo=UTC))
    assert is_open(hours, datetime(2026, 3, 9, 13, 30, tzinfo=UTC))
    assert not is_open(hours, datetime(2026, 12, 21, 15, 0, tzinfo=UTC))  # a Monday holiday
    assert hours_of(HoursConfig()).always_open


def test_parse_span() -> None:
    assert parse_span(" 08:30 - 24:00 ").close == time(0)
    assert parse_span("22:00-06:00").overnight
    with pytest.raises(ValueError):
        parse_span("24:00-06:00")


def test_attribute_mappings_read_headers() -> None:
    trunk = _build(
        cc_classes()["TrunkConfig"],
        {
            "name": "carrier",
            "sources": ["192.0.2.1"],
            "attributes": [
                {
                    "field": "verified_customer",
                    "header": "X-Verified",
                    "details": [{"name": "method", "header": "X-Method"}],
                },
                {"field": "bad_actor", "mode": "static", "value": "false"},
                {
                    "field": "repeat_customer",
                    "header": "X-Repeat",
                    "details": [{"name": "source", "value": "crm"}],
                },
            ],
        },
        "<t>",
        "trunks[0]",
    )
    mappings = attribute_mappings(trunk)
    assert [m.attribute for m in mappings] == ["verified_customer", "bad_actor", "repeat_customer"]
    attributes = read_attributes(
        mappings, {"x-verified": ["yes"], "X-Method": ["pin"], "X-Repeat": ["1"]}, call_id="c1"
    )
    assert attributes == {
        "verified_customer": "true",
        "verified_customer.method": "pin",
        "bad_actor": "false",
        "repeat_customer": "true",
        "repeat_customer.source": "crm",
    }
    assert derive_flags(attributes) == {"verified", "repeat_customer"}


def test_whisper_text_and_plan() -> None:
    assert whisper_text(queue(name="Sales")) == "Inbound call of Sales"
    assert whisper_text(queue(call_type="Callback", name="")) == "Callback of q"
    assert whisper_text(queue(whisper="text", whisper_text=" VIP caller ")) == "VIP caller"
    assert whisper_text(queue(whisper="none")) is None
    plan = whisper_plan(queue(name="Sales", countdown=True, whisper_speed=200, whisper_voice="en-us"))
    assert plan.text == "Inbound call of Sales" and plan.countdown_text == "your next call begins in 3, 2, 1"
    assert (plan.speed, plan.voice, plan.file) == (200, "en-us", None)
    assert whisper_plan(queue()).countdown_text is None


def test_queue_order_puts_overflow_targets_first() -> None:
    a = queue(id="a", overflow="queue", overflow_queue="b")
    b = queue(id="b", overflow="queue", overflow_queue="c")
    c = queue(id="c")
    assert [q.id for q in queue_order([a, b, c])] == ["c", "b", "a"]
    assert [q.id for q in queue_order([c, a, b])] == ["c", "b", "a"]


def test_flag_rules_and_agent_headers() -> None:
    routes = (FlagRouteConfig("bad_actor", "review"), FlagRouteConfig("unverified", "review", ("billing",)))
    assert [r.flag for r in flag_rules(routes, "sales")] == ["bad_actor"]
    assert [r.flag for r in flag_rules(routes, "billing")] == ["bad_actor", "unverified"]
    names = agent_header_names(FlagHeadersConfig(repeat_customer=""))
    assert names == {
        "flags": "X-Mediagw-Flags",
        "verified_customer": "X-Mediagw-Verified-Customer",
        "bad_actor": "X-Mediagw-Bad-Actor",
    }
    assert flags_to_headers({"bad_actor", "unverified"}, {}, names) == [
        ("X-Mediagw-Flags", "bad_actor,unverified"),
        ("X-Mediagw-Verified-Customer", "false"),
        ("X-Mediagw-Bad-Actor", "true"),
    ]
    assert agent_header_names(FlagHeadersConfig(enabled=False)) == {}


def test_after_hours_and_routing_entry_defaults() -> None:
    assert AfterHoursConfig().transfer_mode == "redirect" and AfterHoursConfig().voicemail_max_seconds == 120
    assert RoutingEntry("q").priority == 1
    assert AttributeConfig("bad_actor").mode == "dynamic"
