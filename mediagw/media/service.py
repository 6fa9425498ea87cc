"""The media plane as the calls layer sees it: legs, listen matrix, players, DTMF, timeouts.

Theory of operation: ``MediaService`` owns the RTP port allocator, the ``MediaEngine`` (native batch
RTP I/O, jitter buffers and the mixing matrix) and the one 20 ms ``MediaClock``. The calls layer gives
commands (open a leg, connect it to what SDP negotiated, set who hears whom, play a prompt, send digits)
and receives events through one callback ``on_event(kind, leg, detail)``:

* ``("dtmf", leg, (digit, duration_ms, method))`` for RFC 4733 and SIP INFO digits alike;
* ``("rtp-timeout", leg, idle_seconds)`` when a leg received no RTP for ``[rtp].timeout`` seconds.

Python runs per command and per event, never per packet: the engine ticks on the media clock.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediagw.config import Profile
from mediagw.errors import RemoteError
from mediagw.media.clock import MediaClock
from mediagw.media.dtmf import parse_dtmf_relay
from mediagw.media.engine import DtmfReceived, MediaEngine, PlayerFinished, RtpTimedOut
from mediagw.media.ports import PortAllocator, RtpPortPair
from mediagw.media.prompts import PromptError, PromptLibrary, Voice
from mediagw.sdp import NegotiatedAudio
from mediagw.sip.message import SipRequest

logger = logging.getLogger(__name__)

MediaEventHandler = Callable[[str, "MediaLeg", Any], None]


@dataclass(eq=False)
class MediaLeg:
    """One RTP endpoint of a call leg: its ports, its engine slot once connected, its players."""

    ports: RtpPortPair
    nat: bool
    owner: int | None = None
    """The SIP call handle this leg belongs to (set by the calls layer)."""
    slot: int | None = None
    negotiated: NegotiatedAudio | None = None
    players: dict[int, Callable[[], None] | None] = field(default_factory=dict)
    closed: bool = False

    @property
    def port(self) -> int:
        """The local RTP port (even; RTCP on the next)."""
        return self.ports.port


class MediaService:
    """Legs, bridges and prompts on one media engine and one media clock."""

    def __init__(self, profile: Profile, data_dir: Path, on_event: MediaEventHandler) -> None:
        self.profile = profile
        self.on_event = on_event
        self.ports = PortAllocator(profile.rtp.port_min, profile.rtp.port_max, profile.rtp.address)
        self.engine = MediaEngine(
            rtp_timeout=profile.rtp.timeout,
            jitter_min_frames=profile.rtp.jitter_min_frames,
            jitter_max_frames=profile.rtp.jitter_max_frames,
        )
        self.clock: MediaClock | None = None
        self.prompts = PromptLibrary(data_dir / "prompts")
        self._legs_by_slot: dict[int, MediaLeg] = {}
        self._player_owner: dict[int, MediaLeg] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.tick_hooks: list[Callable[[float], None]] = []
        """Run after every engine tick, before its events are handled (the recording hub hand-off)."""

    async def start(self) -> None:
        """Start the media clock."""
        self.clock = MediaClock(self.engine, on_tick=self._drain_events)
        self.clock.start()

    async def close(self) -> None:
        """Stop the clock and release every port."""
        if self.clock is not None:
            self.clock.stop()
        for task in list(self._tasks):
            task.cancel()
        for leg in list(self._legs_by_slot.values()):
            self.close_leg(leg)
        self.ports.close()

    # -- legs -----------------------------------------------------------------------------------------

    def open_leg(self, *, nat: bool = False) -> MediaLeg:
        """Reserve an RTP/RTCP port pair for a new leg; raises RtpPortsExhausted when the range is full."""
        return MediaLeg(self.ports.allocate(), nat)

    def connect(self, leg: MediaLeg, negotiated: NegotiatedAudio) -> None:
        """Point ``leg`` at what offer/answer agreed (first answer, re-INVITE, hold and resume)."""
        remote: tuple[str, int] | None = (negotiated.remote_address, negotiated.remote_port)
        if negotiated.remote_address in ("0.0.0.0", "::") or negotiated.remote_port == 0:
            remote = None
        te_pt = negotiated.telephone_event.payload_type if negotiated.telephone_event else None
        if leg.slot is None:
            leg.slot = self.engine.add_leg(
                leg.ports.rtp, leg.ports.rtcp, remote, negotiated.codec.payload_type, te_pt, leg.nat
            )
            self._legs_by_slot[leg.slot] = leg
        self.engine.update_leg(
            leg.slot, remote=remote, payload_type=negotiated.codec.payload_type, telephone_event_pt=te_pt,
            send=negotiated.we_send, receive=negotiated.we_receive,
        )
        leg.negotiated = negotiated

    def close_leg(self, leg: MediaLeg) -> None:
        """Remove the leg and its players from the engine and release its ports."""
        if leg.closed:
            return
        leg.closed = True
        for player in list(leg.players):
            self._remove_player(player)
        if leg.slot is not None:
            self.engine.remove(leg.slot)
            self._legs_by_slot.pop(leg.slot, None)
            leg.slot = None
        self.ports.release(leg.ports)

    # -- the listen matrix ----------------------------------------------------------------------------

    def set_listen(self, listener: MediaLeg, sources: Sequence[tuple[MediaLeg | int, float]]) -> None:
        """``listener`` hears exactly ``sources`` (legs or player slots) from the next tick on."""
        if listener.slot is None:
            return
        slots = [(source.slot if isinstance(source, MediaLeg) else source, gain) for source, gain in sources]
        self.engine.set_listen(listener.slot, [(slot, gain) for slot, gain in slots if slot is not None])

    # -- prompts --------------------------------------------------------------------------------------

    def play_pcm(self, leg: MediaLeg, pcm: np.ndarray, *, loop: bool = False,
                 on_finished: Callable[[], None] | None = None) -> int:
        """Play PCM to ``leg`` alone (it hears only the player); returns the player's slot."""
        slot = self.add_player(leg, pcm, loop=loop, on_finished=on_finished)
        self.set_listen(leg, [(slot, 1.0)])
        return slot

    def add_player(self, owner: MediaLeg, pcm: np.ndarray, *, loop: bool = False,
                   on_finished: Callable[[], None] | None = None) -> int:
        """A player that ends with ``owner``; nobody hears it until a listen set names it."""
        slot = self.engine.add_player(pcm, loop)
        owner.players[slot] = on_finished
        self._player_owner[slot] = owner
        return slot

    def stop_player(self, slot: int) -> None:
        """Remove a player before it finished (its ``on_finished`` is not called)."""
        if slot in self._player_owner:
            self._remove_player(slot)

    async def render(self, text: str | None = None, file: str | None = None, voice: Voice | None = None) -> np.ndarray:
        """A prompt as PCM, off the event loop: an audio file, or text spoken by espeak-ng (cached)."""
        if file:
            return await self.prompts.load_async(file)
        return await self.prompts.speak_async(text or "", voice or Voice())

    def play_text(self, leg: MediaLeg, text: str, *, voice: Voice | None = None,
                  on_finished: Callable[[], None] | None = None) -> None:
        """Render ``text`` off the loop (cached), then play it to ``leg``."""

        async def render_and_play() -> None:
            try:
                pcm = await self.prompts.speak_async(text, voice or Voice())
            except PromptError as exc:
                logger.error("prompt %r cannot be played: %s", text, exc)
                if on_finished is not None:
                    on_finished()
                return
            if not leg.closed:
                self.play_pcm(leg, pcm, on_finished=on_finished)

        task = asyncio.get_running_loop().create_task(render_and_play())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remove_player(self, slot: int) -> None:
        leg = self._player_owner.pop(slot, None)
        if leg is not None:
            leg.players.pop(slot, None)
        self.engine.remove(slot)

    # -- DTMF -----------------------------------------------------------------------------------------

    def send_dtmf(self, leg: MediaLeg, digits: str, duration_ms: int = 160) -> None:
        """Send ``digits`` as RFC 4733 events on ``leg``."""
        if leg.slot is not None:
            for digit in digits:
                self.engine.send_dtmf(leg.slot, digit, duration_ms)

    def info_received(self, leg: MediaLeg, request: SipRequest, call_id: str) -> None:
        """A SIP INFO on the leg's dialog: application/dtmf-relay (and application/dtmf) become DTMF events."""
        content_type = (request.content_type or "").lower()
        if content_type not in ("application/dtmf-relay", "application/dtmf"):
            return
        try:
            received = parse_dtmf_relay(request.body.decode("utf-8", "replace"), content_type)
        except RemoteError as exc:
            logger.warning("unreadable DTMF INFO body (%s), Call-ID %s", exc, call_id)
            return
        self.on_event("dtmf", leg, (received.digit, received.duration_ms, "info"))

    # -- engine events --------------------------------------------------------------------------------

    def _drain_events(self, now: float) -> None:
        for hook in self.tick_hooks:
            hook(now)
        for event in self.engine.events():
            if isinstance(event, PlayerFinished):
                owner = self._player_owner.get(event.slot)
                callback = owner.players.get(event.slot) if owner is not None else None
                self._remove_player(event.slot)
                if callback is not None:
                    callback()
                continue
            leg = self._legs_by_slot.get(event.slot)
            if leg is None:
                continue
            if isinstance(event, DtmfReceived):
                self.on_event("dtmf", leg, (event.digit, event.duration_ms, "rfc4733"))
            elif isinstance(event, RtpTimedOut):
                self.on_event("rtp-timeout", leg, event.idle_seconds)
