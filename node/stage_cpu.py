"""CPU time a node spends in each stage of its work, per thread: an opt-in profile.

Why: four nodes and the load generator share two cores, and neither usual profiler says
where a node's CPU goes. py-spy samples wall time, so a thread that is runnable but not
running counts as busy in whatever it last did; Linux perf charges CPU exactly but cannot
name Python functions on CPython 3.11 (docs/benchmarks.md, fourteenth round). Reading the
thread's own CPU clock (``time.thread_time``) before and after a stage charges that stage
exactly what its thread ran, however often the thread was descheduled in between.

How: with ``JANGBU_STAGE_CPU=1`` in a node's environment, :func:`install` wraps each
function of :data:`STAGES` (methods of the node's classes, looked up by name) and the node
exports the totals as ``jangbu_stage_cpu_seconds_total{stage="..."}`` and
``jangbu_stage_calls_total{stage="..."}``; ``jangbu bench`` reads them before and after its
run and prints CPU per transaction by stage. Off by default: the thread's clock is a system
call (0.56 µs alone, more under load), read twice per stage call, and four stages run per
transaction: measured, a node pays ~13 µs more per transaction with it on (~7%, three
alternated pairs of 6,000 orders, docs/benchmarks.md), and each figure includes the clock
reads of the stages inside it.

Stages nest (admission includes its signature check; execution includes the state
tree's preview; commit includes the store's write): each figure is inclusive of the
stages inside it, and :data:`STAGES` says which contains which on a node keeping up with
its network. Off that path there is more nesting: a block's transactions are decoded in
its validation, the API decodes a submitted transaction before ``http_admission``, and a
commit of a block not validated yet (block sync) validates and executes it inside
``commit``. Only what runs on the
thread that calls a stage is charged to it: a block's batched signature checks on the
worker thread (node/sigcheck.py) and LevelDB's compactions are not. The process CPU
(``process_cpu_seconds_total``) and the event loop thread's
(``jangbu_event_loop_thread_cpu_seconds_total``) give the rest.

The wrapping is per process (class attributes), as one ``jangbu node start`` runs one node.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENV = "JANGBU_STAGE_CPU"


@dataclass(frozen=True)
class Stage:
    """One measured function: ``module.cls.attr``, reported as ``name``."""

    name: str
    module: str
    cls: str
    attr: str
    within: str = ""  # the stage that contains it, if any (for reading the figures)


STAGES: tuple[Stage, ...] = (
    # Intake: transactions from peers and from the HTTP API.
    Stage("gossip_intake", "node.driver", "ConsensusDriver", "_on_gossiped_txs"),
    Stage("http_admission", "node.driver", "ConsensusDriver", "submit_local"),
    Stage("tx_decode", "node.tx", "Transaction", "decode", "gossip_intake"),
    Stage("admission", "node.mempool", "Mempool", "add", "gossip_intake, http_admission"),
    Stage("signature_check", "node.tx", "Transaction", "verify_signature", "admission"),
    # Deciding a block: executing it ahead (announcement), building it, validating it.
    Stage("speculation", "node.driver", "ConsensusDriver", "_speculate"),
    Stage("proposal_build", "node.driver", "ConsensusDriver", "_build_proposal"),
    Stage("block_validation", "node.driver", "ConsensusDriver", "_validate"),
    Stage("execution", "node.engine", "Engine", "execute_txs",
          "speculation, proposal_build, block_validation"),
    Stage("state_tree_preview", "node.state_tree", "StateTree", "preview", "execution"),
    # Committing it and telling subscribers.
    Stage("commit", "node.driver", "ConsensusDriver", "_commit"),
    Stage("store_write", "node.store", "LedgerStore", "commit_block", "commit"),
    Stage("state_tree_apply", "node.state_tree", "StateTree", "apply", "commit"),
    Stage("event_publish", "node.events", "EventBus", "publish_block", "commit"),
    Stage("event_stream_encode", "node.event_frames", "FrameMemo", "frame"),
    # The encrypted links between nodes.
    Stage("p2p_decrypt", "node.p2p.frames", "FrameOpener", "open"),
    Stage("p2p_encrypt", "node.p2p.frames", "FrameSealer", "seal"),
)

# stage name -> [CPU seconds, calls]; read by the node's /metrics.
totals: dict[str, list[float]] = {stage.name: [0.0, 0] for stage in STAGES}
_originals: dict[tuple[str, str, str], Any] = {}


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    clock = time.thread_time
    total = totals[name]

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            total[0] += clock() - started
            total[1] += 1

    return timed


def _target(stage: Stage) -> tuple[type, Any, Callable[..., Any]]:
    """The class, the raw attribute and the plain function of ``stage``; raises LookupError
    if the code no longer has it, or has made it something a wrapper cannot time (a
    coroutine or generator function would be timed only while it creates its object)."""
    cls = getattr(importlib.import_module(stage.module), stage.cls, None)
    if not isinstance(cls, type) or stage.attr not in cls.__dict__:
        raise LookupError(f"stage {stage.name}: {stage.module}.{stage.cls}.{stage.attr} "
                          "does not exist")
    raw = cls.__dict__[stage.attr]
    function = raw.__func__ if isinstance(raw, classmethod | staticmethod) else raw
    if not inspect.isfunction(function) or (
            inspect.iscoroutinefunction(function) or inspect.isgeneratorfunction(function)
            or inspect.isasyncgenfunction(function)):
        raise LookupError(f"stage {stage.name}: {stage.cls}.{stage.attr} is not a plain "
                          "function (a coroutine, generator or other object cannot be timed)")
    return cls, raw, function


def _wrap(stage: Stage, raw: Any, function: Callable[..., Any]) -> Any:
    timed = _timed(stage.name, function)
    if isinstance(raw, classmethod):
        return classmethod(timed)
    if isinstance(raw, staticmethod):
        return staticmethod(timed)
    return timed


def install() -> None:
    """Wrap every stage (once; again after :func:`uninstall`). All or nothing: every stage
    is found and checked (LookupError) before the first is wrapped."""
    if _originals:
        return
    wrapped = [(stage, cls, raw, _wrap(stage, raw, function))
               for stage, cls, raw, function in ((stage, *_target(stage)) for stage in STAGES)]
    for stage, cls, raw, wrapper in wrapped:
        _originals[(stage.module, stage.cls, stage.attr)] = (cls, raw)
        setattr(cls, stage.attr, wrapper)


def uninstall() -> None:
    """Put the original functions back (tests)."""
    for (_, _, attr), (cls, raw) in _originals.items():
        setattr(cls, attr, raw)
    _originals.clear()


def installed() -> bool:
    return bool(_originals)


def reader(name: str, index: int) -> Callable[[], float]:
    """A function reading stage ``name``'s CPU seconds (``index`` 0) or calls (1)."""
    total = totals[name]

    def read() -> float:
        return total[index]

    return read


def reset() -> None:
    for total in totals.values():
        total[0] = 0.0
        total[1] = 0
