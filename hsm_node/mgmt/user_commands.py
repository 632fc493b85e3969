"""``hsm-mgmt`` user commands (as a crypto officer, CO): ``createUser``, ``deleteUser``,
``changePswd``, ``listUsers``, ``syncUser``. Writes replicate; ``--node-only`` applies
``createUser``/``deleteUser``/``changePswd`` to each endpoint by itself."""
from __future__ import annotations

import argparse

from protos.hsm.v1 import hsm_pb2 as pb

from . import output as out
from .context import NEW_PASSWORD_HELP, Cli, HsmMgmtError, Node, add_password_sources, upper

# ---------------------------------------------------------------- users

async def cmd_create_user(cli: Cli, args: argparse.Namespace) -> None:
    password = cli.new_password(args, args.password, f"the password of {args.name.lower()}",
                                login="CO")

    async def call(node: Node, token: str, node_only: bool) -> pb.CreateUserResponse:
        return await node.stub.CreateUser(pb.CreateUserRequest(
            session_token=token, user_type=out.USER_TYPES[args.user_type], username=args.name,
            password=password, this_node_only=node_only), timeout=cli.timeout)

    await cli.write("createUser", f"Creating User {args.name.lower()}({args.user_type})", call, login="CO",
                    result=lambda r: r.write, details=lambda r: {"user": out.user_dict(r.user)})


async def cmd_delete_user(cli: Cli, args: argparse.Namespace) -> None:
    name = args.name.lower()

    async def call(node: Node, token: str, node_only: bool) -> pb.WriteResult:
        users = await node.stub.ListUsers(pb.Empty(), timeout=cli.timeout)
        user = next((u for u in users.users if u.username == name), None)
        if user is not None and out.user_type_name(user.user_type) != args.user_type:
            raise HsmMgmtError("INVALID_ARGUMENT", f"user {name} is a {out.user_type_name(user.user_type)},"
                           f" not a {args.user_type}; nothing deleted")
        return await node.stub.DeleteUser(pb.DeleteUserRequest(
            session_token=token, username=name, this_node_only=node_only), timeout=cli.timeout)

    await cli.write("deleteUser", f"Deleting user {name}({args.user_type})", call, login="CO",
                    details=lambda r: {"username": name})


async def cmd_change_password(cli: Cli, args: argparse.Namespace) -> None:
    name = args.name.lower()
    login = "PRECO" if args.user_type == "PRECO" else "CO"
    new_password = cli.new_password(args, args.new_password, f"the new password of {name}",
                                    login=login)

    async def call(node: Node, token: str, node_only: bool) -> pb.WriteResult:
        return await node.stub.ChangePassword(pb.ChangePasswordRequest(
            session_token=token, user_type=out.USER_TYPES[args.user_type], username=name,
            new_password=new_password, this_node_only=node_only), timeout=cli.timeout)

    await cli.write("changePswd", f"Changing password for {name}({args.user_type})", call, login=login,
                    details=lambda r: {"username": name})


async def cmd_list_users(cli: Cli, args: argparse.Namespace) -> None:
    async def list_users(node: Node, _: str) -> list[pb.User]:
        return list((await node.stub.ListUsers(pb.Empty(), timeout=cli.timeout)).users)

    cli.show_servers(await cli.each_node(list_users), out.users_text,
                     lambda users: {"users": [out.user_dict(u) for u in users]})


async def cmd_sync_user(cli: Cli, args: argparse.Namespace) -> None:
    name = args.name.lower()

    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.SyncUser(pb.SyncUserRequest(session_token=token, username=name), timeout=cli.timeout)

    await cli.write("syncUser", f"Syncing user {name}", call, login="CO", details=lambda r: {"username": name})


COMMANDS = [
    ("createUser", cmd_create_user, "create a CO or CU user (as a CO)"),
    ("deleteUser", cmd_delete_user, "delete a user (as a CO)"),
    ("changePswd", cmd_change_password, "change a user's password (a CO for anyone, or the user itself)"),
    ("listUsers", cmd_list_users, "list the users of every endpoint (no login needed)"),
    ("syncUser", cmd_sync_user, "push the first endpoint's record of a user to every cluster member (as a CO)"),
]
NODE_ONLY = {"createUser", "deleteUser", "changePswd"}


def add_arguments(name: str, sp: argparse.ArgumentParser) -> None:
    if name in ("createUser", "deleteUser", "changePswd"):
        sp.add_argument("user_type", type=upper, choices=["CO", "CU", "PRECO"] if name == "changePswd" else ["CO", "CU"])
        sp.add_argument("name")
        if name == "createUser":
            sp.add_argument("password", nargs="?", help=NEW_PASSWORD_HELP)
        elif name == "changePswd":
            sp.add_argument("new_password", metavar="newpassword", nargs="?", help=NEW_PASSWORD_HELP)
        if name in ("createUser", "changePswd"):
            add_password_sources(sp)
    elif name == "syncUser":
        sp.add_argument("name")
