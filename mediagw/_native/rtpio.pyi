"""Native RTP batch I/O (native/rtpio.pyx); driven by mediagw.media.engine.MediaEngine."""
from typing import Any

CODEC_PCMU: int
CODEC_PCMA: int
CODEC_PCM: int
CODEC_NONE: int
EVENT_DTMF: int  # (EVENT_DTMF, slot, event code 0..15, duration in timestamp units)
EVENT_TIMEOUT: int  # (EVENT_TIMEOUT, slot, idle seconds, 0)
EVENT_SSRC: int  # (EVENT_SSRC, slot, old ssrc, new ssrc)
EVENT_PLAYER_DONE: int  # (EVENT_PLAYER_DONE, slot, 0, 0)

class RtpCore:
    """Every RTP leg and player of the process; the shared arrays are the mixing kernel's inputs/outputs."""

    ticks: int
    packets_in: int
    packets_out: int
    octets_in: int
    octets_out: int
    rtcp_in: int
    syscalls_rx: int
    syscalls_tx: int
    send_errors: int
    time_rx: float
    time_playout: float
    time_tx: float
    last_packets_in: int
    last_packets_out: int

    def __init__(
        self,
        max_slots: int,
        jitter_min_frames: int,
        jitter_max_frames: int,
        rtp_timeout: float,
        codes: Any,  # uint8[max_slots, 160]
        in_codec: Any,  # uint8[max_slots]
        pcm_in: Any,  # int16[max_slots, 160]
        out_codec: Any,  # uint8[max_slots]
        out_codes: Any,  # uint8[max_slots, 160]
        out_pcm: Any,  # int16[max_slots, 160]
        connect_sockets: bool = False,
    ) -> None: ...
    def add_leg(
        self,
        rtp_fd: int,
        rtcp_fd: int,
        family: int,
        remote: tuple[str, int] | None,
        payload_type: int,
        telephone_event_pt: int,
        latch: bool,
        ssrc: int,
        sequence_number: int,
        timestamp: int,
    ) -> int: ...
    def update_leg(
        self,
        slot: int,
        remote: tuple[str, int] | None = None,
        payload_type: int = -1,
        telephone_event_pt: int = -2,
        send: int = -1,
        receive: int = -1,
    ) -> None: ...
    def add_player(self, pcm: Any, loop: bool) -> int: ...
    def remove(self, slot: int) -> None: ...
    def send_dtmf(self, slot: int, event: int, duration: int) -> None: ...
    def set_tap(self, slot: int, received: bool, sent: bool) -> None: ...
    def is_leg(self, slot: int) -> bool: ...
    def in_use(self, slot: int) -> bool: ...
    @property
    def slots_high(self) -> int: ...
    @property
    def slots_used(self) -> int: ...
    @property
    def legs(self) -> int: ...
    def leg_stats(self, slot: int) -> dict[str, Any]: ...
    def pop_events(self) -> list[tuple[int, int, Any, Any]]: ...
    def receive(self, now: float) -> int: ...
    def transmit(self, now: float) -> int: ...
