"""``notes``: the smallest useful third-party contract (a shared, append-only notice board).

Any member may post a note under a topic; notes cannot be edited or deleted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from contracts.sdk import (
    E_UNKNOWN_ACTION,
    Call,
    Context,
    Contract,
    ContractError,
    QueryContext,
    arg_str,
)

TOPIC = re.compile(r"[a-z0-9-]{1,32}")


class NotesContract(Contract):
    name = "notes"
    version = "1"

    def check(self, call: Call) -> None:
        if call.action != "post":
            raise ContractError(E_UNKNOWN_ACTION, f"notes has no action {call.action!r}")
        arg_str(call.args, "topic", pattern=TOPIC)
        arg_str(call.args, "text", max_len=500)

    def apply(self, ctx: Context, call: Call) -> None:
        topic = str(call.args["topic"])
        count = int(ctx.state.get(f"count/{topic}") or 0)
        ctx.state.put(f"note/{topic}/{count:08d}",
                      {"text": call.args["text"], "org": ctx.signer.org, "height": ctx.height})
        ctx.state.put(f"count/{topic}", count + 1)
        ctx.emit("posted", {"topic": topic, "index": count}, keys=(topic,))

    def query(self, ctx: QueryContext, name: str, args: Mapping[str, Any]) -> Any:
        if name != "topic":
            return super().query(ctx, name, args)
        topic = arg_str(args, "topic", pattern=TOPIC)
        return [value for _, value in ctx.state.scan(f"note/{topic}/")]
