"""The ``jangbu`` command line: keys, networks, nodes (more commands in cli/commands_*)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cli.errors import CliError
from cli.output import TerminalSafe, printable, subcommand_help

if TYPE_CHECKING:
    from node.config import NodeConfig

# The commands import what they need when they run: ``jangbu node start`` begins opening
# its store before anything heavy is imported (``_begin_opening_the_store``), and a module
# imported here would be imported before that.


def cmd_keygen(args: argparse.Namespace) -> int:
    from nacl.signing import SigningKey

    from node.keys import KeyFileError, write_key_file
    key = SigningKey.generate()
    try:
        write_key_file(args.out, key, args.kind)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    print(f"wrote {args.kind} key {args.out}")
    print(f"public key: {key.verify_key.encode().hex()}")
    return 0


def cmd_network_init(args: argparse.Namespace) -> int:
    from cli.network import init_network, parse_params, preset_contracts
    from cli.presets import PRESETS, parse_orgs
    from node.registry import ContractLoadError
    try:
        params = parse_params(args.param)
        orgs = parse_orgs(args.orgs) if args.orgs else PRESETS[args.preset]
        contracts = preset_contracts(args.preset)
        if args.contracts and not args.orgs:  # (review: silently ignored)
            raise CliError("--contracts needs --orgs (a preset names its own contracts: "
                           f"{', '.join(contracts)} for {args.preset})")
        if args.orgs and args.contracts:
            contracts = ["membership", *[c for c in args.contracts.split(",") if c != "membership"]]
        genesis = init_network(Path(args.dir), orgs, contracts,
                               chain_id=args.chain_id or f"jangbu-{args.preset}",
                               base_port=args.base_port, force=args.force, consensus=params)
    except (FileExistsError, ValueError, ContractLoadError) as exc:
        raise CliError(str(exc)) from None
    print(f"created network {genesis.parent} ({len(orgs)} validators)")
    for i, (org_id, _, roles) in enumerate(orgs):
        print(f"  {org_id:<16} roles={'+'.join(roles):<22} p2p=:{args.base_port + 2 * i}"
              f"  api=http://127.0.0.1:{args.base_port + 2 * i + 1}")
    print(f"start one node with: jangbu node start --home {Path(args.dir) / orgs[0][0]}")
    return 0


def cmd_node_start(args: argparse.Namespace) -> int:
    from node.config import ConfigError, load_config
    from node.store_open import close_untaken
    try:
        config = load_config(args.home).with_overrides(
            p2p_listen=args.p2p_listen, api_listen=args.api_listen, log_level=args.log_level,
            log_format=args.log_format)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    # A restart's LevelDB log replay runs while the node's modules are imported (begun
    # already by main() unless this was called another way; one main() began for another
    # home than argparse's is closed).
    _preopen(config)
    close_untaken(keep=str(config.data_dir))
    import asyncio

    from node.lean_import import without_eager_ca_bundle
    with without_eager_ca_bundle():  # ~0.05-0.1 s of each start (node/lean_import.py)
        from node.app import NodeStartError, event_loop_factory, run_node, setup_logging
    from node.registry import ContractLoadError
    from node.store import StoreError
    setup_logging(config.log_level, config.log_format)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run_node(config))
    except (NodeStartError, StoreError, ContractLoadError, ConfigError, OSError) as exc:
        if config.log_format == "json":
            # Journald and log shippers read the node's stderr as JSON lines: its last
            # line too (it was the one plain-text line of a JSON log).
            import logging
            logging.getLogger("jangbu.node").critical("%s", exc)
            return 1
        raise CliError(str(exc)) from None
    return 0


def cmd_node_rebuild_index(args: argparse.Namespace) -> int:
    """Rebuild a stopped node's state-tree leaf index from its stored values."""
    import plyvel

    from node.block import BlockError
    from node.config import ConfigError, load_config
    from node.genesis import load_genesis
    from node.state_check import DamagedValuesError, rebuild_leaf_index
    from node.store import LedgerStore, StoreError
    try:
        config = load_config(args.home)
        genesis = load_genesis(config.genesis_file)
        if not (config.data_dir / "CURRENT").is_file():
            raise CliError(f"no node data in {config.data_dir}: nothing to rebuild")
        store = LedgerStore.open(str(config.data_dir), chain_id=genesis.chain_id,
                                 genesis_hash=genesis.hash)
    except (ConfigError, StoreError, ValueError) as exc:
        raise CliError(str(exc)) from None
    try:
        report = rebuild_leaf_index(store, genesis)
    except (DamagedValuesError, StoreError) as exc:
        raise CliError(str(exc)) from None
    except (plyvel.Error, BlockError) as exc:  # a damaged table or block met while reading
        raise CliError(f"the data directory {config.data_dir} is damaged ({exc}); the index "
                       "cannot be rebuilt: restore a backup or resync (docs/operations.md)"
                       ) from None
    finally:
        store.close()
    found = ("the index was intact" if not report.changed
             else f"{report.changed:,} entries were wrong, missing or extra")
    print(f"rebuilt the leaf index of {config.data_dir} at height {report.height} from the "
          f"stored values: {report.entries:,} entries ({found})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from cli.network import DEFAULT_BASE_PORT
    from cli.presets import PRESETS
    parser = argparse.ArgumentParser(
        prog="jangbu", description="jangbu (장부): a permissioned multi-party ledger node")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("keygen", help="create an Ed25519 key file (mode 0600)")
    p.add_argument("--out", required=True, help="key file to create (never overwritten)")
    p.add_argument("--kind", choices=["node", "member", "device"], default="member")
    p.set_defaults(func=cmd_keygen)

    network = sub.add_parser("network", help="create a network")
    network.set_defaults(func=subcommand_help(network))
    net = network.add_subparsers(dest="network_command", metavar="SUBCOMMAND")
    p = net.add_parser("init", help="write genesis and one node home per organisation")
    p.add_argument("--preset", choices=sorted(PRESETS), default="customs")
    p.add_argument("--dir", required=True, help="directory for the network")
    p.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    p.add_argument("--orgs", help='custom organisations: "org:role1+role2,org2:role3"')
    p.add_argument("--contracts", help="with --orgs: comma-separated contract names")
    p.add_argument("--chain-id")
    p.add_argument("--force", action="store_true", help="replace an existing directory")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a genesis consensus parameter, e.g. min_block_interval_ms=100 "
                        "(repeatable; docs/operations.md lists them)")
    p.set_defaults(func=cmd_network_init)

    node_group = sub.add_parser("node", help="run a node")
    node_group.set_defaults(func=subcommand_help(node_group))
    node = node_group.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    p = node.add_parser("start", help="run a node in the foreground (SIGTERM stops it)")
    p.add_argument("--home", required=True, help="the node's home directory")
    p.add_argument("--p2p-listen", help="override p2p.listen (host:port)")
    p.add_argument("--api-listen", help="override api.listen (host:port)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"])
    p.set_defaults(func=cmd_node_start)
    p = node.add_parser("rebuild-index", help="rebuild a stopped node's state-tree leaf index "
                        "from its stored values (after 'leaf index ... damaged')")
    p.add_argument("--home", required=True, help="the node's home directory")
    p.set_defaults(func=cmd_node_rebuild_index)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []  # type: ignore[type-arg]


def _load_extra_commands() -> None:
    """Commands that live in their own modules (devnet, client commands, demos, bench)."""
    import importlib
    if EXTRA_COMMANDS:
        return  # loaded by an earlier main() in this process (tests call it many times)
    for name in ("cli.devnet", "cli.client_commands", "cli.demo", "cli.bench"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        EXTRA_COMMANDS.append(module.register)


def _begin_opening_the_store(words: Sequence[str]) -> None:
    """For ``node start``: read the home's configuration and begin opening its store on a
    thread (node/store_open.py), before the parser and the node's modules are imported.

    A restarted node replays LevelDB's log meanwhile: begun ~0.1 s sooner than from
    cmd_node_start, time to ready fell by ~0.1 s (docs/benchmarks.md, eighteenth round).
    Nothing is reported here: cmd_node_start reads the configuration again and reports
    whatever is wrong with it, and a second preopen of the same directory does nothing.
    """
    home = None
    for index, word in enumerate(words):
        if word == "--home" and index + 1 < len(words):
            home = words[index + 1]
        elif word.startswith("--home="):
            home = word.removeprefix("--home=")
    if home is None:
        return
    from node.config import load_config
    try:
        config = load_config(home)
    except Exception:  # whatever it is, cmd_node_start reports it
        return
    _preopen(config)


def _preopen(config: NodeConfig) -> None:
    """Begin opening ``config``'s store (node/store_open.py ``preopen``) with this node's
    LevelDB write buffer (``use_node_write_buffer``: validators spread theirs apart)."""
    from node.store_open import preopen, use_node_write_buffer
    use_node_write_buffer(config.genesis_file, config.node_key_file)
    preopen(str(config.data_dir))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # (regression: a traceback for Ctrl-C during the imports)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:2] == ["node", "start"]:
        _begin_opening_the_store(words[2:])
        try:
            return _run(argv)
        finally:
            # An open begun above and never taken (a bad flag, --help, another home than
            # argparse read) must not hold that store's lock (node/store_open.py).
            from node.store_open import close_untaken
            close_untaken()
    # The node's own commands are all here: a killed node restarted under a supervisor
    # begins its catch-up ~0.1 s sooner without importing the demos, bench and client.
    _load_extra_commands()
    return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    stdout = sys.stdout
    sys.stdout = TerminalSafe(stdout)  # before argparse, which prints --help there too
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 0 if argv is None and len(sys.argv) == 1 else 2
        return int(func(args))
    except CliError as exc:
        print(printable(f"jangbu: error: {exc}"), file=sys.stderr)
        return 1
    except OSError as exc:
        # The machine said no (a missing directory, a file where a directory should be, no
        # permission): its own words, not a traceback (regressions: keygen --out into a
        # missing directory, --dir naming a file, a data_dir that cannot be created).
        print(printable(f"jangbu: error: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()
        sys.stdout = stdout


if __name__ == "__main__":
    sys.exit(main())
