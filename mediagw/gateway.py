"""The gateway process: binds the profile's sockets, wires the SIP core to calls, and drains on signals.

Theory of operation: one asyncio loop (uvloop) runs everything. ``SipTransport`` feeds the sans-I/O
``SipEndpoint`` and hands its events to ``Gateway.on_sip_event``, which creates and drives ``Call``
objects (``mediagw.calls``). SIGINT/SIGTERM start a drain: new INVITEs get 503 with Retry-After, calls
in progress are ended with BYE, and once none is left (or ``drain_timeout`` passed) the process exits 0.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from mediagw.admission import Admission
from mediagw.api.events import EventBus
from mediagw.calls import CallManager
from mediagw.config import ListenAddress, Profile
from mediagw.recording.service import RecordingService
from mediagw.router.service import RouterService
from mediagw.sip.auth import AuthThrottle, DigestAuthenticator
from mediagw.sip.endpoint import EndpointConfig, SipEndpoint
from mediagw.sip.registrar import BindingAdded, Registrar
from mediagw.sip.transaction import TimerSettings
from mediagw.sip.transport import SipTransport
from mediagw.store.contacts import ContactStore
from mediagw.store.db import Database
from mediagw.store.models import AuditEntry

logger = logging.getLogger(__name__)


class Gateway:
    """One gateway: the SIP endpoint, its sockets, the registrar, and the calls."""

    def __init__(self, profile: Profile, data_dir: Path | None = None) -> None:
        self.profile = profile
        self.data_dir = Path(data_dir if data_dir is not None else profile.data_dir)
        reg = profile.registrar
        passwords = {agent.id: agent.password for agent in profile.agents}
        self.throttle = AuthThrottle(
            max_failures=reg.max_auth_failures, window=reg.auth_failure_window, block_for=reg.auth_block_seconds
        )
        self.authenticator = DigestAuthenticator(
            profile.realm, passwords.get, algorithms=reg.algorithms, nonce_ttl=reg.nonce_ttl
        )
        self.registrar = Registrar(
            self.authenticator,
            self.throttle,
            min_expires=reg.min_expires,
            max_expires=reg.max_expires,
            default_expires=reg.default_expires,
        )
        self.admission = Admission(profile, self.registrar, self.throttle)
        timers = profile.sip.timers
        self.endpoint = SipEndpoint(
            EndpointConfig(
                user_agent=profile.sip.user_agent,
                timers=TimerSettings(t1=timers.t1, t2=timers.t2, t4=timers.t4),
                max_message_size=profile.sip.max_message_size,
            ),
            registrar=self.registrar,
            policy=self.admission,
        )
        self.transport: SipTransport | None = None
        self.calls = CallManager(self)
        self.bound: list[ListenAddress] = []
        self.stopping = asyncio.Event()
        self.database: Database | None = None
        self.events = EventBus()
        self.api: Any = None
        self.recordings: RecordingService | None = None
        self._audit_tasks: set[asyncio.Task[None]] = set()
        self.contacts: ContactStore | None = None
        self.router: RouterService | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind the listen addresses and start serving."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database = Database(self.profile.store_url(self.data_dir))
        await self.database.create_all()
        self.contacts = ContactStore(self.database)
        await self.contacts.start()
        self.router = RouterService(self.profile, contacts=self.contacts, on_event=self.calls.on_router_event)
        self.recordings = RecordingService(
            self.profile.recording, self.data_dir, self.database, self.calls.media.engine, node=self.profile.name
        )
        recovered = await self.recordings.start()
        if recovered:
            logger.warning("recovered %d interrupted recording(s) after a crash: %s", len(recovered), ", ".join(recovered))
        self.calls.media.tick_hooks.append(self.recordings.on_tick)
        self.calls.recording = self.recordings
        await self._start_api()
        await self.calls.start(self.router)  # the media clock: nothing slow runs on the loop after this
        self.transport = SipTransport(  # SIP last, so that no call arrives before everything is up
            self.endpoint,
            self.on_sip_event,
            max_message_size=self.profile.sip.max_message_size,
            idle_timeout=self.profile.sip.tcp_idle_timeout,
        )
        self.transport.after_pump = self.drain_registrar
        self.bound = await self.transport.start(self.profile.sip.listen_addresses)
        self._housekeeping = asyncio.get_running_loop().create_task(self._expire_bindings())
        logger.info(
            "gateway ready: profile %r on %s, data in %s",
            self.profile.name, ", ".join(str(a) for a in self.bound), self.data_dir,
        )

    def now(self) -> float:
        """The loop's monotonic time, the only clock handed to the sans-I/O cores."""
        return asyncio.get_running_loop().time()

    def pump(self) -> None:
        """Flush what the SIP core queued after a command."""
        if self.transport is not None:
            self.transport.pump()

    async def _start_api(self) -> None:
        from mediagw.api.app import create_app
        from mediagw.api.server import ApiServer
        from mediagw.control import GatewayControlPlane

        app = create_app(GatewayControlPlane(self), self.profile.api.tokens, bus=self.events)
        self.api = ApiServer.from_address(app, self.profile.api.listen)
        await self.api.start()
        logger.info("control API on %s", self.api.url)

    def audit(self, actor: str, action: str, subject_id: str, detail: dict[str, Any],
              subject_type: str = "call") -> None:
        """Append to the audit log in the store (off the caller's path) and publish the event."""
        self.events.publish({"type": action, "actor": actor, "subject": subject_id, **detail})
        if self.database is None:
            return
        entry = AuditEntry(at=time.time(), actor=actor[:64], action=action[:64], subject_type=subject_type[:32],
                           subject_id=subject_id[:128], reason=None, detail=json.dumps(detail, sort_keys=True))

        async def write() -> None:
            assert self.database is not None
            try:
                async with self.database.session() as session:
                    session.add(entry)
            except Exception:  # noqa: BLE001 - an audit write failing must not break a call
                logger.exception("audit entry %s on %s could not be written", action, subject_id)

        task = asyncio.get_running_loop().create_task(write())
        self._audit_tasks.add(task)
        task.add_done_callback(self._audit_tasks.discard)

    def drain_registrar(self) -> None:
        """Registrations are logins: an agent with a binding is available to the router, without one offline."""
        while (event := self.registrar.next_event()) is not None:
            user = event.user
            if self.router is None:
                continue
            now = self.now()
            if isinstance(event, BindingAdded):
                if self.router.agent_registered(user):
                    logger.info("agent %s registered: available", user)
            elif not self.registrar.bindings(user, now) and self.router.agent_unregistered(user):
                logger.info("agent %s has no registration left: offline", user)

    async def _expire_bindings(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.registrar.expire(self.now())
            self.drain_registrar()

    def on_sip_event(self, event: Any) -> None:
        """Route one SIP endpoint event to the calls."""
        self.calls.on_sip_event(event)

    async def drain(self) -> None:
        """Refuse new calls, end the ones in progress, and wait for them to finish."""
        retry_after = self.profile.sip.drain_retry_after
        logger.info("draining: new INVITEs get 503 Retry-After %s, %d call(s) to end", retry_after, len(self.calls))
        self.endpoint.start_draining(retry_after=retry_after)
        self.calls.hangup_all(reason="shutdown")
        self.pump()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.profile.sip.drain_timeout
        while (len(self.calls) or self.endpoint_busy()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if len(self.calls):
            logger.warning("drain timeout: %d call(s) did not end cleanly", len(self.calls))

    def endpoint_busy(self) -> bool:
        """True while the SIP core still has transactions that a BYE is waiting on."""
        busy = getattr(self.endpoint, "has_pending_transactions", None)
        return bool(busy()) if callable(busy) else False

    async def close(self) -> None:
        """Release every socket, stop the call machinery, and flush the store."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self.api is not None:
            await self.api.stop()
        await self.calls.close()
        if self.recordings is not None:
            await self.recordings.close()
        if self._audit_tasks:
            await asyncio.gather(*self._audit_tasks, return_exceptions=True)
        if self.transport is not None:
            await self.transport.close()
        if self.router is not None:
            self.router.close()
        if self.contacts is not None:
            await self.contacts.close()
        if self.database is not None:
            await self.database.dispose()

    async def serve(self) -> None:
        """Run until SIGINT/SIGTERM, then drain and close."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        await self.stopping.wait()
        await self.drain()
        await self.close()
        logger.info("gateway stopped")


def run_gateway(profile: Profile) -> int:
    """Run a gateway on ``profile`` until a signal drains it; returns the exit status."""
    import uvloop

    gateway_holder: list[Gateway] = []

    async def main() -> None:
        gateway = Gateway(profile)
        gateway_holder.append(gateway)
        await gateway.serve()

    try:
        uvloop.run(main())
    except OSError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    return 0
