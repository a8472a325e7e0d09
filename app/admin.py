"""Admin command line: give a user the admin role (or take it back).

    python -m app.admin promote LOGIN
    python -m app.admin demote LOGIN

It writes the role into the user's record in the Redis of `APP_REDIS_URL` (and
`APP_REDIS_PREFIX`), the same settings the gateway reads. This is the only way to make an
admin: registering never grants it. Gateways honour a change within `APP_ACCOUNT_CACHE_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.accounts.users import ROLE_ADMIN, ROLE_USER, UserStore
from app.core.redis_scripts import StoreError
from app.core.settings import get_settings


async def set_role(login: str, role: str) -> bool:
    from redis.asyncio import Redis

    settings = get_settings()
    redis = Redis.from_url(str(settings.redis_url))
    try:
        return await UserStore(redis, prefix=settings.redis_prefix).set_role(login, role)
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.admin", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("promote", "make LOGIN an admin"), ("demote", "make LOGIN a user")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("login")
    args = parser.parse_args(argv)
    role = ROLE_ADMIN if args.command == "promote" else ROLE_USER
    try:
        changed = asyncio.run(set_role(args.login, role))
    except StoreError as exc:
        print(f"Redis unavailable: {exc}", file=sys.stderr)
        return 2
    if not changed:
        print(f"no user {args.login!r}: they register first (POST /register)", file=sys.stderr)
        return 1
    print(f"{args.login} is now {'an admin' if role == ROLE_ADMIN else 'a user'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
