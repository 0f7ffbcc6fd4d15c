"""The `tunelab` command: `up` runs everything on one machine; `web`, `worker` and
`db upgrade` run the pieces separately for multi-machine setups."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError

from app.config import get_settings
from app.queue import ACCELERATOR_QUEUES, ALL_QUEUES
from app.services.exports import FORMATS as EXPORT_FORMATS


def _apply_overrides(args: argparse.Namespace) -> None:
    # Settings are read from the environment once; CLI flags are written there first so that
    # every child process sees the same values (app.config makes the data dir absolute).
    for option, variable in (
        ("data_dir", "TUNELAB_DATA_DIR"),
        ("host", "TUNELAB_HOST"),
        ("port", "TUNELAB_PORT"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            os.environ[variable] = str(value)
    get_settings.cache_clear()


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refuse_open_without_accounts(host: str) -> bool:
    """True (after saying why and how) when the web would be reachable from other machines
    while anyone who reaches it would be the local user with every right."""
    if is_loopback(host) or get_settings().accounts:
        return False
    sys.stderr.write(
        f"tunelab: refusing to listen on {host}: accounts are off, so anyone who can reach this "
        "port could use every project, model and GPU here.\n"
        "  Either turn accounts on: set TUNELAB_ACCOUNTS=1, then open the page to create the "
        "first admin (or run `tunelab users create NAME --admin`);\n"
        "  or listen on this machine only: --host 127.0.0.1 (the default).\n"
        "  See docs/deployment.md.\n"
    )
    return True


def cmd_up(args: argparse.Namespace) -> int:
    from app.supervisor import Supervisor

    settings = get_settings()
    if refuse_open_without_accounts(settings.host):
        return 2
    return Supervisor(settings, host=settings.host, port=settings.port).run()


def cmd_web(args: argparse.Namespace) -> int:
    from app.supervisor import web_command

    settings = get_settings()
    if refuse_open_without_accounts(settings.host):
        return 2
    cmd = web_command(settings.host, settings.port)
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
    accelerator = set(queues) & set(ACCELERATOR_QUEUES)
    if accelerator and not set(queues) <= set(ACCELERATOR_QUEUES):
        sys.stderr.write(
            "tunelab: run the train and eval queues in a worker of their own "
            "(--queues train,eval)\n"
        )
        return 2
    cmd = worker_command(queues, "train" if accelerator else "main", args.concurrency)
    os.execv(cmd[0], cmd)


def cmd_export(args: argparse.Namespace) -> int:
    """Runs in the worker's code (the web never imports the ML stack): the same export task
    as the web's, in this process, then a copy to --out."""
    cmd = [
        sys.executable, "-m", "workers.tasks.export",
        args.name, "--format", args.format, "--out", args.out,
    ]  # fmt: skip
    os.execv(cmd[0], cmd)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("Password (at least 10 characters): ")
    if getpass.getpass("Password again: ") != first:
        raise SystemExit("tunelab: the two passwords differ; nothing changed")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    """Accounts from the command line (no web needed): create, set-password, list."""
    from app import migrate
    from app.db import session_scope
    from app.errors import InvalidInput
    from app.i18n import Translator
    from app.services import users

    migrate.upgrade()
    t = Translator("en")
    with session_scope() as session:
        if args.users_command == "list":
            for user in users.list_users(session):
                role = "admin" if user.is_admin else "member"
                state = "active" if user.is_active else "disabled"
                sys.stdout.write(f"{user.username}\t{role}\t{state}\n")
            return 0
        password = _read_password(args)
        try:
            if args.users_command == "create":
                users.create_user(session, args.name, password, is_admin=args.admin)
                sys.stdout.write(f"tunelab: user {args.name} created\n")
            else:
                users.set_password(session, args.name, password)
                sys.stdout.write(f"tunelab: password of {args.name} set; their logins ended\n")
        except InvalidInput as exc:
            for error in exc.errors:
                sys.stderr.write(f"tunelab: {error.field}: {t(error.key, **error.params)}\n")
            return 1
    if not get_settings().accounts:
        sys.stdout.write("tunelab: accounts are off; set TUNELAB_ACCOUNTS=1 to use them\n")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from app import migrate

    migrate.upgrade()
    sys.stderr.write(f"tunelab: database at {get_settings().sqlalchemy_url} is up to date\n")
    return 0


def _option_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Options shared by several commands, accepted before or after the subcommand.

    SUPPRESS as default: a parser that did not see the option leaves the attribute unset, so
    the subcommand's parser does not overwrite `tunelab --data-dir X up` with None."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="folder for the database, datasets, models and runs (default ./data; "
        "overrides TUNELAB_DATA_DIR)",
    )
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--host",
        default=argparse.SUPPRESS,
        help="address to bind (default 127.0.0.1; overrides TUNELAB_HOST)",
    )
    server.add_argument(
        "--port",
        type=int,
        default=argparse.SUPPRESS,
        help="port to listen on (default 8000; overrides TUNELAB_PORT)",
    )
    return data, server


def build_parser() -> argparse.ArgumentParser:
    data, server = _option_parents()
    parser = argparse.ArgumentParser(prog="tunelab", description=__doc__, parents=[data])
    sub = parser.add_subparsers(dest="command", required=True)

    up_help = "run web, workers and (if needed) Redis on this machine"
    up = sub.add_parser("up", parents=[data, server], help=up_help, description=up_help)
    up.set_defaults(func=cmd_up)

    web_help = "run only the web server"
    web = sub.add_parser("web", parents=[data, server], help=web_help, description=web_help)
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", parents=[data], help="run a worker for some queues")
    worker.add_argument(
        "--queues",
        default=",".join(ALL_QUEUES),
        help=f"comma-separated, from {', '.join(ALL_QUEUES)} (default: all)",
    )
    worker.add_argument("--concurrency", type=int, default=None)
    worker.set_defaults(func=cmd_worker)

    export_help = "export a model version to a file, without the web running"
    export = sub.add_parser("export", parents=[data], help=export_help, description=export_help)
    export.add_argument("name", help="the version, as PROJECT:vN (PROJECT is the project's slug)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--out", required=True, help="where to write the file")
    export.set_defaults(func=cmd_export)

    users_help = "manage accounts (with TUNELAB_ACCOUNTS=1)"
    users_parser = sub.add_parser("users", parents=[data], help=users_help, description=users_help)
    users_sub = users_parser.add_subparsers(dest="users_command", required=True)
    for name, text in (("create", "create an account"), ("set-password", "set a password")):
        command = users_sub.add_parser(name, parents=[data], help=text, description=text)
        command.add_argument("name", help="the user name")
        command.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        if name == "create":
            command.add_argument("--admin", action="store_true", help="an administrator")
    users_sub.add_parser("list", parents=[data], help="list the accounts")
    users_parser.set_defaults(func=cmd_users)

    db = sub.add_parser("db", parents=[data], help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_sub.add_parser("upgrade", parents=[data], help="apply migrations")
    db_upgrade.set_defaults(func=cmd_db)
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
