"""The `tunelab` command: `up` runs everything on one machine; `web`, `worker` and
`db upgrade` run the pieces separately for multi-machine setups."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from app.config import get_settings
from app.queue import ALL_QUEUES


def _apply_overrides(args: argparse.Namespace) -> None:
    # Settings are read from the environment once; CLI flags are written there first so that
    # every child process sees the same values.
    if getattr(args, "data_dir", None):
        os.environ["TUNELAB_DATA_DIR"] = str(Path(args.data_dir).resolve())
    get_settings.cache_clear()


def cmd_up(args: argparse.Namespace) -> int:
    from app.supervisor import Supervisor

    settings = get_settings()
    return Supervisor(
        settings, host=args.host or settings.host, port=args.port or settings.port
    ).run()


def cmd_web(args: argparse.Namespace) -> int:
    from app.supervisor import web_command

    settings = get_settings()
    cmd = web_command(args.host or settings.host, args.port or settings.port)
    os.execv(cmd[0], cmd)


def cmd_worker(args: argparse.Namespace) -> int:
    from app.supervisor import Supervisor, worker_command

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(ALL_QUEUES))
    if unknown:
        sys.stderr.write(
            f"tunelab: unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}\n"
        )
        return 2
    if set(queues) == set(ALL_QUEUES):
        # All queues: two workers, as `up` runs them, so training never blocks the rest.
        return Supervisor(get_settings(), host="", port=0, run_web=False).run()
    if "train" in queues and len(queues) > 1:
        sys.stderr.write("tunelab: run the train queue in a worker of its own (--queues train)\n")
        return 2
    cmd = worker_command(queues, "train" if "train" in queues else "main", args.concurrency)
    os.execv(cmd[0], cmd)


def cmd_db(args: argparse.Namespace) -> int:
    from app import migrate

    migrate.upgrade()
    sys.stderr.write(f"tunelab: database at {get_settings().sqlalchemy_url} is up to date\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunelab", description=__doc__)
    parser.add_argument("--data-dir", help="overrides TUNELAB_DATA_DIR")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run web, workers and (if needed) Redis on this machine")
    up.add_argument("--host", help="address to bind (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="port to listen on (default 8000)")
    up.set_defaults(func=cmd_up)

    web = sub.add_parser("web", help="run only the web server")
    web.add_argument("--host")
    web.add_argument("--port", type=int)
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="run a worker for some queues")
    worker.add_argument(
        "--queues",
        default=",".join(ALL_QUEUES),
        help=f"comma-separated, from {', '.join(ALL_QUEUES)} (default: all)",
    )
    worker.add_argument("--concurrency", type=int, default=None)
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    _apply_overrides(args)
    try:
        get_settings()
    except ValidationError as exc:
        sys.stderr.write(settings_error(exc))
        return 2
    return int(args.func(args) or 0)


def settings_error(exc: ValidationError) -> str:
    """One line per bad setting, named as the user wrote it (TUNELAB_...), with the fix."""
    lines = ["tunelab: invalid settings (environment or .env):\n"]
    for error in exc.errors():
        name = "TUNELAB_" + "_".join(str(part) for part in error["loc"]).upper()
        lines.append(f"  {name}={error.get('input')!r}: {error['msg']}\n")
    lines.append("See docs/configuration.md for every setting and its allowed values.\n")
    return "".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
