"""The OpenAPI 3.1 description of the HTTP API, served at ``/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


COMMON_ERRORS = {
    "400": "malformed request (E_MALFORMED_HTTP: not HTTP the server parses; E_ARGS: a query "
           "parameter given twice)",
    "405": "method not allowed (E_METHOD; Allow names the allowed ones)",
    "503": "the node holds [api] max_connections open (E_BUSY, Retry-After)",
}
"""What any route can answer besides its own (review: none of these was declared)."""

BODY_ERRORS = {
    "408": "the body did not arrive within [api] idle_timeout_s (E_TIMEOUT)",
    "413": "the body is over [api] max_request_bytes (E_TOO_LARGE)",
}


def _op(summary: str, responses: dict[str, str], *, params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, msgpack: str = "") -> dict[str, Any]:
    """One operation; ``msgpack`` describes the ``application/msgpack`` form of its body."""
    every = {**COMMON_ERRORS, **(BODY_ERRORS if body else {})}
    for code, text in responses.items():
        every[code] = f"{text}; {every[code]}" if code in every else text
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            code: {"description": text,
                   "content": {"application/json": {"schema": _ERROR if code[0] in "45"
                                                    else {"type": "object"}}}}
            for code, text in sorted(every.items())
        },
    }
    if params:
        op["parameters"] = params
    if body:
        content: dict[str, Any] = {"application/json": {"schema": body}}
        if msgpack:
            content["application/msgpack"] = {
                "schema": {"type": "string", "contentMediaType": "application/msgpack",
                           "description": msgpack}}
        op["requestBody"] = {"required": True, "content": content}
    return op


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


TX_SCHEMA = {
    "type": "object",
    "required": ["chain_id", "contract", "action", "args", "signer", "nonce", "sig"],
    "additionalProperties": False,
    "properties": {
        "chain_id": {"type": "string"},
        "contract": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "action": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "args": {"type": "object"},
        "signer": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "nonce": {"type": "integer", "minimum": 0, "maximum": 18446744073709551615},
        "sig": {"type": "string", "pattern": "^[0-9a-f]{128}$"},
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "jangbu node API", "version": "1",
             "description": "Submit signed transactions, read blocks, state with proofs, "
                            "contract queries and the committed event stream."},
    "components": {"schemas": {
        "Error": {"type": "object", "required": ["code", "message"],
                  "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
        "Transaction": TX_SCHEMA,
    }},
    "paths": {
        "/v1/txs": {"post": _op(
            "Submit one signed transaction (?wait=commit waits for its receipt). JSON, or "
            "Content-Type application/msgpack with the transaction's canonical bytes",
            {"200": "committed (wait=commit)", "202": "accepted into the mempool",
             "400": "malformed, bad signature, refused by the contract's check",
             "409": "duplicate or already committed", "413": "too large",
             "503": "mempool full (Retry-After)", "504": "not committed within the timeout"},
            params=[_query_param("wait", {"type": "string", "enum": ["commit", "none"]}),
                    _query_param("timeout", {"type": "string",
                                              "pattern": r"^[0-9]{1,6}(\.[0-9]{1,9})?$"})],
            body={"$ref": "#/components/schemas/Transaction"},
            msgpack="the transaction's canonical bytes")},
        "/v1/txs/batch": {"post": _op(
            "Submit many transactions; one result per transaction. JSON, or "
            "Content-Type application/msgpack: a canonical map {txs: [...]} whose items are "
            "each transaction's canonical bytes (bin; the fastest form) or its map",
            {"200": "per-transaction results", "400": "malformed body", "413": "too many"},
            body={"type": "object", "required": ["txs"], "properties": {
                "txs": {"type": "array", "items": {"$ref": "#/components/schemas/Transaction"}}}},
            msgpack="a canonical map {txs: [...]} whose items are each transaction's canonical "
                    "bytes (bin) or its map")},
        "/v1/txs/{hash}": {"get": _op(
            "Transaction status: pending, committed (with receipt and Merkle proof) or unknown",
            {"200": "pending or committed", "400": "bad hash", "404": "unknown"},
            params=[_path_param("hash", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"})])},
        "/v1/blocks/latest": {"get": _op("The last committed block with its certificate",
                                         {"200": "block", "404": "no block yet"})},
        "/v1/blocks/{height}": {"get": _op(
            "A committed block with its certificate", {"200": "block", "400": "bad height",
                                                        "404": "no such block"},
            params=[_path_param("height", {"type": "integer", "minimum": 0,
                                           "description": "0 and heights not yet committed "
                                                          "are 404"})])},
        "/v1/status": {"get": _op("Chain id, genesis hash, height, peers, validators, sync state",
                                  {"200": "status"})},
        "/v1/evidence": {"get": _op(
            "Conflicting signed messages of validators (equivocation) this node has seen",
            {"200": "evidence, oldest first, and whether more follow", "400": "bad argument"},
            params=[_query_param("from_height", {"type": "integer", "minimum": 0}),
                    _query_param("after", {"type": "string", "pattern": "^[0-9a-fA-F]+$",
                                           "description": "a record's id (a page's next)"}),
                    _query_param("limit", {"type": "integer", "minimum": 1,
                                           "maximum": 1000})])},
        "/v1/state/{contract}/{key}": {"get": _op(
            "One state value with its proof against state_root",
            {"200": "value and proof", "404": "absent (proof of absence) or unknown contract"},
            params=[_path_param("contract", {"type": "string"}),
                    _path_param("key", {"type": "string"})])},
        "/v1/query/{contract}/{name}": {"get": _op(
            "A contract query; private ones need a signed request (X-Jangbu-* headers)",
            {"200": "result", "400": "bad arguments", "401": "bad signature",
             "403": "not allowed", "404": "unknown contract, query or record"},
            params=[_path_param("contract", {"type": "string"}),
                    _path_param("name", {"type": "string"}),
                    _query_param("args", {"type": "string", "description": "JSON object"})])},
        "/v1/events": {"get": {
            "summary": "Server-Sent Events of committed contract events (filterable, resumable)",
            "parameters": [_query_param("contract", {"type": "string"}),
                           _query_param("type", {"type": "string"}),
                           _query_param("key", {"type": "string"}),
                           _query_param("from_height", {"type": "integer", "minimum": 0})],
            "responses": {"200": {"description": "text/event-stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          "400": {"description": "bad filter",
                                  "content": {"application/json": {"schema": _ERROR}}}}}},
        "/v1/openapi.json": {"get": _op("This document", {"200": "OpenAPI document"})},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "text format",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/healthz": {"get": _op("Liveness", {"200": "ok"})},
    },
}


def _declare_common_errors() -> None:
    """Operations written out by hand (the event stream) get the common answers too."""
    for item in OPENAPI["paths"].values():
        for op in item.values():
            for code, text in COMMON_ERRORS.items():
                op["responses"].setdefault(code, {
                    "description": text,
                    "content": {"application/json": {"schema": _ERROR}}})


_declare_common_errors()
