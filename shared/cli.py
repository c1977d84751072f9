"""``python -m services.<name> serve|migrate|downgrade`` for every service."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn

from shared.migrations import downgrade, upgrade
from shared.settings import ServiceSettings

Handler = Callable[[argparse.Namespace, ServiceSettings], int]
#: ``(name, help, handler)``, or with a fourth member that adds the command's arguments.
ExtraCommand = tuple[str, str, Handler] | tuple[str, str, Handler, Callable[[argparse.ArgumentParser], None]]


def run_cli(
    service: str,
    settings_cls: type[ServiceSettings],
    migrations_dir: Path,
    extra: list[ExtraCommand] | None = None,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service with uvicorn")
    serve.add_argument("--host", help="interface to bind (default: settings.host)")
    serve.add_argument("--port", type=int, help="port to bind (default: the service's port)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    mig = sub.add_parser("migrate", help="upgrade the database to a revision (default head)")
    mig.add_argument("--revision", default="head")
    down = sub.add_parser("downgrade", help="downgrade the database (default: base)")
    down.add_argument("--revision", default="base")
    handlers: dict[str, Callable[[argparse.Namespace, ServiceSettings], int]] = {}
    for name, help_text, fn, *arguments in extra or []:
        p = sub.add_parser(name, help=help_text, description=help_text)
        for add_arguments in arguments:
            add_arguments(p)
        handlers[name] = fn
    args = parser.parse_args(argv)
    settings = settings_cls()

    if args.command == "serve":
        # The factory reads settings from the environment; make --host/--port
        # visible to it so public_url and friends agree with the real socket.
        prefix = f"SLUICE_{service.upper()}_"
        if args.host:
            os.environ[prefix + "HOST"] = args.host
        if args.port:
            os.environ[prefix + "PORT"] = str(args.port)
        uvicorn.run(
            f"services.{service}.app:create_app",
            factory=True,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=args.workers,
            log_config=None,
            proxy_headers=True,
        )
        return 0
    if args.command == "migrate":
        upgrade(migrations_dir, settings.database_url, args.revision)
        print(f"{service}: database at revision {args.revision}", file=sys.stderr)
        return 0
    if args.command == "downgrade":
        downgrade(migrations_dir, settings.database_url, args.revision)
        print(f"{service}: database downgraded to {args.revision}", file=sys.stderr)
        return 0
    return handlers[args.command](args, settings)
