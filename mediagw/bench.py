"""Benchmarks of the media path (timings are reported here, never asserted in tests).

``python -m mediagw.bench mix``
    One tick of decode + mix + encode for single bridges of 2, 3 and 5 participants and for 1,000 such
    bridges at once: the compiled kernel against the numpy reference, with the ratio.

``python -m mediagw.bench rtp --calls 1000 --seconds 10``
    The RTP engine under load on 127.0.0.1. A gateway process runs ``MediaEngine`` on its ``MediaClock``
    with one bridge per call (two legs, each hearing the other); a generator process (itself a
    ``MediaEngine`` with two looping tone players, 440 Hz for the A sides and 1,000 Hz for the B sides)
    sends two RTP streams per call at 50 packets/s each and counts what comes back. Reported: packets/s
    through the gateway, loss in both directions (RFC 3550 expected vs received), late ticks (> one tick)
    and the largest lateness, the CPU time of the gateway process and the engine's phase timings
    (``MediaEngine.figures()``), plus a check that each side hears the other's tone.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FRAME = 160
TICK = 0.02


# ---- mix ----------------------------------------------------------------------------------------------


def _bridges(bridges: int, participants: int, seed: int = 1) -> dict[str, Any]:
    """Kernel inputs for ``bridges`` bridges of ``participants`` slots each, everyone hearing the others."""
    from mediagw.media import mix

    rng = np.random.default_rng(seed)
    n = bridges * participants
    codes = rng.integers(0, 256, size=(n, FRAME), dtype=np.uint8)
    in_codec = rng.integers(0, 2, size=n, dtype=np.uint8)  # PCMU / PCMA mixed: transcoding included
    out_codec = rng.integers(0, 2, size=n, dtype=np.uint8)
    triples = [
        (b * participants + i, b * participants + j, 4096)
        for b in range(bridges)
        for i in range(participants)
        for j in range(participants)
        if i != j
    ]
    row_ptr, col, gain = mix.listen_matrix(n, triples)
    return {
        "codes": codes,
        "in_codec": in_codec,
        "row_ptr": row_ptr,
        "col": col,
        "gain": gain,
        "out_codec": out_codec,
        "out_codes": np.zeros((n, FRAME), dtype=np.uint8),
    }


def _time_per_call(fn: Any, budget: float = 0.5, min_calls: int = 3) -> float:
    """Median seconds per call of ``fn()`` over about ``budget`` seconds."""
    fn()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        if len(samples) >= 10000:
            break
    return float(np.median(samples))


def bench_mix() -> int:
    """Print compiled vs reference tick times for the bridge sizes of the requirement."""
    from mediagw._native import mix as kernel
    from mediagw.media import mix

    print("decode + mix + encode of one 20 ms tick (median); PCMU/PCMA mixed, everyone hears the others")
    print(
        f"{'bridges':>8} {'parties':>8} {'slots':>7} {'compiled us':>12} {'reference us':>13} {'ratio':>7} "
        f"{'compiled % of tick':>19}"
    )
    for bridges in (1, 1000):
        for participants in (2, 3, 5):
            a = _bridges(bridges, participants)

            def compiled(a: dict[str, Any] = a) -> None:
                kernel.mix_tick(
                    a["codes"],
                    a["in_codec"],
                    a["row_ptr"],
                    a["col"],
                    a["gain"],
                    a["out_codec"],
                    a["out_codes"],
                )

            def reference(a: dict[str, Any] = a) -> None:
                mix.reference.mix_tick(
                    a["codes"],
                    a["in_codec"],
                    a["row_ptr"],
                    a["col"],
                    a["gain"],
                    a["out_codec"],
                    out_codes=a["out_codes"],
                )

            t_compiled = _time_per_call(compiled)
            t_reference = _time_per_call(reference)
            print(
                f"{bridges:>8} {participants:>8} {bridges * participants:>7} {t_compiled * 1e6:>12.1f} "
                f"{t_reference * 1e6:>13.1f} {t_reference / t_compiled:>6.1f}x "
                f"{100 * t_compiled / TICK:>18.2f}%"
            )
    return 0


# ---- rtp ----------------------------------------------------------------------------------------------


def _pin(cpu: int | None) -> None:
    """Keep this process on one CPU (the engine is meant to run on one core); no-op where unsupported."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})
        except OSError:
            pass


def _raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = hard if hard == resource.RLIM_INFINITY else max(soft, min(hard, needed))
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        raise SystemExit(f"RLIMIT_NOFILE is {soft} (hard {hard}); {needed} descriptors are needed")
    return soft


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()


def _run_clock(
    engine: Any, seconds: float, start_at: float, probe: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Tick ``engine`` on a MediaClock from wall time ``start_at`` for ``seconds``; returns clock figures.
    ``probe`` runs once, after the tick in the middle of the run."""
    from mediagw.media.clock import MediaClock

    loop = _event_loop()
    asyncio.set_event_loop(loop)

    async def main() -> dict[str, Any]:
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        middle = max(1, int(seconds / 0.02) // 2)

        def on_tick(now: float) -> None:
            engine.events()  # drained as the gateway's calls layer would
            if probe is not None and clock.figures.ticks + 1 == middle:
                probe()

        clock = MediaClock(engine, on_tick=on_tick)
        cpu0 = time.process_time()
        wall0 = time.perf_counter()
        clock.start()
        await asyncio.sleep(seconds)
        clock.stop()
        figures = clock.figures
        return {
            "ticks": figures.ticks,
            "late_ticks": figures.late_ticks,
            "max_lateness_ms": figures.max_lateness * 1000,
            "skipped_ticks": figures.skipped_ticks,
            "late_log": [(n, round(late * 1000, 2)) for n, late in figures.late_log],
            "busy_seconds": figures.busy_seconds,
            "cpu_seconds": time.process_time() - cpu0,
            "wall_seconds": time.perf_counter() - wall0,
        }

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def _gateway(
    conn: multiprocessing.connection.Connection,
    calls: int,
    port_min: int,
    jitter_min: int,
    connect: bool,
    cpu: int | None,
) -> None:
    """The gateway process: 2 legs per call, bridged; reports figures at the end."""
    from mediagw.media.engine import MediaEngine
    from mediagw.media.ports import PortAllocator

    _pin(cpu)
    _raise_nofile(4 * calls + 256)
    ports = PortAllocator(port_min, min(65535, port_min + 8 * calls + 64))
    pairs = [ports.allocate() for _ in range(2 * calls)]
    conn.send([pair.port for pair in pairs])
    remotes: list[int] = conn.recv()
    engine = MediaEngine(
        max_slots=2 * calls + 8, jitter_min_frames=jitter_min, jitter_max_frames=8, connect_sockets=connect
    )
    slots = [
        engine.add_leg(pair.rtp, pair.rtcp, ("127.0.0.1", remote), 0 if i % 2 == 0 else 8, 101, False)
        for i, (pair, remote) in enumerate(zip(pairs, remotes))
    ]
    for c in range(calls):
        a, b = slots[2 * c], slots[2 * c + 1]
        engine.set_listen(a, [(b, 1.0)])
        engine.set_listen(b, [(a, 1.0)])
    seconds, start_at = conn.recv()
    clock = _run_clock(engine, seconds, start_at)
    stats = [engine.stats(slot) for slot in slots]
    conn.send(
        {
            "clock": clock,
            "figures": engine.figures(),
            "received": sum(s.received for s in stats),
            "expected": sum(s.expected for s in stats),
            "late": sum(s.late for s in stats),
            "concealed": sum(s.concealed for s in stats),
            "sent": sum(s.sent for s in stats),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    for slot in slots:
        engine.remove(slot)
    ports.close()


def _generator(
    conn: multiprocessing.connection.Connection,
    calls: int,
    gateway_ports: Sequence[int],
    connect: bool,
    cpu: int | None,
) -> None:
    """The far ends: two streams per call towards the gateway (440 Hz from A sides, 1 kHz from B sides)."""
    import socket

    from mediagw.media.engine import MediaEngine

    _pin(cpu)
    _raise_nofile(2 * calls + 256)
    engine = MediaEngine(
        max_slots=2 * calls + 8, jitter_min_frames=1, jitter_max_frames=8, connect_sockets=connect
    )
    t = np.arange(FRAME * 50)
    tone_a = engine.add_player((8000 * np.sin(2 * np.pi * 440 * t / 8000)).astype(np.int16), loop=True)
    tone_b = engine.add_player((8000 * np.sin(2 * np.pi * 1000 * t / 8000)).astype(np.int16), loop=True)
    socks = []
    slots = []
    for i, port in enumerate(gateway_ports):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        socks.append(sock)
        slot = engine.add_leg(sock, None, ("127.0.0.1", port), 0 if i % 2 == 0 else 8, 101, False)
        engine.set_listen(slot, [(tone_a if i % 2 == 0 else tone_b, 1.0)])
        slots.append(slot)
    for slot in slots[:4]:
        engine.enable_tap(slot, output=False)
    conn.send([sock.getsockname()[1] for sock in socks])
    seconds, start_at = conn.recv()
    heard: list[tuple[str, float]] = []

    def probe() -> None:
        """Which tone the first legs hear, in the middle of the run (A must hear 1 kHz, B 440 Hz)."""
        for i, slot in enumerate(slots[:4]):
            pcm = engine.tap(slot).astype(np.float64)
            spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
            spectrum[0] = 0
            heard.append((("A", "B")[i % 2], float(np.argmax(spectrum) * 8000 / pcm.size)))

    clock = _run_clock(engine, seconds, start_at, probe)
    stats = [engine.stats(slot) for slot in slots]
    conn.send(
        {
            "clock": clock,
            "figures": engine.figures(),
            "received": sum(s.received for s in stats),
            "expected": sum(s.expected for s in stats),
            "sent": sum(s.sent for s in stats),
            "heard": heard,
        }
    )
    for slot in slots:
        engine.remove(slot)
    for sock in socks:
        sock.close()


def bench_rtp(calls: int, seconds: float, port_min: int, jitter_min: int, connect: bool, pin: bool) -> int:
    """Run the gateway and the generator in two processes for ``seconds`` and print the report."""
    ctx = multiprocessing.get_context("spawn")
    gw_conn, gw_child = ctx.Pipe()
    gen_conn, gen_child = ctx.Pipe()
    gateway = ctx.Process(
        target=_gateway,
        args=(gw_child, calls, port_min, jitter_min, connect, 0 if pin else None),
        daemon=True,
    )
    gateway.start()
    try:
        if not gw_conn.poll(120):
            raise SystemExit("the gateway process did not start")
        gateway_ports = gw_conn.recv()
        generator = ctx.Process(
            target=_generator,
            args=(gen_child, calls, gateway_ports, connect, 1 if pin else None),
            daemon=True,
        )
        generator.start()
        if not gen_conn.poll(120):
            raise SystemExit("the generator process did not start")
        gw_conn.send(gen_conn.recv())
        start_at = time.time() + 1.0
        gw_conn.send((seconds, start_at))
        gen_conn.send((seconds, start_at))
        timeout = seconds + 60
        if not (gw_conn.poll(timeout) and gen_conn.poll(timeout)):
            raise SystemExit("the benchmark did not finish in time")
        gw = gw_conn.recv()
        gen = gen_conn.recv()
        generator.join(10)
    finally:
        gateway.join(10)
        for process in (gateway,):
            if process.is_alive():
                process.kill()
    _report(calls, seconds, gw, gen, connect)
    return 0


def _report(calls: int, seconds: float, gw: dict[str, Any], gen: dict[str, Any], connect: bool) -> None:
    fig = gw["figures"]
    clock = gw["clock"]
    wall = clock["wall_seconds"]
    ticks = max(1, fig["ticks"])
    tick_total = max(1e-9, fig["seconds_tick"])
    lost_up = max(0, gw["expected"] - gw["received"])
    lost_down = max(0, gen["expected"] - gen["received"])
    sockets = "connected" if connect else "unconnected"
    out = [
        (
            f"rtp bench: {calls} bridged G.711 calls (PCMU/PCMA legs, transcoding), {seconds:.0f} s, "
            f"127.0.0.1, {sockets} sockets"
        ),
        f"  gateway packets in  {fig['packets_in']:>10}  ({fig['packets_in'] / wall:,.0f}/s)",
        f"  gateway packets out {fig['packets_out']:>10}  ({fig['packets_out'] / wall:,.0f}/s)",
        f"  through the gateway {(fig['packets_in'] + fig['packets_out']) / wall:,.0f} packets/s",
        (
            f"  loss generator->gateway {100 * lost_up / max(1, gw['expected']):.3f}% "
            f"({lost_up} of {gw['expected']})"
        ),
        (
            f"  loss gateway->generator {100 * lost_down / max(1, gen['expected']):.3f}% "
            f"({lost_down} of {gen['expected']})"
        ),
        f"  gateway jitter buffers: late {gw['late']}, concealed {gw['concealed']}",
        (
            f"  gateway ticks {clock['ticks']}, late (> 1 tick) {clock['late_ticks']}, "
            f"max lateness {clock['max_lateness_ms']:.2f} ms, skipped {clock['skipped_ticks']}"
        ),
    ]
    if clock["late_log"]:
        out.append(f"    late gateway ticks (number, ms): {clock['late_log']}")
    gen_clock = gen["clock"]
    out += [
        (
            f"  generator ticks {gen_clock['ticks']}, late {gen_clock['late_ticks']}, "
            f"max lateness {gen_clock['max_lateness_ms']:.2f} ms"
        ),
        (
            f"  gateway busy in engine.tick {100 * tick_total / wall:.1f}% of the wall time; process CPU "
            f"{clock['cpu_seconds']:.2f} s = {100 * clock['cpu_seconds'] / wall:.1f}% (softirq work of loopback "
            f"delivery is not always charged to it); max RSS {gw['max_rss_mb']:.0f} MB"
        ),
        f"  per tick (mean): {1e3 * tick_total / ticks:.3f} ms, max {1e3 * fig['max_tick_seconds']:.2f} ms",
    ]
    for phase in ("rx", "playout", "mix", "tx"):
        share = fig[f"seconds_{phase}"]
        out.append(f"    {phase:<8} {1e3 * share / ticks:8.3f} ms/tick  {100 * share / tick_total:5.1f}%")
    out.append(
        f"    syscalls per tick: rx {fig['syscalls_rx'] / ticks:.0f}, tx {fig['syscalls_tx'] / ticks:.0f}; "
        f"send errors {fig['send_errors']}; RTCP reports sent {fig['rtcp_sent']}"
    )
    heard = ", ".join(f"{side} {hz:.0f}" for side, hz in gen["heard"])
    out.append(f"  tone check (generator legs: side, Hz heard; A sends 440, B sends 1000): {heard}")
    print("\n".join(out))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mediagw.bench mix | rtp [--calls N] [--seconds S]``."""
    parser = argparse.ArgumentParser(prog="python -m mediagw.bench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("mix", help="compiled vs numpy mixing kernel")
    rtp = commands.add_parser("rtp", help="the RTP engine under load, generator in another process")
    rtp.add_argument("--calls", type=int, default=200)
    rtp.add_argument("--seconds", type=float, default=10.0)
    rtp.add_argument("--port-min", type=int, default=20000, help="first RTP port of the gateway")
    rtp.add_argument("--jitter-min", type=int, default=2, help="jitter buffer minimum depth (frames)")
    rtp.add_argument("--no-pin", action="store_true", help="do not pin gateway and generator to CPUs 0 and 1")
    rtp.add_argument(
        "--no-connect", action="store_true", help="sendto() per packet instead of connected sockets"
    )
    args = parser.parse_args(argv)
    if args.command == "mix":
        return bench_mix()
    if not 1 <= args.calls <= 16000 or not 0 < args.seconds <= 600:
        parser.error("--calls must be 1..16000 and --seconds 0..600")
    return bench_rtp(
        args.calls, args.seconds, args.port_min, args.jitter_min, not args.no_connect, not args.no_pin
    )


if __name__ == "__main__":
    sys.exit(main())
