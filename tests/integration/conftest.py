"""Fixtures for integration tests: a gateway process on free loopback ports and pjsua2 peers."""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import GatewayProcess, PjsuaPeer, free_port, free_rtp_range, write_profile


class GatewayFactory:
    """Starts gateways on fresh profiles; stops them all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.gateways: list[GatewayProcess] = []

    def __call__(self, **profile_kwargs: object) -> GatewayProcess:
        workdir = self.tmp_path / f"gw{len(self.gateways)}"
        workdir.mkdir()
        sip_port = free_port()
        api_port = free_port(socket.SOCK_STREAM, both=False)
        profile = write_profile(
            workdir / "profile.toml", sip_port=sip_port, rtp_range=free_rtp_range(), api_port=api_port,
            **profile_kwargs,  # type: ignore[arg-type]
        )
        gateway = GatewayProcess(workdir, profile, sip_port, api_port)
        self.gateways.append(gateway)
        return gateway

    def stop_all(self) -> None:
        for gateway in self.gateways:
            gateway.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> GatewayProcess:
    return start_gateway()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Callable[..., PjsuaPeer]]:
    started: list[PjsuaPeer] = []

    def make(name: str, **kwargs: object) -> PjsuaPeer:
        peer = PjsuaPeer(name, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(peer)
        return peer

    yield make
    for peer in started:
        peer.stop()
