"""Commands that talk to a running node over HTTP: status, block, tx, query, events, member.

Every command takes ``--node URL`` (default ``$JANGBU_NODE`` or http://127.0.0.1:26601),
``--json`` for machine output, and, when it signs, ``--key FILE`` (default ``$JANGBU_KEY``).
Errors are one line on stderr (``jangbu: error: ...``) and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from cli.errors import CliError
from cli.output import age, command, print_json, records_table, short, subcommand_help
from consensus.canonical import CanonicalError

if TYPE_CHECKING:  # aiohttp and the client load only when a command talks to a node
    from nacl.signing import SigningKey

    from node.client import Client

DEFAULT_NODE = "http://127.0.0.1:26601"
OK = "OK"

Action = Callable[["Client", argparse.Namespace], Awaitable[int]]


# --- plumbing ---------------------------------------------------------------------------------


def node_url(args: argparse.Namespace) -> str:
    """The node's base URL (``http://`` added when no scheme is given); CliError when it
    is not an http(s) URL with a host and a valid port (regressions: a traceback, or
    ``ftp://x`` read as host ``ftp``)."""
    from yarl import URL

    raw = str(args.node or os.environ.get("JANGBU_NODE") or DEFAULT_NODE).rstrip("/")
    url = raw if "://" in raw else "http://" + raw
    try:
        parsed = URL(url)
        valid = (parsed.scheme in ("http", "https") and bool(parsed.host)
                 and bool(parsed.port) and not parsed.query_string and not parsed.fragment)
    except ValueError:
        valid = False
    if not valid:  # (a query or fragment once made every path land on the web page)
        raise CliError(f"invalid node URL {raw!r}: expected http://HOST:PORT")
    return url


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds > 0 (0 or less once meant no timeout)."""
    value = _seconds(text)
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def wait_seconds(text: str) -> float:
    """An argparse type: how long a submit waits for its commit, as the node allows it
    (node/defaults.py MAX_WAIT_COMMIT_S)."""
    from node.defaults import MAX_WAIT_COMMIT_S

    value = _seconds(text)
    if not 0 < value <= MAX_WAIT_COMMIT_S:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_WAIT_COMMIT_S} seconds (what the node allows)")
    return value


def grace_seconds(text: str) -> float:
    """An argparse type: a number of seconds >= 0 (``devnet down --timeout 0``: SIGKILL at
    once); nan, inf and negatives are refused (nan once SIGKILLed every node, exit 0)."""
    value = _seconds(text)
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError("must be at least 0 and at most 86400 seconds")
    return value


def load_key(args: argparse.Namespace, *, required: bool) -> SigningKey | None:
    from node.keys import KeyFileError, load_key_file

    path = getattr(args, "key_file", None) or os.environ.get("JANGBU_KEY")
    if not path:
        if required:
            raise CliError("this command signs: give a member key with --key FILE "
                           "(or set JANGBU_KEY)")
        return None
    try:
        return load_key_file(path)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None


def parse_json_object(text: str | None, flag: str = "--args") -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{flag} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:  # (regression: a traceback for thousands of nested brackets)
        raise CliError(f"{flag} is nested too deeply") from None
    if not isinstance(value, dict):
        raise CliError(f"{flag} must be a JSON object, like '{{\"id\": \"X\"}}'")
    return value


def run(action: Action, *, needs_key: bool = False) -> Callable[[argparse.Namespace], int]:
    """An argparse ``func``: load the key, open a client, turn every failure into CliError."""

    def func(args: argparse.Namespace) -> int:
        import aiohttp

        from node.client import Client, ClientError

        signs = needs_key or getattr(args, "signed", False)
        key = load_key(args, required=signs) if signs else None
        url = node_url(args)

        async def main() -> int:
            async with Client(url, key=key, timeout_s=args.timeout) as client:
                return await action(client, args)

        try:  # (a closed stdout, ``| head``, is cli.output.TerminalSafe's to handle)
            return asyncio.run(main())
        except ClientError as exc:
            raise CliError(f"{exc.code}: {exc.message}" if exc.message else exc.code) from None
        except aiohttp.ClientConnectorError:
            raise CliError(f"cannot reach node at {url}") from None
        except aiohttp.InvalidURL:
            raise CliError(f"invalid node URL {url!r}") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise CliError(f"request to {url} failed: {exc or type(exc).__name__}") from None
        except TimeoutError:
            raise CliError(f"node at {url} did not answer within {args.timeout:g}s") from None
        except CanonicalError as exc:  # args a transaction cannot carry (a float, NaN)
            raise CliError(f"cannot sign these arguments: {exc}") from None

    return command(func)


# --- status and blocks ------------------------------------------------------------------------


async def do_status(client: Client, args: argparse.Namespace) -> int:
    status = await client.status()
    if args.json:
        print_json(status)
        return 0
    peers = status.get("peers", [])
    validators = status.get("validators", [])
    lines = [
        ("node", f"{status.get('name')} ({short(status.get('node_id'))})"),
        ("chain", status.get("chain_id")),
        ("height", status.get("height")),
        ("latest block", f"{short(status.get('latest_block_hash'), 16)}"
                         + (f"  {age(status['latest_block_time_ms'])} ago"
                            if status.get("latest_block_time_ms") else "")),
        ("peers", f"{len(peers)}/{max(len(validators) - 1, 0)}  "
                  + (", ".join(p["name"] for p in peers) or "-")),
        ("syncing", "yes" if status.get("syncing") else "no"),
        ("mempool", status.get("mempool")),
        ("contracts", ", ".join(status.get("contracts", []))),
        ("uptime", f"{status.get('uptime_s')}s"),
    ]
    for label, value in lines:
        print(f"{label + ':':<14}{value}")
    return 0


async def do_block(client: Client, args: argparse.Namespace) -> int:
    height = args.height
    if height != "latest":
        try:
            height = int(height)
        except ValueError:
            raise CliError(f"HEIGHT must be a number or 'latest', got {height!r}") from None
    block = await client.block(height)
    if args.json:
        print_json(block)
        return 0
    header = block["header"]
    print(f"block {header.get('height')}  {block['hash']}")
    for key in ("time_ms", "proposer", "prev_hash", "state_root", "txs_root", "results_root"):
        if key in header:
            value = header[key]
            if key == "time_ms":
                value = f"{value}  ({age(value)} ago)"
            print(f"  {key + ':':<14}{value}")
    txs = block.get("txs", [])
    print(f"  {'txs:':<14}{len(txs)}")
    for tx in txs:
        print(f"    {tx.get('hash')}  {tx.get('contract')}.{tx.get('action')}")
    return 0


# --- transactions -----------------------------------------------------------------------------


def print_receipt(receipt: Mapping[str, Any]) -> None:
    if receipt.get("status") != "committed":
        print(f"tx {receipt.get('hash')}: {receipt.get('status')}")
        return
    print(f"tx {receipt['hash']}: committed at height {receipt['height']} "
          f"(index {receipt['index']}): {receipt['code']}"
          + (f" {receipt['message']}" if receipt.get("message") else ""))
    for event in receipt.get("events", []):
        print("  " + format_event_body(event))


def format_event_body(event: Mapping[str, Any]) -> str:
    attrs = event.get("attrs") or {}
    text = " ".join(f"{k}={_attr(v)}" for k, v in attrs.items())
    return f"{event.get('contract')}.{event.get('type')} {text}".rstrip()


def _attr(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


async def submit_and_report(client: Client, args: argparse.Namespace, contract: str,
                            action: str, tx_args: Mapping[str, Any]) -> int:
    from node.client import ClientError

    tx = await client.make_tx(contract, action, tx_args)
    try:
        receipt = await client.submit(tx, wait=not args.no_wait, timeout_s=args.wait_timeout)
    except ClientError as exc:
        if exc.code != "E_TIMEOUT":
            raise
        # Still pending, and it may well commit: say which transaction to look for (review:
        # the hash was nowhere, and --json printed nothing).
        if args.json:
            print_json({"hash": tx.hash.hex(), "status": "pending", "code": "E_TIMEOUT"})
        raise CliError(f"transaction {tx.hash.hex()} not committed within the wait; it is "
                       f"still pending: jangbu tx get {tx.hash.hex()}") from None
    if args.json:
        print_json(receipt)
    else:
        print_receipt(receipt)
    code = receipt.get("code")
    if receipt.get("status") == "committed" and code != OK:
        raise CliError(f"transaction {receipt['hash']} failed: {code}: "
                       f"{receipt.get('message', '')}".rstrip(": "))
    return 0


async def do_tx_submit(client: Client, args: argparse.Namespace) -> int:
    return await submit_and_report(client, args, args.contract, args.action,
                                   parse_json_object(args.args))


async def do_tx_get(client: Client, args: argparse.Namespace) -> int:
    tx_hash = args.hash.lower().removeprefix("0x")
    if len(tx_hash) != 64 or any(c not in "0123456789abcdef" for c in tx_hash):
        raise CliError("HASH must be 64 hex characters")
    receipt = await client.tx(tx_hash)
    if args.json:
        print_json(receipt)
    else:
        print_receipt(receipt)
    return 0


# --- queries ----------------------------------------------------------------------------------


async def do_query(client: Client, args: argparse.Namespace) -> int:
    query_args = parse_json_object(args.args)
    if args.signed and client.key is None:
        raise CliError("--signed needs a member key: give --key FILE (or set JANGBU_KEY)")
    result = await client.query(args.contract, args.name, query_args, signed=args.signed)
    if args.json:
        print_json(result)
        return 0
    rendered = records_table(result) if isinstance(result, list) else None
    if rendered is not None:
        print(rendered)
    elif isinstance(result, dict) and all(not isinstance(v, dict | list) or
                                          all(not isinstance(x, dict | list) for x in v)
                                          for v in result.values()):
        for key, value in result.items():
            print(f"{key + ':':<16}{_attr(value)}")
    elif isinstance(result, str | int | float | bool) or result is None:
        print(result)
    else:
        print_json(result)
    return 0


# --- events -----------------------------------------------------------------------------------


def format_event(record: Mapping[str, Any]) -> str:
    return f"h={record.get('height')} tx={short(record.get('tx'))} {format_event_body(record)}"


async def do_events(client: Client, args: argparse.Namespace) -> int:
    """Print events from --from-height; stop at the current height unless --follow."""
    import aiohttp

    from node.client import ClientError

    params = {k: v for k, v in (("contract", args.contract), ("type", args.type),
                                ("key", args.key_filter)) if v is not None}
    from_height = args.from_height
    if from_height is None and not args.follow:
        from_height = 1
    if from_height is not None:
        params["from_height"] = str(from_height)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=args.timeout, sock_read=None)
    async with client.session.get(client.base_url + "/v1/events", params=params,
                                  timeout=timeout) as resp:
        if resp.status != 200:
            raw = await resp.read()
            try:
                body = json.loads(raw)
                raise ClientError(resp.status, body["code"], body.get("message", ""))
            except (ValueError, KeyError, TypeError):  # another server: one line, as elsewhere
                raise ClientError(resp.status, "E_NOT_JANGBU",
                                  f"{client.base_url} does not answer as a jangbu node API "
                                  f"({client._not_api(raw)})") from None
        data: list[str] = []
        event_name = ""
        last_height = None
        async for raw in resp.content:
            line = raw.decode(errors="replace").rstrip("\r\n")
            if line == ": live" and not args.follow:
                return 0  # the stored history is done; without --follow that is all
            if line.startswith("event:"):
                event_name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                if event_name == "overflow":
                    resume = "" if last_height is None else f" --from-height {last_height}"
                    raise CliError(f"the node dropped this stream (too slow); resume with "
                                   f"jangbu events{resume} ...")
                record = json.loads("\n".join(data))
                data, event_name = [], ""
                last_height = record.get("height")
                if args.json:
                    print_json(record, compact=True)
                else:
                    print(format_event(record))
                sys.stdout.flush()
                if getattr(sys.stdout, "reader_gone", False):
                    return 0  # ``| head -n 5``: nobody reads the rest (review)
    raise CliError("the node closed the event stream")


# --- membership ---------------------------------------------------------------------------------


async def do_member_add(client: Client, args: argparse.Namespace) -> int:
    tx_args: dict[str, Any] = {"pubkey": args.pubkey.lower(), "kind": args.kind}
    if args.roles:
        tx_args["roles"] = [r.strip() for r in args.roles.split(",") if r.strip()]
    if args.label:
        tx_args["label"] = args.label
    return await submit_and_report(client, args, "membership", "add_member", tx_args)


async def do_member_revoke(client: Client, args: argparse.Namespace) -> int:
    return await submit_and_report(client, args, "membership", "revoke_member",
                                   {"pubkey": args.pubkey.lower()})


# --- argparse -----------------------------------------------------------------------------------


def common_options(*, with_key: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--node", metavar="URL",
                        help=f"node API URL (default: $JANGBU_NODE or {DEFAULT_NODE})")
    if with_key:
        common.add_argument("--key", dest="key_file", metavar="FILE",
                            help="member key file that signs (default: $JANGBU_KEY)")
    common.add_argument("--json", action="store_true", help="machine-readable JSON output")
    common.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="S",
                        help="HTTP timeout in seconds (default 60)")
    return common


def submit_options() -> argparse.ArgumentParser:
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--no-wait", action="store_true",
                      help="return once the node accepted it (do not wait for the commit)")
    opts.add_argument("--wait-timeout", type=wait_seconds, default=30.0, metavar="S",
                      help="seconds to wait for the commit (default 30, at most 300)")
    return opts


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = common_options()
    unsigned = common_options(with_key=False)
    submit = submit_options()

    p = subparsers.add_parser("status", parents=[unsigned], help="a node's height, peers, sync")
    p.set_defaults(func=run(do_status))

    p = subparsers.add_parser("block", parents=[unsigned], help="show a block")
    p.add_argument("height", nargs="?", default="latest", metavar="HEIGHT|latest")
    p.set_defaults(func=run(do_block))

    tx = subparsers.add_parser("tx", help="submit or look up transactions")
    tx_sub = tx.add_subparsers(dest="tx_command", metavar="SUBCOMMAND")
    p = tx_sub.add_parser("submit", parents=[common, submit],
                          help="sign and submit a transaction, print its receipt")
    p.add_argument("--contract", required=True)
    p.add_argument("--action", required=True)
    p.add_argument("--args", default="{}", metavar="JSON", help="arguments as a JSON object")
    p.set_defaults(func=run(do_tx_submit, needs_key=True))
    p = tx_sub.add_parser("get", parents=[unsigned], help="status and receipt of a transaction")
    p.add_argument("hash", metavar="HASH")
    p.set_defaults(func=run(do_tx_get))
    tx.set_defaults(func=subcommand_help(tx))

    p = subparsers.add_parser("query", parents=[common], help="run a contract query")
    p.add_argument("contract", metavar="CONTRACT")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--args", metavar="JSON", help="query arguments as a JSON object")
    p.add_argument("--signed", action="store_true",
                   help="sign the request with --key (needed for private records)")
    p.set_defaults(func=run(do_query))

    p = subparsers.add_parser(
        "events", parents=[unsigned],
        help="print committed events (from --from-height to now, or live with --follow)")
    p.add_argument("--contract")
    p.add_argument("--type")
    p.add_argument("--key", dest="key_filter", metavar="K",
                   help="only events indexed under this key (e.g. an order id)")
    p.add_argument("--from-height", type=int, metavar="H",
                   help="start at this height (default: 1, or live only with --follow)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.set_defaults(func=run(do_events))

    member = subparsers.add_parser("member", help="add or revoke keys of your organisation")
    m_sub = member.add_subparsers(dest="member_command", metavar="SUBCOMMAND")
    p = m_sub.add_parser("add", parents=[common, submit],
                         help="register a member or device key (signed by an org admin)")
    p.add_argument("--pubkey", required=True, metavar="HEX")
    p.add_argument("--roles", metavar="R1,R2", help="roles (default: all of the org's roles)")
    p.add_argument("--kind", choices=["member", "device"], default="member")
    p.add_argument("--label")
    p.set_defaults(func=run(do_member_add, needs_key=True))
    p = m_sub.add_parser("revoke", parents=[common, submit],
                         help="revoke a key of your organisation (signed by an org admin)")
    p.add_argument("--pubkey", required=True, metavar="HEX")
    p.set_defaults(func=run(do_member_revoke, needs_key=True))
    member.set_defaults(func=subcommand_help(member))


