"""``hsm-mgmt`` key and crypto commands (as a crypto user, CU; ``findAllKeys`` as a CO):
``genSymKey``, ``findAllKeys``, ``findKey``, ``getKeyInfo``, ``shareKey``, ``deleteKey``,
``syncKey``, ``encrypt``, ``decrypt``, ``genRandom``."""
from __future__ import annotations

import argparse
import base64
import binascii
import json

from protos.hsm.v1 import hsm_pb2 as pb

from . import output as out
from .context import Cli, Node, emit_json, read_input, usage_error, write_output

# ---------------------------------------------------------------- keys

async def cmd_gen_sym_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.GenerateKeyResponse:
        timeout = max(cli.timeout, args.timeout_ms / 1000 + 5)
        return await node.stub.GenerateKey(pb.GenerateKeyRequest(
            session_token=token, key_size_bytes=args.key_size, label=args.label, share_with_user_ids=args.share,
            min_replicas=args.min_replicas, timeout_ms=args.timeout_ms, session_key=args.session_key), timeout=timeout)

    def head(r: pb.GenerateKeyResponse) -> list[str]:
        return [f"Cfm3GenerateSymmetricKey returned: {out.SUCCESS}", "",
                f"Symmetric Key Created.  Key Handle: {r.key_handle}", ""]

    what = "Session key" if args.session_key else "Key"
    await cli.write("genSymKey", lambda r: f"{what} {r.key_handle} stored", call, login="CU",
                    result=lambda r: r.write, head=head,
                    details=lambda r: {"key_handle": r.key_handle, "label": args.label})


async def cmd_find_all_keys(cli: Cli, args: argparse.Namespace) -> None:
    with_hash = args.with_hash == 1

    async def find(node: Node, token: str) -> pb.FindAllKeysResponse:
        return await node.stub.FindAllKeys(pb.FindAllKeysRequest(
            session_token=token, user_id=args.user_id, include_hash=with_hash), timeout=cli.timeout)

    outcomes = await cli.each_node(find, login="CO")
    hashes = {o.value.key_hash for o in outcomes if o.error is None}
    compare = with_hash and len(cli.servers) > 1 and all(o.error is None for o in outcomes)
    extra = {"in_sync": len(hashes) == 1} if compare else {}
    cli.show_servers(outcomes, lambda s, r: out.find_all_keys_text(s, r, with_hash),
                     lambda r: out.find_all_keys_dict(r, with_hash), extra)
    if compare and not cli.s.json:
        print(f"Key hashes match on all {len(cli.servers)} servers" if len(hashes) == 1 else
              "Key hashes differ: the HSMs are out of sync (compare listUsers; fix with syncUser / syncKey)")


async def cmd_find_key(cli: Cli, args: argparse.Namespace) -> None:
    async def find(node: Node, token: str) -> list[int]:
        r = await node.stub.FindKeys(pb.FindKeysRequest(session_token=token, label=args.label or "",
                                                        owner_user_id=args.owner or 0), timeout=cli.timeout)
        return list(r.key_handles)

    cli.show_servers(await cli.each_node(find, login="CU"), out.find_key_text, lambda h: {"key_handles": h})


async def cmd_get_key_info(cli: Cli, args: argparse.Namespace) -> None:
    async def info(node: Node, token: str) -> pb.KeyInfo:
        return await node.stub.GetKeyInfo(pb.KeyRequest(session_token=token, key_handle=args.handle),
                                          timeout=cli.timeout)

    cli.show_servers(await cli.each_node(info, login="CU"), out.key_info_text, out.key_info_dict)


async def cmd_share_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.ShareKey(pb.ShareKeyRequest(session_token=token, key_handle=args.handle,
                                                           user_ids=args.users, unshare=args.unshare),
                                        timeout=cli.timeout)

    ids = ",".join(str(u) for u in args.users)
    action = f"Unsharing key {args.handle} from user(s) {ids}" if args.unshare else \
        f"Sharing key {args.handle} with user(s) {ids}"
    await cli.write("shareKey", action, call, login="CU",
                    details=lambda r: {"key_handle": args.handle, "user_ids": args.users, "unshare": args.unshare})


async def cmd_delete_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.DeleteKey(pb.KeyRequest(session_token=token, key_handle=args.handle),
                                         timeout=cli.timeout)

    await cli.write("deleteKey", f"Key {args.handle} deleted", call, login="CU",
                    head=lambda r: [f"Cfm3DeleteKey returned: {out.SUCCESS}", ""],
                    details=lambda r: {"key_handle": args.handle})


async def cmd_sync_key(cli: Cli, args: argparse.Namespace) -> None:
    async def call(node: Node, token: str, _: bool) -> pb.WriteResult:
        return await node.stub.SyncKey(pb.SyncKeyRequest(session_token=token, key_handle=args.handle),
                                       timeout=cli.timeout)

    await cli.write("syncKey", f"Syncing key {args.handle}", call, login="CU",
                    details=lambda r: {"key_handle": args.handle})


# ---------------------------------------------------------------- crypto

async def cmd_encrypt(cli: Cli, args: argparse.Namespace) -> None:
    plaintext = read_input(args.input)
    node = await cli.first_node()
    r = await node.stub.Encrypt(pb.EncryptRequest(session_token=await cli.token(node, "CU"), key_handle=args.handle,
                                                  plaintext=plaintext, aad=args.aad.encode()), timeout=cli.timeout)
    doc = {"key_handle": args.handle, "algorithm": "AES-GCM", "iv": base64.b64encode(r.iv).decode(),
           "ciphertext": base64.b64encode(r.ciphertext).decode()}
    write_output(args.output, (out.to_json(doc) + "\n").encode())


def parse_encrypted(data: bytes, handle: int | None) -> tuple[int, bytes, bytes]:
    try:
        doc = json.loads(data)
        iv, ciphertext = base64.b64decode(doc["iv"], validate=True), base64.b64decode(doc["ciphertext"], validate=True)
        key_handle = handle if handle is not None else int(doc["key_handle"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise usage_error("decrypt needs the JSON that encrypt wrote: {\"key_handle\": ..., \"iv\": base64,"
                          " \"ciphertext\": base64} (or pass -k for the key handle)") from None
    return key_handle, iv, ciphertext


async def cmd_decrypt(cli: Cli, args: argparse.Namespace) -> None:
    handle, iv, ciphertext = parse_encrypted(read_input(args.input), args.handle)
    node = await cli.first_node()
    r = await node.stub.Decrypt(pb.DecryptRequest(session_token=await cli.token(node, "CU"), key_handle=handle,
                                                  iv=iv, ciphertext=ciphertext, aad=args.aad.encode()),
                                timeout=cli.timeout)
    if cli.s.json:
        emit_json({"key_handle": handle, "plaintext": base64.b64encode(r.plaintext).decode()})
    else:
        write_output(args.output, r.plaintext, private=True)


async def cmd_gen_random(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.first_node()
    r = await node.stub.GenerateRandom(pb.GenerateRandomRequest(session_token=await cli.token(node, "CU"),
                                                                length=args.length), timeout=cli.timeout)
    if cli.s.json:
        emit_json({"length": len(r.random), "random": base64.b64encode(r.random).decode()})
    else:
        print(r.random.hex())


COMMANDS = [
    ("genSymKey", cmd_gen_sym_key, "generate a persistent, non-extractable AES key (as a CU)"),
    ("findAllKeys", cmd_find_all_keys, "keys owned (o) or shared (s) by a user, with the ownership hash (as a CO)"),
    ("findKey", cmd_find_key, "handles of the keys you can use, by label and/or owner (as a CU)"),
    ("getKeyInfo", cmd_get_key_info, "owner, sharing and attributes of a key on every endpoint (as a CU)"),
    ("shareKey", cmd_share_key, "share (or --unshare) a key you own with other CUs"),
    ("deleteKey", cmd_delete_key, "delete a key you own"),
    ("syncKey", cmd_sync_key, "push a key you own to every cluster member"),
    ("encrypt", cmd_encrypt, "AES-GCM encrypt a file; writes JSON with base64 iv and ciphertext"),
    ("decrypt", cmd_decrypt, "decrypt the JSON written by encrypt; writes the plaintext"),
    ("genRandom", cmd_gen_random, "random bytes from the HSM, printed in hex"),
]


def aes_key_type(value: str) -> int:
    if value.strip() != "31":
        raise argparse.ArgumentTypeError(f"{value}: only -t 31 (AES) is supported; this HSM generates AES keys")
    return 31


def id_list(value: str) -> list[int]:
    try:
        ids = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated user ids, got {value!r}") from None
    if not ids or any(i <= 0 for i in ids):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive user ids, got {value!r}")
    return ids


def add_arguments(name: str, sp: argparse.ArgumentParser) -> None:
    if name == "genSymKey":
        sp.add_argument("-t", dest="key_type", type=aes_key_type, required=True, help="key type: 31 = AES")
        sp.add_argument("-s", dest="key_size", type=int, required=True, choices=[16, 32], help="key size in bytes")
        sp.add_argument("-l", dest="label", required=True, help="key label (KMS uses the key ARN)")
        sp.add_argument("-u", dest="share", type=id_list, default=[], help="share with these CU ids (comma separated)")
        sp.add_argument("--min-replicas", "-min_srv", type=int, default=0,
                        help="fail unless this many nodes hold the key")
        sp.add_argument("--timeout-ms", type=int, default=0, help="how long to wait for --min-replicas (5000)")
        sp.add_argument("--session-key", "-sess", action="store_true", help="a session key: this node only")
        sp.add_argument("-nex", action="store_true", help="non-extractable (always the case; accepted for KMU users)")
    elif name == "findAllKeys":
        sp.add_argument("user_id", type=int, help="user id (0 = every user)")
        sp.add_argument("with_hash", type=int, choices=[0, 1], help="1 = print the key hash")
    elif name == "findKey":
        sp.add_argument("-l", dest="label", help="exact label")
        sp.add_argument("-u", dest="owner", type=int, help="owner user id")
    elif name in ("getKeyInfo", "shareKey", "deleteKey", "syncKey"):
        sp.add_argument("-k", dest="handle", type=int, required=True, help="key handle")
        if name == "shareKey":
            sp.add_argument("-u", dest="users", type=id_list, required=True, help="CU ids (comma separated)")
            sp.add_argument("--unshare", action="store_true", help="take the sharing back")
    elif name in ("encrypt", "decrypt"):
        sp.add_argument("-k", dest="handle", type=int, required=name == "encrypt",
                        help="key handle" + (" (default: the one in the input JSON)" if name == "decrypt" else ""))
        sp.add_argument("--in", dest="input", required=True, metavar="FILE", help="input file, - for stdin")
        sp.add_argument("--out", dest="output", metavar="FILE", help="output file (default stdout)")
        sp.add_argument("--aad", default="", help="additional authenticated data (text)")
    elif name == "genRandom":
        sp.add_argument("length", type=int, help="number of bytes (1..4096)")
