"""RTP port allocation: even RTP ports, RTCP on the next, non-blocking sockets, release and reuse."""

from __future__ import annotations

import socket

import pytest

from mediagw.media.ports import PortAllocator, RtpPortsExhausted


def free_range(width: int = 40) -> tuple[int, int]:
    """A port range that is very likely free: around an ephemeral port the kernel just gave us."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    base = max(1024, min(port, 65535 - width - 2)) & ~1
    return base, base + width - 1


def test_pairs_are_even_and_bound() -> None:
    low, high = free_range()
    ports = PortAllocator(low, high)
    pair = ports.allocate()
    try:
        assert pair.port % 2 == 0 and low <= pair.port < high
        assert pair.rtp.getsockname() == ("127.0.0.1", pair.port)
        assert pair.rtcp.getsockname() == ("127.0.0.1", pair.port + 1)
        assert not pair.rtp.getblocking() and not pair.rtcp.getblocking()
        assert ports.in_use == 1
    finally:
        ports.close()
    assert ports.in_use == 0 and pair.rtp.fileno() == -1


def test_odd_port_min_starts_at_next_even() -> None:
    low, high = free_range()
    ports = PortAllocator(low + 1, high)
    try:
        assert ports.allocate().port == low + 2
    finally:
        ports.close()


def test_exhaustion_and_release_reuses_least_recent() -> None:
    low, _ = free_range()
    ports = PortAllocator(low, low + 5)  # three pairs: low, low + 2, low + 4 (its RTCP on low + 5)
    pairs = [ports.allocate() for _ in range(ports.capacity)]
    assert sorted(p.port for p in pairs) == [low, low + 2, low + 4]
    with pytest.raises(RtpPortsExhausted) as error:
        ports.allocate()
    assert error.value.status_code == 503
    ports.release(pairs[1])
    ports.release(pairs[1])  # idempotent
    again = ports.allocate()
    assert again.port == pairs[1].port
    ports.close()


def test_port_held_elsewhere_is_skipped() -> None:
    low, high = free_range()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", low + 1))  # the RTCP port of the first pair
    ports = PortAllocator(low, high)
    try:
        assert ports.allocate().port == low + 2
    finally:
        ports.close()
        squatter.close()


def test_range_without_a_pair_is_rejected() -> None:
    with pytest.raises(ValueError):
        PortAllocator(20001, 20002)
