"""Caller profile flags: reserved attributes read from trunk SIP headers, flags derived from them, and
queue routing on flags.

Theory of operation
===================

A trunk's profile maps SIP headers of the inbound INVITE to three *reserved attributes*:
``verified_customer``, ``bad_actor`` and ``repeat_customer`` (:data:`RESERVED_ATTRIBUTES`). Each mapping
(:class:`AttributeMapping`) has data parameters (:class:`DataParameter`): a field name, and either a source
header (*dynamic*: read from the INVITE) or a *static* value. The field named ``value``
(:data:`VALUE_FIELD`) carries the attribute's truth value; other fields are free-text details kept beside it
(e.g. ``verified_customer.method = "pin"``).

:func:`read_attributes` turns the INVITE's headers into flat contact attributes::

    {"verified_customer": "true", "verified_customer.method": "pin", "bad_actor": "false"}

* Header names are matched case-insensitively (RFC 3261 §7.3.5).
* A repeated header: the last value wins. The caller passes every value in message order. For the boolean
  ``value`` field a comma-separated value counts as repeated values too, because RFC 3261 §7.3.1 makes
  ``X: a`` + ``X: b`` equivalent to ``X: a, b``; free-text fields are taken whole.
* Booleans are read leniently by :func:`read_bool`. An unreadable one (a peer's bad input) leaves the
  attribute out and is logged once, with the Call-ID: :func:`read_attributes` reads each header once per
  call and :func:`derive_flags` never logs.

:func:`derive_flags` turns attributes into the flag set the router and the agent see: ``verified`` or
``unverified`` (exactly one of them; anything but a readable true is unverified), plus ``bad_actor`` and
``repeat_customer`` when true. :func:`flags_to_headers` renders them for the agent's INVITE, and
:func:`route_by_flags` picks a queue from an ordered rule list (first match wins).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mediagw.errors import LocalError

__all__ = [
    "DEFAULT_AGENT_HEADERS",
    "FLAGS",
    "RESERVED_ATTRIBUTES",
    "VALUE_FIELD",
    "AttributeMapping",
    "DataParameter",
    "FlagError",
    "FlagRule",
    "derive_flags",
    "flags_to_headers",
    "last_header_value",
    "read_attributes",
    "read_bool",
    "route_by_flags",
]

logger = logging.getLogger(__name__)

VERIFIED_CUSTOMER = "verified_customer"
BAD_ACTOR = "bad_actor"
REPEAT_CUSTOMER = "repeat_customer"
RESERVED_ATTRIBUTES = (VERIFIED_CUSTOMER, BAD_ACTOR, REPEAT_CUSTOMER)
"""The attributes a trunk may map headers to."""

VERIFIED = "verified"
UNVERIFIED = "unverified"
FLAGS = (UNVERIFIED, VERIFIED, BAD_ACTOR, REPEAT_CUSTOMER)
"""Every flag :func:`derive_flags` can return."""

VALUE_FIELD = "value"
"""The data parameter field that holds a reserved attribute's truth value."""

DEFAULT_AGENT_HEADERS: Mapping[str, str] = {
    "flags": "X-Caller-Flags",
    VERIFIED_CUSTOMER: "X-Verified-Customer",
    BAD_ACTOR: "X-Bad-Actor",
    REPEAT_CUSTOMER: "X-Repeat-Customer",
}
"""Default names for :func:`flags_to_headers`: key ``flags`` is the comma-separated flag list, a reserved
attribute name is its ``true``/``false`` value, and ``attribute.field`` keys (none by default) copy details."""

_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})
_LOGGED_TEXT = 64
"""Characters of an unreadable value quoted in the log (a peer controls it)."""
_TOKEN = re.compile(r"^[!%'*+\-.0-9A-Z^_`a-z|~]+$")
"""RFC 3261 §25.1 token: the characters a header name may use."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class FlagError(LocalError, ValueError):
    """An invalid mapping or rule in the configuration."""


@dataclass(frozen=True, slots=True)
class DataParameter:
    """One field of a reserved attribute: read from ``header`` (dynamic) or fixed to ``value`` (static)."""

    field: str
    """Field name; ``value`` (:data:`VALUE_FIELD`) is the attribute's truth value."""
    header: str | None = None
    """Source SIP header for a dynamic parameter."""
    value: str | None = None
    """The fixed text of a static parameter."""

    def __post_init__(self) -> None:
        if not self.field or "." in self.field:
            raise FlagError(f"data parameter field {self.field!r} must be non-empty and contain no '.'")
        if (self.header is None) == (self.value is None):
            raise FlagError(
                f"data parameter {self.field!r} needs exactly one of header (dynamic) or value (static)"
            )
        if self.header is not None and not _TOKEN.match(self.header):
            raise FlagError(f"data parameter {self.field!r}: {self.header!r} is not a SIP header name")

    @property
    def dynamic(self) -> bool:
        """Whether the value is read from the INVITE."""
        return self.header is not None


@dataclass(frozen=True, slots=True)
class AttributeMapping:
    """How one trunk fills one reserved attribute."""

    attribute: str
    """One of :data:`RESERVED_ATTRIBUTES`."""
    parameters: tuple[DataParameter, ...]
    """Its fields; exactly one is named ``value``."""

    def __post_init__(self) -> None:
        if self.attribute not in RESERVED_ATTRIBUTES:
            raise FlagError(f"{self.attribute!r} is not a reserved attribute {RESERVED_ATTRIBUTES}")
        fields = [p.field for p in self.parameters]
        if len(set(fields)) != len(fields):
            raise FlagError(f"{self.attribute}: a data parameter field appears twice: {fields}")
        if VALUE_FIELD not in fields:
            raise FlagError(f"{self.attribute}: needs a data parameter named {VALUE_FIELD!r}")
        for parameter in self.parameters:
            if (
                parameter.field == VALUE_FIELD
                and parameter.value is not None
                and read_bool(parameter.value) is None
            ):
                raise FlagError(f"{self.attribute}: static value {parameter.value!r} is not a boolean")

    @classmethod
    def from_header(cls, attribute: str, header: str, **details: str) -> AttributeMapping:
        """Shorthand: ``value`` read from ``header``; ``details`` are further fields, each ``"header:X-Name"``
        (dynamic) or a static text."""
        parameters = [DataParameter(VALUE_FIELD, header=header)]
        for name, spec in details.items():
            if spec.startswith("header:"):
                parameters.append(DataParameter(name, header=spec[len("header:") :].strip()))
            else:
                parameters.append(DataParameter(name, value=spec))
        return cls(attribute, tuple(parameters))


@dataclass(frozen=True, slots=True)
class FlagRule:
    """Send contacts carrying ``flag`` to ``queue``."""

    flag: str
    """One of :data:`FLAGS`."""
    queue: str
    """Target queue id."""

    def __post_init__(self) -> None:
        if self.flag not in FLAGS:
            raise FlagError(f"unknown flag {self.flag!r} (known: {', '.join(FLAGS)})")
        if not self.queue:
            raise FlagError(f"rule for flag {self.flag!r} needs a queue")


def read_bool(text: str | None, *, call_id: str | None = None, header: str | None = None) -> bool | None:
    """Read a lenient boolean: true/false, 1/0, yes/no, y/n, on/off, any case, surrounding spaces ignored.

    Returns ``None`` for ``None`` or anything else; when ``call_id`` is given an unreadable text is logged
    (warning) once per call to this function, naming the Call-ID and ``header``.
    """
    if text is None:
        return None
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    if call_id is not None:
        logger.warning(
            "Call-ID %s: %s value %r is not a boolean; ignored",
            call_id,
            header or "header",
            text[:_LOGGED_TEXT],
        )
    return None


def last_header_value(values: Sequence[str], *, split_commas: bool = False) -> str | None:
    """The value that wins among a header's ``values`` (message order): the last one; with
    ``split_commas`` the last comma-separated element of it (RFC 3261 §7.3.1)."""
    if not values:
        return None
    last = values[-1]
    if split_commas:
        last = last.rsplit(",", 1)[-1]
    return last


def read_attributes(
    mappings: Iterable[AttributeMapping], headers: Mapping[str, Sequence[str]], *, call_id: str
) -> dict[str, str]:
    """Reserved attributes of an inbound call, as flat contact attributes.

    ``headers`` maps header names (any case) to all their values in message order. The result has
    ``attribute -> "true" | "false"`` for each readable value field and ``attribute.field -> text`` for the
    other fields that have a value. Unreadable booleans are left out and logged once with ``call_id``.
    """
    folded: dict[str, list[str]] = {}
    for name, values in headers.items():
        folded.setdefault(name.lower(), []).extend(values)
    result: dict[str, str] = {}
    for mapping in mappings:
        for parameter in mapping.parameters:
            is_value = parameter.field == VALUE_FIELD
            if parameter.header is not None:
                text = last_header_value(folded.get(parameter.header.lower(), ()), split_commas=is_value)
                source = parameter.header
            else:
                text = parameter.value
                source = f"static {mapping.attribute}.{parameter.field}"
            if text is None:
                continue
            if is_value:
                flag = read_bool(text, call_id=call_id, header=source)
                if flag is not None:
                    result[mapping.attribute] = "true" if flag else "false"
            else:
                result[f"{mapping.attribute}.{parameter.field}"] = text.strip()
    return result


def derive_flags(attributes: Mapping[str, object]) -> frozenset[str]:
    """Flags of a contact: ``verified`` or ``unverified``, plus ``bad_actor`` / ``repeat_customer`` when true.

    Values may be ``bool`` or text (read with :func:`read_bool`, never logged); anything unreadable or
    missing counts as false.
    """
    flags = {VERIFIED if _truth(attributes.get(VERIFIED_CUSTOMER)) else UNVERIFIED}
    if _truth(attributes.get(BAD_ACTOR)):
        flags.add(BAD_ACTOR)
    if _truth(attributes.get(REPEAT_CUSTOMER)):
        flags.add(REPEAT_CUSTOMER)
    return frozenset(flags)


def flags_to_headers(
    flags: Iterable[str],
    attributes: Mapping[str, object],
    header_names: Mapping[str, str] = DEFAULT_AGENT_HEADERS,
) -> list[tuple[str, str]]:
    """Headers for the agent's INVITE, in ``header_names`` order.

    ``header_names`` keys: ``flags`` (all flags, sorted, comma-separated), a reserved attribute name
    (``true``/``false`` from ``flags``), or ``attribute.field`` (that detail from ``attributes``, omitted
    when absent). Values are cleaned of control characters so that a peer's text cannot inject headers.
    """
    flag_set = frozenset(flags)
    as_flag = {VERIFIED_CUSTOMER: VERIFIED, BAD_ACTOR: BAD_ACTOR, REPEAT_CUSTOMER: REPEAT_CUSTOMER}
    result: list[tuple[str, str]] = []
    for key, header in header_names.items():
        if not _TOKEN.match(header):
            raise FlagError(f"{header!r} is not a SIP header name")
        if key == "flags":
            value = ",".join(sorted(flag_set))
        elif key in as_flag:
            value = "true" if as_flag[key] in flag_set else "false"
        elif key in attributes:
            value = _CONTROL.sub(" ", str(attributes[key])).strip()
        else:
            continue
        result.append((header, value))
    return result


def route_by_flags(rules: Sequence[FlagRule], flags: Iterable[str], default_queue: str) -> str:
    """The queue of the first rule whose flag the contact has, else ``default_queue``."""
    flag_set = frozenset(flags)
    for rule in rules:
        if rule.flag in flag_set:
            return rule.queue
    return default_queue


def _truth(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return read_bool(value) is True
    return False
