"""The contact-center sections of a profile: queues, hours, after-hours deflection, routing entries, trunk
attribute mappings and flag routing, plus the checks ``mediagw check`` runs on them.

Theory of operation
===================

Every class here is a frozen dataclass that :mod:`mediagw.config` builds with its generic loader
(``_build`` / ``_convert`` walk the type hints), so the TOML layout follows the field names::

    [[queues]]
    id = "support"
    name = "Support"
    whisper = "call_type"          # "{call type} of {queue name}" is spoken to the agent
    countdown = true               # then "your next call begins in 3, 2, 1"
    [queues.hours]
    timezone = "Europe/Berlin"
    always_open = false
    monday = ["08:00-18:00"]
    holidays = ["2026-12-25"]
    [queues.after_hours]
    action = "voicemail"
    voicemail_max_seconds = 120

The fields that extend :mod:`mediagw.config`'s own classes (``NumberConfig.queue``, ``AgentConfig.routing``,
``TrunkConfig.attributes``, ``Profile.queues`` ...) are declared there and typed with the classes below.
Only ``str``, ``int``, ``float``, ``bool``, ``Literal``, tuples and nested dataclasses are used (plus
``float | None`` for "not set"), and everything optional has a default.

:func:`validate_contact_center` runs after the structure is built (it is called from ``config._validate``)
and raises :class:`~mediagw.errors.ConfigError` with a dotted key for anything that the loader cannot see:
references between sections, time zones, schedule strings, holiday dates, files, overflow and after-hours
cycles. The converters at the bottom turn the configuration into the router's own values
(:class:`~mediagw.router.core.QueueSettings`, :class:`~mediagw.router.core.AgentSettings`,
:class:`~mediagw.router.hours.Hours`, :class:`~mediagw.router.flags.AttributeMapping`).

Relative file names (whisper, hold music, announcements, after-hours messages) are resolved against the
directory of the profile file (:func:`resolve_path`); for a profile that is not a file (the embedded
default, a dict in a test) against the working directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

from mediagw.errors import ConfigError
from mediagw.router.core import AgentSettings, OverflowAction, QueueSettings, RouterError, RoutingProfile
from mediagw.router.flags import (
    DEFAULT_AGENT_HEADERS,
    FLAGS,
    RESERVED_ATTRIBUTES,
    VALUE_FIELD,
    AttributeMapping,
    DataParameter,
    FlagError,
    FlagRule,
    read_bool,
)
from mediagw.router.hours import WEEKDAYS, Hours, HoursError, OpenSpan

__all__ = [
    "DEFAULT_COUNTDOWN_TEXT",
    "AfterHoursConfig",
    "AttributeConfig",
    "AttributeDetailConfig",
    "FlagHeadersConfig",
    "FlagRouteConfig",
    "HoursConfig",
    "QueueConfig",
    "RoutingEntry",
    "WhisperPlan",
    "agent_header_names",
    "agent_settings",
    "attribute_mappings",
    "flag_rules",
    "hours_of",
    "parse_span",
    "queue_order",
    "queue_settings",
    "resolve_path",
    "validate_contact_center",
    "whisper_plan",
    "whisper_text",
]

DEFAULT_COUNTDOWN_TEXT = "your next call begins in 3, 2, 1"
"""What the agent hears after the whisper when the queue's countdown is on."""

DEFAULT_WHISPER_SPEED = 175
"""espeak-ng's default reading speed, in words per minute."""
WHISPER_SPEED_RANGE = (80, 450)
"""Reading speeds espeak-ng accepts (``-s``), words per minute."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
"""Queue ids appear in URLs (``/queues/{id}``) and in the store: a short, URL-safe token."""
_HEADER_TOKEN = re.compile(r"^[!%'*+\-.0-9A-Z^_`a-z|~]+$")
"""RFC 3261 §25.1 token: the characters a header name may use."""
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_URI = re.compile(r"^(sips?|tel):\S+$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------- classes


@dataclass(frozen=True, slots=True)
class HoursConfig:
    """Hours of operation of a queue: a weekly schedule in an IANA time zone, holidays, or 24 hours.

    Each weekday lists spans ``"HH:MM-HH:MM"`` in local wall-clock time; a span whose end is not after its
    start runs overnight into the next day (``"22:00-06:00"``, ``"00:00-24:00"`` is the whole day). A queue
    without an ``[hours]`` table is open around the clock; a weekly schedule needs ``always_open = false``.
    """

    timezone: str = "UTC"
    always_open: bool = True
    monday: tuple[str, ...] = ()
    tuesday: tuple[str, ...] = ()
    wednesday: tuple[str, ...] = ()
    thursday: tuple[str, ...] = ()
    friday: tuple[str, ...] = ()
    saturday: tuple[str, ...] = ()
    sunday: tuple[str, ...] = ()
    holidays: tuple[str, ...] = ()
    """Local dates ``YYYY-MM-DD`` closed all day (also for ``always_open`` queues)."""

    def day(self, index: int) -> tuple[str, ...]:
        """The spans of weekday ``index`` (Monday = 0)."""
        spans: tuple[str, ...] = getattr(self, WEEKDAYS[index])
        return spans


@dataclass(frozen=True, slots=True)
class AfterHoursConfig:
    """What a queue does with a caller outside its hours (the deflection)."""

    action: Literal["message", "queue", "transfer", "voicemail"] = "message"
    """``message``: play it, then hang up; ``queue``: send the caller to ``queue`` (whose own hours apply);
    ``transfer``: to ``transfer_target``; ``voicemail``: record a message of the caller."""
    message_text: str = "We are closed at the moment. Please call again during our opening hours. Goodbye."
    """Spoken (espeak-ng) for ``message`` when ``message_file`` is empty."""
    message_file: str = ""
    """Audio file played for ``message`` instead of ``message_text``."""
    queue: str = ""
    """Target queue id for ``queue``."""
    transfer_target: str = ""
    """SIP or TEL URI for ``transfer``, e.g. ``sip:+4930123456@carrier.example.net``."""
    transfer_mode: Literal["redirect", "dial"] = "redirect"
    """``redirect``: answer the INVITE with 302 Moved Temporarily and Contact ``transfer_target``;
    ``dial``: answer, dial ``transfer_target`` out through ``transfer_trunk`` and bridge the two."""
    transfer_trunk: str = ""
    """Trunk name (``[[trunks]].name``) used for ``dial``."""
    voicemail_max_seconds: int = 120
    """Longest voicemail message; the recording stops (and the call ends) at this length."""
    voicemail_prompt_text: str = (
        "We are closed at the moment. Please leave a message after the tone, and we will call you back."
    )
    """Spoken before the tone when ``voicemail_prompt_file`` is empty."""
    voicemail_prompt_file: str = ""
    """Audio file played before the tone instead of ``voicemail_prompt_text``."""


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue: routing settings, what agents and callers hear, size limit, hours and deflection."""

    id: str
    """Unique id, a URL-safe token (``[A-Za-z0-9][A-Za-z0-9_.-]*``)."""
    name: str = ""
    """Display name: dashboard and whisper; the id when empty."""
    call_type: str = "Inbound call"
    """First half of the ``call_type`` whisper: "{call type} of {queue name}"."""
    whisper: Literal["call_type", "text", "file", "none"] = "call_type"
    """What the agent hears after answering, before the caller is bridged."""
    whisper_text: str = ""
    """Free text for ``whisper = "text"``."""
    whisper_file: str = ""
    """Audio file for ``whisper = "file"``."""
    whisper_speed: int = DEFAULT_WHISPER_SPEED
    """Reading speed of spoken whispers and the countdown, words per minute (espeak-ng ``-s``)."""
    whisper_voice: str = ""
    """espeak-ng voice (``-v``), e.g. ``en-us``; empty for the default voice."""
    countdown: bool = False
    """After the whisper, the agent hears ``countdown_text`` before the bridge."""
    countdown_text: str = DEFAULT_COUNTDOWN_TEXT
    """The countdown, spoken at ``whisper_speed``."""
    ring_timeout: float = 20.0
    """Seconds an agent's phone rings before the offer is cancelled (CANCEL) and the agent goes RONA."""
    after_call_work: float = 0.0
    """Seconds of after-call work for agents that do not set their own."""
    decline_reoffer_delay: float = 10.0
    """Seconds a contact declined by an agent is kept away from that agent."""
    max_size: int = 0
    """Most contacts waiting or ringing at once; 0 is unlimited."""
    overflow: Literal["reject", "queue", "message"] = "reject"
    """What a caller who finds the queue full gets: a SIP error (``overflow_status``), another queue
    (``overflow_queue``), or a message then hang-up (``overflow_message`` / ``overflow_message_file``)."""
    overflow_queue: str = ""
    """Target queue id for ``overflow = "queue"``."""
    overflow_message: str = ""
    """Spoken text for ``overflow = "message"``."""
    overflow_message_file: str = ""
    """Audio file for ``overflow = "message"`` (wins over ``overflow_message``)."""
    overflow_status: int = 486
    """SIP status for ``overflow = "reject"`` (486 Busy Here, RFC 3261 §21.4.24)."""
    hold_music: str = ""
    """Audio file looped while the caller waits; empty: a generated gentle tone loop."""
    announcement_text: str = ""
    """Spoken to the waiting caller every ``announcement_interval`` seconds."""
    announcement_file: str = ""
    """Audio file played instead of ``announcement_text``."""
    announcement_interval: float = 0.0
    """Seconds between announcements (the first one after this long in the queue); 0 is off."""
    hours: HoursConfig = field(default_factory=HoursConfig)
    """Hours of operation; open around the clock when absent."""
    after_hours: AfterHoursConfig = field(default_factory=AfterHoursConfig)
    """The deflection outside the hours."""
    recording: bool = False
    """Record the calls this queue connects."""
    recording_format: Literal["", "wav", "wav-mono", "opus"] = ""
    """File format of this queue's recordings; empty: [recording].format."""
    recording_targets: tuple[str, ...] = ()
    """[recording] target names to export to; empty: every configured target."""

    @property
    def display_name(self) -> str:
        """``name``, or the id when empty."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class RoutingEntry:
    """One queue of an agent's routing profile; lower priority numbers are served first."""

    queue: str
    priority: int = 1


@dataclass(frozen=True, slots=True)
class AttributeDetailConfig:
    """A free-text detail kept beside a reserved attribute (``verified_customer.method``): from a header
    (dynamic) or a fixed value (static)."""

    name: str
    """Field name; becomes the contact attribute ``ATTRIBUTE.NAME``."""
    header: str = ""
    """Source SIP header (dynamic)."""
    value: str = ""
    """Fixed text (static), when ``header`` is empty."""


@dataclass(frozen=True, slots=True)
class AttributeConfig:
    """How a trunk fills one reserved attribute from the inbound INVITE.

    ``mode = "dynamic"`` reads the truth value from ``header`` (``true``/``false``, ``1``/``0``,
    ``yes``/``no`` ...); ``mode = "static"`` sets it to ``value`` for every call on the trunk.
    """

    field: Literal["verified_customer", "bad_actor", "repeat_customer"]
    header: str = ""
    mode: Literal["dynamic", "static"] = "dynamic"
    value: str = ""
    details: tuple[AttributeDetailConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class FlagHeadersConfig:
    """Header names that carry the caller's flags on the INVITE that rings the agent; empty omits one."""

    enabled: bool = True
    flags: str = "X-Mediagw-Flags"
    """All flags, comma-separated (``bad_actor,repeat_customer,verified``)."""
    verified_customer: str = "X-Mediagw-Verified-Customer"
    bad_actor: str = "X-Mediagw-Bad-Actor"
    repeat_customer: str = "X-Mediagw-Repeat-Customer"


@dataclass(frozen=True, slots=True)
class FlagRouteConfig:
    """Send callers carrying ``flag`` to ``queue`` (first matching rule wins; before the hours check)."""

    flag: Literal["verified", "unverified", "bad_actor", "repeat_customer"]
    queue: str
    applies_to: tuple[str, ...] = ()
    """Queue ids whose callers this rule redirects; empty: every queue."""


@dataclass(frozen=True, slots=True)
class WhisperPlan:
    """What an agent hears between answering and the bridge, ready for the prompt layer."""

    text: str | None
    """Text to speak, or ``None``."""
    file: Path | None
    """Audio file to play instead, or ``None``."""
    speed: int
    """Words per minute for spoken parts."""
    voice: str
    """espeak-ng voice, empty for the default."""
    countdown_text: str | None
    """The countdown to speak after the whisper, or ``None`` when off."""


# --------------------------------------------------------------------------------------------------- paths


def resolve_path(path: str, source: str) -> Path:
    """``path`` as given when absolute, else relative to the directory of the profile file ``source``
    (the working directory when ``source`` is not a file, e.g. ``<memory>``)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    if source and not source.startswith("<"):
        return Path(source).parent / candidate
    return candidate


# --------------------------------------------------------------------------------------------------- checks


def parse_span(text: str) -> OpenSpan:
    """Parse ``"HH:MM-HH:MM"`` (``24:00`` allowed as the end); raises :class:`HoursError`."""
    match = _SPAN.match(text)
    if match is None:
        raise HoursError(f"{text!r} is not a span HH:MM-HH:MM")
    open_hour, open_minute, close_hour, close_minute = (int(part) for part in match.groups())
    if (close_hour, close_minute) == (24, 0):
        close_hour = 0  # "until midnight": a close <= open runs into the next day (hours.py)
    if open_hour > 23 or close_hour > 23 or open_minute > 59 or close_minute > 59:
        raise HoursError(f"{text!r}: times run from 00:00 to 23:59 (24:00 only as the end)")
    return OpenSpan(time(open_hour, open_minute), time(close_hour, close_minute))


def validate_contact_center(profile: Any, file: str) -> None:
    """Check queues, hours, deflection, routing, trunk attributes and flag routing of ``profile``.

    ``profile`` is a :class:`mediagw.config.Profile` (any object with ``queues``, ``flag_routes``,
    ``flag_headers``, ``numbers``, ``agents`` and ``trunks`` shaped like it). Raises
    :class:`~mediagw.errors.ConfigError` naming ``file`` and the dotted key of the first problem.
    """
    queues: Sequence[QueueConfig] = tuple(getattr(profile, "queues", ()))
    by_id: dict[str, QueueConfig] = {}
    for index, queue in enumerate(queues):
        key = f"queues[{index}]"
        if not _ID.match(queue.id):
            raise ConfigError(
                file, f"{key}.id", f"{queue.id!r} is not a valid id (letters, digits, '_', '.', '-')"
            )
        if queue.id in by_id:
            raise ConfigError(file, f"{key}.id", f"duplicate queue {queue.id!r}")
        by_id[queue.id] = queue
    trunk_names = {trunk.name for trunk in getattr(profile, "trunks", ())}
    for index, queue in enumerate(queues):
        _check_queue(queue, f"queues[{index}]", by_id, trunk_names, file)
    _check_cycles(queues, file)
    for index, number in enumerate(getattr(profile, "numbers", ())):
        target = getattr(number, "queue", "")
        key = f"numbers[{index}]"
        if number.action == "queue":
            _check_ref(target, by_id, f"{key}.queue", file, "needs the id of the queue callers go to")
        elif target:
            raise ConfigError(
                file, f"{key}.queue", f"is only used with action = 'queue' (action is {number.action!r})"
            )
    for index, agent in enumerate(getattr(profile, "agents", ())):
        _check_agent(agent, f"agents[{index}]", by_id, file)
    for index, trunk in enumerate(getattr(profile, "trunks", ())):
        _check_trunk(trunk, f"trunks[{index}]", file)
    for index, route in enumerate(getattr(profile, "flag_routes", ())):
        key = f"flag_routes[{index}]"
        if route.flag not in FLAGS:
            raise ConfigError(file, f"{key}.flag", f"{route.flag!r} is not one of {', '.join(FLAGS)}")
        _check_ref(route.queue, by_id, f"{key}.queue", file, "needs a queue id")
        for source_index, source in enumerate(route.applies_to):
            _check_ref(source, by_id, f"{key}.applies_to[{source_index}]", file, "needs a queue id")
    headers = getattr(profile, "flag_headers", None)
    if headers is not None:
        seen: dict[str, str] = {}
        for name in ("flags", *RESERVED_ATTRIBUTES):
            header = getattr(headers, name)
            if not header:
                continue
            if not _HEADER_TOKEN.match(header):
                raise ConfigError(file, f"flag_headers.{name}", f"{header!r} is not a SIP header name")
            if header.lower() in seen:
                raise ConfigError(
                    file, f"flag_headers.{name}", f"{header!r} is also used for {seen[header.lower()]}"
                )
            seen[header.lower()] = name


def _check_ref(target: str, by_id: Mapping[str, QueueConfig], key: str, file: str, empty: str) -> None:
    if not target:
        raise ConfigError(file, key, empty)
    if target not in by_id:
        known = ", ".join(sorted(by_id)) or "none"
        raise ConfigError(file, key, f"unknown queue {target!r} (queues: {known})")


def _check_file(path: str, key: str, file: str) -> None:
    if path and not resolve_path(path, file).is_file():
        raise ConfigError(
            file, key, f"file {path!r} does not exist (relative names start at the profile's directory)"
        )


def _check_seconds(value: float, key: str, file: str, *, positive: bool = False) -> None:
    if positive and not value > 0:
        raise ConfigError(file, key, "must be a positive number of seconds")
    if not value >= 0 or value == float("inf"):
        raise ConfigError(file, key, "must be a number of seconds >= 0")


def _check_queue(
    queue: QueueConfig, key: str, by_id: Mapping[str, QueueConfig], trunks: set[str], file: str
) -> None:
    _check_seconds(queue.ring_timeout, f"{key}.ring_timeout", file, positive=True)
    _check_seconds(queue.after_call_work, f"{key}.after_call_work", file)
    _check_seconds(queue.decline_reoffer_delay, f"{key}.decline_reoffer_delay", file)
    _check_seconds(queue.announcement_interval, f"{key}.announcement_interval", file)
    if queue.max_size < 0:
        raise ConfigError(file, f"{key}.max_size", "must be >= 0 (0 is unlimited)")
    low, high = WHISPER_SPEED_RANGE
    if not low <= queue.whisper_speed <= high:
        raise ConfigError(file, f"{key}.whisper_speed", f"must be {low}-{high} words per minute")
    if queue.whisper == "call_type" and not (queue.call_type.strip() or queue.display_name.strip()):
        raise ConfigError(file, f"{key}.call_type", "the call_type whisper needs a call type or a queue name")
    if queue.whisper == "text" and not queue.whisper_text.strip():
        raise ConfigError(file, f"{key}.whisper_text", "whisper = 'text' needs whisper_text")
    if queue.whisper == "file" and not queue.whisper_file:
        raise ConfigError(file, f"{key}.whisper_file", "whisper = 'file' needs whisper_file")
    if queue.countdown and not queue.countdown_text.strip():
        raise ConfigError(file, f"{key}.countdown_text", "must not be empty while countdown is on")
    for name in ("whisper_file", "hold_music", "announcement_file", "overflow_message_file"):
        _check_file(getattr(queue, name), f"{key}.{name}", file)
    if queue.overflow == "queue":
        _check_ref(
            queue.overflow_queue,
            by_id,
            f"{key}.overflow_queue",
            file,
            "overflow = 'queue' needs overflow_queue",
        )
        if queue.overflow_queue == queue.id:
            raise ConfigError(file, f"{key}.overflow_queue", "a queue cannot overflow into itself")
    elif queue.overflow == "message" and not (queue.overflow_message.strip() or queue.overflow_message_file):
        raise ConfigError(
            file,
            f"{key}.overflow_message",
            "overflow = 'message' needs overflow_message or overflow_message_file",
        )
    if queue.overflow == "reject" and not 400 <= queue.overflow_status <= 699:
        raise ConfigError(file, f"{key}.overflow_status", "must be a SIP error status 400-699")
    _check_hours(queue.hours, f"{key}.hours", file)
    _check_after_hours(queue, f"{key}.after_hours", by_id, trunks, file)


def _check_hours(hours: HoursConfig, key: str, file: str) -> None:
    try:
        Hours(hours.timezone)
    except HoursError as exc:
        raise ConfigError(file, f"{key}.timezone", str(exc)) from None
    any_span = False
    for day_index, day in enumerate(WEEKDAYS):
        for span_index, text in enumerate(hours.day(day_index)):
            try:
                parse_span(text)
            except HoursError as exc:
                raise ConfigError(file, f"{key}.{day}[{span_index}]", str(exc)) from None
            any_span = True
    if hours.always_open and any_span:
        raise ConfigError(
            file, f"{key}.always_open", "is true, which ignores the weekly schedule; set it to false"
        )
    if not hours.always_open and not any_span:
        raise ConfigError(
            file,
            key,
            'has no opening spans: add some (e.g. monday = ["09:00-17:00"]) or set always_open = true',
        )
    for index, text in enumerate(hours.holidays):
        try:
            date.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(
                file, f"{key}.holidays[{index}]", f"{text!r} is not a date YYYY-MM-DD"
            ) from None


def _check_after_hours(
    queue: QueueConfig, key: str, by_id: Mapping[str, QueueConfig], trunks: set[str], file: str
) -> None:
    after = queue.after_hours
    for name in ("message_file", "voicemail_prompt_file"):
        _check_file(getattr(after, name), f"{key}.{name}", file)
    if after.action == "message" and not (after.message_text.strip() or after.message_file):
        raise ConfigError(
            file, f"{key}.message_text", "action = 'message' needs message_text or message_file"
        )
    if after.action == "queue":
        _check_ref(after.queue, by_id, f"{key}.queue", file, "action = 'queue' needs queue")
        if after.queue == queue.id:
            raise ConfigError(file, f"{key}.queue", "a queue cannot deflect into itself")
    if after.action == "transfer":
        if not _URI.match(after.transfer_target):
            raise ConfigError(
                file, f"{key}.transfer_target", f"{after.transfer_target!r} is not a sip:, sips: or tel: URI"
            )
        if after.transfer_mode == "dial":
            if not after.transfer_trunk:
                raise ConfigError(
                    file,
                    f"{key}.transfer_trunk",
                    "transfer_mode = 'dial' needs the trunk to dial out through",
                )
            if after.transfer_trunk not in trunks:
                raise ConfigError(file, f"{key}.transfer_trunk", f"unknown trunk {after.transfer_trunk!r}")
    if after.action == "voicemail" and after.voicemail_max_seconds <= 0:
        raise ConfigError(file, f"{key}.voicemail_max_seconds", "must be a positive number of seconds")


def _check_cycles(queues: Sequence[QueueConfig], file: str) -> None:
    """Overflow chains and after-hours queue chains must end: a cycle is an error naming the first queue."""
    index_of = {queue.id: index for index, queue in enumerate(queues)}
    by_id = {queue.id: queue for queue in queues}
    chains: tuple[tuple[str, str], ...] = (
        ("overflow_queue", "overflow"),
        ("after_hours.queue", "after-hours"),
    )
    for attribute, what in chains:
        for queue in queues:
            path = [queue.id]
            current: QueueConfig | None = queue
            while current is not None:
                target = _next_in_chain(current, attribute)
                if target is None:
                    break
                if target in path:
                    cycle = " -> ".join([*path[path.index(target) :], target])
                    raise ConfigError(
                        file, f"queues[{index_of[queue.id]}].{attribute}", f"{what} cycle: {cycle}"
                    )
                path.append(target)
                current = by_id.get(target)


def _next_in_chain(queue: QueueConfig, attribute: str) -> str | None:
    if attribute == "overflow_queue":
        return queue.overflow_queue if queue.overflow == "queue" and queue.overflow_queue else None
    after = queue.after_hours
    return after.queue if after.action == "queue" and after.queue else None


def _check_agent(agent: Any, key: str, by_id: Mapping[str, QueueConfig], file: str) -> None:
    seen: set[str] = set()
    for index, entry in enumerate(getattr(agent, "routing", ())):
        _check_ref(entry.queue, by_id, f"{key}.routing[{index}].queue", file, "needs a queue id")
        if entry.queue in seen:
            raise ConfigError(file, f"{key}.routing[{index}].queue", f"queue {entry.queue!r} is listed twice")
        seen.add(entry.queue)
    for name in ("after_call_work", "rona_recovery"):
        value = getattr(agent, name, None)
        if value is not None:
            _check_seconds(value, f"{key}.{name}", file)


def _check_trunk(trunk: Any, key: str, file: str) -> None:
    seen: set[str] = set()
    for index, attribute in enumerate(getattr(trunk, "attributes", ())):
        where = f"{key}.attributes[{index}]"
        if attribute.field in seen:
            raise ConfigError(file, f"{where}.field", f"{attribute.field!r} is mapped twice on this trunk")
        seen.add(attribute.field)
        if attribute.mode == "dynamic":
            if not attribute.header:
                raise ConfigError(file, f"{where}.header", "mode = 'dynamic' needs the source header")
            if attribute.value:
                raise ConfigError(file, f"{where}.value", "is only used with mode = 'static'")
            if not _HEADER_TOKEN.match(attribute.header):
                raise ConfigError(file, f"{where}.header", f"{attribute.header!r} is not a SIP header name")
        else:
            if attribute.header:
                raise ConfigError(file, f"{where}.header", "is only used with mode = 'dynamic'")
            if read_bool(attribute.value) is None:
                raise ConfigError(file, f"{where}.value", f"{attribute.value!r} is not true or false")
        names: set[str] = set()
        for detail_index, detail in enumerate(attribute.details):
            detail_key = f"{where}.details[{detail_index}]"
            if detail.name in names or detail.name == VALUE_FIELD:
                raise ConfigError(file, f"{detail_key}.name", f"{detail.name!r} is reserved or listed twice")
            names.add(detail.name)
            if bool(detail.header) == bool(detail.value):
                raise ConfigError(file, detail_key, "needs exactly one of header (dynamic) or value (static)")
        try:
            _mapping(attribute)
        except FlagError as exc:
            raise ConfigError(file, where, str(exc)) from None


# ------------------------------------------------------------------------------------------------ converters


def queue_settings(queue: QueueConfig) -> QueueSettings:
    """The router's settings of ``queue``. Raises :class:`RouterError` for values the router refuses."""
    if queue.overflow == "queue":
        action, target = OverflowAction.QUEUE, queue.overflow_queue or None
    elif queue.overflow == "message":
        action, target = OverflowAction.MESSAGE, queue.overflow_message_file or queue.overflow_message or None
    else:
        action, target = OverflowAction.REJECT, None
    return QueueSettings(
        queue_id=queue.id,
        name=queue.name,
        ring_timeout=queue.ring_timeout,
        after_call_work=queue.after_call_work,
        max_size=queue.max_size or None,
        overflow_action=action,
        overflow_target=target,
        overflow_status=queue.overflow_status,
        decline_reoffer_delay=queue.decline_reoffer_delay,
    )


def agent_settings(agent: Any) -> AgentSettings:
    """The router's settings of an agent entry (``id``, ``routing``, ``after_call_work``, ``rona_recovery``).

    ``after_call_work`` unset (``None``) uses each queue's; ``rona_recovery`` unset means RONA lasts until
    it is cleared through the API.
    """
    routing: Iterable[RoutingEntry] = getattr(agent, "routing", ())
    return AgentSettings(
        agent_id=agent.id,
        routing_profile=RoutingProfile(tuple((entry.queue, entry.priority) for entry in routing)),
        after_call_work=getattr(agent, "after_call_work", None),
        rona_recovery=getattr(agent, "rona_recovery", None),
    )


def hours_of(hours: HoursConfig) -> Hours:
    """The :class:`~mediagw.router.hours.Hours` of a queue's ``[hours]`` table; raises :class:`HoursError`."""
    weekly = tuple(tuple(parse_span(text) for text in hours.day(index)) for index in range(7))
    holidays = frozenset(date.fromisoformat(text.strip()) for text in hours.holidays)
    return Hours(hours.timezone, weekly, holidays, hours.always_open)


def _mapping(attribute: AttributeConfig) -> AttributeMapping:
    if attribute.mode == "dynamic":
        value = DataParameter(VALUE_FIELD, header=attribute.header)
    else:
        value = DataParameter(VALUE_FIELD, value=attribute.value)
    details = tuple(
        DataParameter(d.name, header=d.header) if d.header else DataParameter(d.name, value=d.value)
        for d in attribute.details
    )
    return AttributeMapping(attribute.field, (value, *details))


def attribute_mappings(trunk: Any) -> list[AttributeMapping]:
    """The reserved-attribute mappings of a trunk entry (its ``attributes``), for
    :func:`~mediagw.router.flags.read_attributes`."""
    return [_mapping(attribute) for attribute in getattr(trunk, "attributes", ())]


def flag_rules(routes: Iterable[FlagRouteConfig], queue_id: str | None = None) -> list[FlagRule]:
    """Rules for :func:`~mediagw.router.flags.route_by_flags`, in profile order; with ``queue_id`` only those
    that apply to callers headed for that queue."""
    return [
        FlagRule(route.flag, route.queue)
        for route in routes
        if queue_id is None or not route.applies_to or queue_id in route.applies_to
    ]


def agent_header_names(headers: FlagHeadersConfig | None) -> dict[str, str]:
    """``header_names`` for :func:`~mediagw.router.flags.flags_to_headers`; empty when disabled."""
    if headers is None:
        return dict(DEFAULT_AGENT_HEADERS)
    if not headers.enabled:
        return {}
    names = {"flags": headers.flags}
    for attribute in RESERVED_ATTRIBUTES:
        names[attribute] = getattr(headers, attribute)
    return {key: value for key, value in names.items() if value}


def whisper_text(queue: QueueConfig) -> str | None:
    """The spoken whisper of ``queue``: "{call type} of {queue name}", the free text, or ``None`` (a file
    whisper or none)."""
    if queue.whisper == "call_type":
        call_type, name = queue.call_type.strip(), queue.display_name.strip()
        return f"{call_type} of {name}" if call_type and name else (call_type or name or None)
    if queue.whisper == "text":
        return queue.whisper_text.strip() or None
    return None


def whisper_plan(queue: QueueConfig, source: str = "<memory>") -> WhisperPlan:
    """Whisper and countdown of ``queue`` for the prompt layer; files resolved against ``source``."""
    return WhisperPlan(
        text=whisper_text(queue),
        file=resolve_path(queue.whisper_file, source)
        if queue.whisper == "file" and queue.whisper_file
        else None,
        speed=queue.whisper_speed,
        voice=queue.whisper_voice,
        countdown_text=(queue.countdown_text.strip() or None) if queue.countdown else None,
    )


def queue_order(queues: Sequence[QueueConfig]) -> list[QueueConfig]:
    """``queues`` ordered so that every overflow target comes before the queues overflowing into it (the
    order :meth:`Router.add_queue` needs). Raises :class:`RouterError` on a cycle."""
    by_id = {queue.id: queue for queue in queues}
    ordered: list[QueueConfig] = []
    done: set[str] = set()
    for queue in queues:
        chain: list[QueueConfig] = []
        current: QueueConfig | None = queue
        while current is not None and current.id not in done:
            if current in chain:
                raise RouterError(f"overflow cycle through queue {current.id!r}")
            chain.append(current)
            target = _next_in_chain(current, "overflow_queue")
            current = by_id.get(target) if target else None
        for item in reversed(chain):
            ordered.append(item)
            done.add(item.id)
    return ordered
