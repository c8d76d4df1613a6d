"""Finding contract modules: the ``jangbu.contracts`` entry-point group.

A network's genesis names the contracts it runs and their versions; the node loads each
through its installed distribution's entry point, so a third-party contract is a separate
package that declares ``[project.entry-points."jangbu.contracts"] name = "pkg.mod:Class"``.
A contract that is missing, of the wrong version, or not a ``Contract`` stops the node at
start-up with a clear message: running a different rule book than the other nodes would
only fork the state later.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points

from contracts.sdk import Contract

GROUP = "jangbu.contracts"


class ContractLoadError(RuntimeError):
    """A contract named by genesis cannot be loaded as required."""


def available_contracts() -> dict[str, str]:
    """Installed contract names -> ``module:attr`` (for ``jangbu`` diagnostics)."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def installed_version(name: str) -> str:
    """The version of the installed contract ``name`` (what a new genesis should name)."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:  # an installed but broken package: report, do not crash
                raise ContractLoadError(f"contract {name!r} failed to import: {exc}") from exc
            return str(cls.version)
    raise ContractLoadError(f"contract {name!r} is not installed")


def load_contracts(wanted: Iterable[tuple[str, str]]) -> dict[str, Contract]:
    """Instantiate each ``(name, version)`` named by genesis, in order."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    loaded: dict[str, Contract] = {}
    for name, version in wanted:
        ep = found.get(name)
        if ep is None:
            raise ContractLoadError(
                f"contract {name!r} is named in genesis but not installed "
                f"(installed: {', '.join(sorted(found)) or 'none'})"
            )
        try:
            cls = ep.load()
        except Exception as exc:  # an installed but broken package: report, do not crash
            raise ContractLoadError(f"contract {name!r} failed to import: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Contract)):
            raise ContractLoadError(f"entry point {ep.value} is not a jangbu Contract class")
        contract = cls.for_version(version)
        if contract is None:
            raise ContractLoadError(
                f"contract {name!r} is version {cls.version}, genesis requires {version} "
                "(this build cannot run it)"
            )
        if contract.name != name:
            raise ContractLoadError(f"entry point {name!r} provides contract {contract.name!r}")
        loaded[name] = contract
    return loaded
