"""``mediagw recordings``: list recordings with their export state, show one, retry now, export one.

Subcommands (each takes ``--profile PROFILE`` and ``--data-dir DIR`` like ``mediagw run``):

* ``list [--export-state pending|exported|purged] [--limit N]``: newest first, one line each;
* ``show ID``: the recording, its chunks and every export job (attempts, next attempt, last error);
* ``retry ID``: make every pending export job of the recording due now (audited); the gateway's
  exporter delivers them on its next round;
* ``export ID DIR``: copy the recording's local chunks and manifest to ``DIR/ID/`` (verified by
  SHA-256), whatever the export queue's state; the queue is not touched.

Output is plain text. Exit status: 0 done; 1 the recording is unknown or no longer on local disk, or
the store cannot be read; 2 a usage or profile error.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mediagw.errors import ConfigError, MediagwError

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXPORT_STATES = ("pending", "exported", "purged")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``recordings`` and its subcommands to the ``mediagw`` subparsers; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "recordings", help="list, show, retry and export recordings", parents=[_common_options(None)]
    )
    # The options are accepted before and after ACTION; the copies after it must not reset the values
    # given before it (argparse applies a subparser's defaults over the parent's), hence SUPPRESS.
    common = _common_options(argparse.SUPPRESS)
    actions = parser.add_subparsers(dest="recordings_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="recordings with their export state, newest first", parents=[common])
    listing.add_argument("--export-state", choices=EXPORT_STATES, help="only recordings in this export state")
    listing.add_argument("--limit", type=_positive_int, default=100, help="at most this many (default 100)")
    show = actions.add_parser("show", help="one recording, its chunks and export jobs", parents=[common])
    show.add_argument("recording_id", metavar="ID")
    retry = actions.add_parser("retry", help="make the pending exports of a recording due now", parents=[common])
    retry.add_argument("recording_id", metavar="ID")
    export = actions.add_parser("export", help="copy a recording's local chunks to a directory", parents=[common])
    export.add_argument("recording_id", metavar="ID")
    export.add_argument("directory", metavar="DIR")
    return parser


def _common_options(default: Any) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile", default=default, help="TOML profile (default: the embedded loopback demo profile)"
    )
    common.add_argument("--data-dir", default=default, help="the gateway's data directory (default: the profile's)")
    return common


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``mediagw recordings`` subcommand; returns the exit status (0, 1 or 2)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        data_dir, store_url, target_names = _settings(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args, data_dir, store_url, target_names, out, err))
    except MediagwError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except Exception as exc:  # the store unreachable, a disk error: reported, not a traceback
        logger.debug("recordings command failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {exc}", file=err)
        return EXIT_FAILED


def _settings(args: argparse.Namespace) -> tuple[Path, str, tuple[str, ...]]:
    """The data directory, store URL and configured target names from ``--profile``/``--data-dir``."""
    from mediagw.config import load_profile, with_overrides

    profile = with_overrides(load_profile(getattr(args, "profile", None)), data_dir=getattr(args, "data_dir", None))
    data_dir = Path(profile.data_dir)
    recording = getattr(profile, "recording", None)
    names = tuple(getattr(recording, "target_names", ()) or ()) or ("cli",)
    return data_dir, profile.store_url(data_dir), names


async def _run(
    args: argparse.Namespace,
    data_dir: Path,
    store_url: str,
    target_names: tuple[str, ...],
    out: TextIO,
    err: TextIO,
) -> int:
    from mediagw.recording.export import ExportQueue, UnknownRecording, export_recording_to_directory
    from mediagw.recording.service import recordings_dir_of
    from mediagw.store.db import Database

    command = args.recordings_command
    recordings_dir = recordings_dir_of(data_dir)
    if command == "export":
        try:
            copied = await export_recording_to_directory(recordings_dir, args.recording_id, args.directory)
        except UnknownRecording as exc:
            print(f"error: {exc}", file=err)
            return EXIT_FAILED
        except OSError as exc:
            print(f"error: cannot write to {args.directory}: {exc}", file=err)
            return EXIT_FAILED
        for path in copied:
            print(path, file=out)
        print(f"{len(copied)} chunk(s) of {args.recording_id} copied to {Path(args.directory) / args.recording_id}",
              file=out)
        return EXIT_OK
    missing = _missing_sqlite_file(store_url)
    if missing is not None:  # nothing recorded yet; do not create an empty store as a side effect
        if command == "list":
            print(f"no recordings (no store at {missing} yet)", file=out)
            return EXIT_OK
        print(f"error: unknown recording {args.recording_id!r} (no store at {missing})", file=err)
        return EXIT_FAILED
    database = Database(store_url)
    try:
        await database.create_all()
        queue = ExportQueue(database, target_names, actor="cli")
        if command == "list":
            summaries = await queue.list_recordings(export_state=args.export_state, limit=args.limit)
            _print_list(summaries, out)
            return EXIT_OK
        try:
            if command == "show":
                detail = await queue.show_recording(args.recording_id)
                _print_detail(detail, out)
                return EXIT_OK
            if command == "retry":
                now = datetime.datetime.now(datetime.UTC).timestamp()
                count = await queue.retry_now(args.recording_id, now, actor="cli")
                if count:
                    print(f"{count} pending export job(s) of {args.recording_id} are due now; "
                          "the gateway's exporter delivers them on its next round", file=out)
                else:
                    print(f"{args.recording_id}: no pending export job (nothing to retry)", file=out)
                return EXIT_OK
        except UnknownRecording as exc:
            print(f"error: {exc}", file=err)
            return EXIT_FAILED
    finally:
        await database.dispose()
    print(f"error: unknown action {command!r}", file=err)
    return EXIT_USAGE


def _missing_sqlite_file(url: str) -> Path | None:
    """The database file of a file-based SQLite URL when it does not exist; None otherwise."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.get_backend_name().startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


# ---- text output ---------------------------------------------------------------------------------------


def format_time(posix: float | None) -> str:
    """POSIX seconds as ``YYYY-MM-DD HH:MM:SSZ`` (UTC); ``-`` for None."""
    if posix is None:
        return "-"
    return datetime.datetime.fromtimestamp(posix, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_duration(seconds: float) -> str:
    """Seconds as ``H:MM:SS.s``."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}.{int((seconds - whole) * 10)}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A left-aligned plain-text table (no trailing spaces)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [list(headers), *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _print_list(summaries: Sequence[Any], out: TextIO) -> None:
    if not summaries:
        print("no recordings", file=out)
        return
    rows = [
        [
            s.recording_id,
            s.contact_id,
            s.queue or "-",
            s.state,
            format_time(s.started_at),
            format_duration(s.duration),
            str(s.chunk_count),
            s.export_state,
            f"{s.jobs_done}/{s.jobs_total}",
            s.local_state,
            format_time(s.next_attempt_at) if s.next_attempt_at is not None else "-",
            _short(s.last_error),
        ]
        for s in summaries
    ]
    headers = ["ID", "CONTACT", "QUEUE", "STATE", "STARTED", "DURATION", "CHUNKS", "EXPORT", "JOBS", "LOCAL",
               "NEXT ATTEMPT", "LAST ERROR"]
    print(table(headers, rows), file=out)


def _print_detail(detail: Any, out: TextIO) -> None:
    s = detail.summary
    fields = [
        ("recording", s.recording_id),
        ("contact", s.contact_id),
        ("queue", s.queue or "-"),
        ("kind", s.kind),
        ("state", s.state),
        ("node", s.node or "-"),
        ("started", format_time(s.started_at)),
        ("duration", format_duration(s.duration)),
        ("chunks", str(s.chunk_count)),
        ("export", f"{s.export_state} ({s.jobs_done}/{s.jobs_total} jobs done)"),
        ("local", s.local_state),
        ("directory", detail.directory),
    ]
    if s.next_attempt_at is not None:
        fields.append(("next attempt", format_time(s.next_attempt_at)))
    if s.last_error:
        fields.append(("last error", s.last_error))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        print(f"{name.ljust(width)}  {value}", file=out)
    print(file=out)
    print(
        table(
            ["CHUNK", "FILE", "SIZE", "DURATION", "LOCAL", "SHA-256"],
            [[str(c.index), c.file_name, str(c.size), format_duration(c.duration), c.local_state, c.sha256[:16]]
             for c in detail.chunks],
        )
        if detail.chunks
        else "no chunks",
        file=out,
    )
    print(file=out)
    print(
        table(
            ["CHUNK", "TARGET", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "CONFIRMED", "LOCATOR / LAST ERROR"],
            [
                [
                    str(j.chunk_index),
                    j.target,
                    j.state,
                    str(j.attempts),
                    format_time(j.next_attempt_at) if j.state == "pending" else "-",
                    format_time(j.confirmed_at),
                    (j.locator or "-") if j.state == "done" else _short(j.last_error, 80),
                ]
                for j in detail.jobs
            ],
        )
        if detail.jobs
        else "no export jobs",
        file=out,
    )


def _short(text: str | None, limit: int = 60) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mediagw.recording.cli ...`` (the same as ``mediagw recordings ...``)."""
    parser = argparse.ArgumentParser(prog="mediagw")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
