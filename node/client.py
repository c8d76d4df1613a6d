"""The Python client of a jangbu node: sign, submit, wait for commit, query, follow events.

Used by the CLI, the demos, the benchmark and the tests; an integrator can use it as is::

    async with Client("http://127.0.0.1:26601", key=load_key_file("member.key")) as c:
        receipt = await c.submit(await c.make_tx("clearance", "create_order", {...}),
                                 wait=True)
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from nacl.signing import SigningKey
from yarl import URL

from consensus import canonical
from node.tx import Transaction

TAG_READ = "jangbu/read/v1"


class ClientError(Exception):
    """The node answered with an error (``status`` HTTP code, ``code`` stable error code)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message


def new_nonce() -> int:
    """A client-chosen 64-bit nonce: time in microseconds in the high bits plus randomness."""
    return ((int(time.time() * 1_000_000) << 12) | secrets.randbits(12)) & (2**64 - 1)


class Client:
    def __init__(self, base_url: str, *, key: SigningKey | None = None,
                 chain_id: str | None = None, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.chain_id = chain_id
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def _request(self, method: str, path: str, *, body: Any = None,
                       params: Mapping[str, str] | None = None,
                       headers: Mapping[str, str] | None = None,
                       ok: Sequence[int] = (200, 202), expect: str) -> Any:
        """The JSON object a request answers; ``expect`` names a field every answer of
        that route has, so that another server's JSON object is not taken for one."""
        if isinstance(body, bytes):  # already encoded (msgpack)
            data: bytes | None = body
            hdrs = {"Content-Type": "application/msgpack", **(headers or {})}
        else:
            data = None if body is None else json.dumps(body).encode()
            hdrs = {"Content-Type": "application/json", **(headers or {})}
        # encoded=True: send the target byte for byte as built (and, for signed reads, as
        # signed); yarl would otherwise re-quote it.
        url = URL(self.base_url + path, encoded=True)
        async with self.session.request(method, url, data=data,
                                        params=params, headers=hdrs) as resp:
            raw = await resp.read()
            try:
                payload = json.loads(raw) if raw else None
            except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep
                payload = None
            if resp.status in ok and isinstance(payload, dict) and expect in payload:
                return payload
            if isinstance(payload, dict) and type(payload.get("code")) is str:
                # The API's error (also one among ``ok``: a 404 without a proof).
                raise ClientError(resp.status, payload["code"], str(payload.get("message", "")))
            if resp.status not in ok:
                raise ClientError(resp.status, "E_HTTP", self._not_api(raw))
            # Every answer of the API is a JSON object with ``expect``: anything else is
            # another server (a wrong port, a proxy's page), and callers read fields of it
            # (regression: tracebacks, or ``null`` printed with exit code 0).
            raise ClientError(resp.status, "E_NOT_JANGBU",
                              f"{self.base_url} does not answer as a jangbu node API "
                              f"({self._not_api(raw)})")

    @staticmethod
    def _not_api(raw: bytes) -> str:
        """What another server answered, as one short line for an error message."""
        text = " ".join(raw.decode("utf-8", "replace").split())
        return (text[:120] + "...") if len(text) > 120 else (text or "empty body")

    # --- transactions -----------------------------------------------------------------------

    async def ensure_chain_id(self) -> str:
        if self.chain_id is None:
            self.chain_id = str((await self.status())["chain_id"])
        return self.chain_id

    async def make_tx(self, contract: str, action: str, args: Mapping[str, Any],
                      *, key: SigningKey | None = None, nonce: int | None = None) -> Transaction:
        signer = key or self.key
        if signer is None:
            raise ValueError("a signing key is needed to make a transaction")
        chain_id = await self.ensure_chain_id()
        return Transaction.create(signer, chain_id, contract, action, args,
                                  nonce if nonce is not None else new_nonce())

    async def submit(self, tx: Transaction, *, wait: bool = False,
                     timeout_s: float = 30.0) -> dict[str, Any]:
        """Submit; with ``wait`` return the committed receipt (raises ClientError on errors)."""
        # Fixed-point, as the API reads it (``str`` gives 1e-05 for a small float).
        params = {"wait": "commit", "timeout": f"{timeout_s:.3f}"} if wait else None
        result: dict[str, Any] = await self._request("POST", "/v1/txs", body=tx.encoded,
                                                     params=params, expect="hash")
        return result

    async def submit_batch(self, txs: Sequence[Transaction]) -> dict[str, Any]:
        # msgpack with each transaction as its canonical bytes: the node decodes them as
        # they are, where JSON would cost it a conversion and a re-encoding per transaction.
        body = canonical.encode({"txs": [tx.encoded for tx in txs]})
        result: dict[str, Any] = await self._request("POST", "/v1/txs/batch", body=body,
                                                     expect="results")
        return result

    async def call(self, contract: str, action: str, args: Mapping[str, Any], *,
                   key: SigningKey | None = None, wait: bool = True) -> dict[str, Any]:
        """Make, sign and submit a transaction; by default wait for its receipt."""
        return await self.submit(await self.make_tx(contract, action, args, key=key), wait=wait)

    async def tx(self, tx_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/v1/txs/{tx_hash}",
                                                     expect="status")
        return result

    # --- reads ------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/v1/status", expect="chain_id")
        return result

    async def block(self, height: int | str = "latest") -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/v1/blocks/{height}",
                                                     expect="header")
        return result

    async def state(self, contract: str, key: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/v1/state/{contract}/{key}",
                                                     ok=(200, 404), expect="proof")
        return result

    def read_headers(self, method: str, path_qs: str,
                     key: SigningKey | None = None) -> dict[str, str]:
        """Headers of a signed read (see docs/protocol.md, "Signed reads")."""
        signer = key or self.key
        if signer is None or self.chain_id is None:
            raise ValueError("signed reads need a key and the chain id")
        now = int(time.time() * 1000)
        body = {"method": method, "path": path_qs, "time_ms": now}
        sig = canonical.sign(signer, TAG_READ, self.chain_id, body)
        return {"X-Jangbu-Key": signer.verify_key.encode().hex(), "X-Jangbu-Time": str(now),
                "X-Jangbu-Signature": sig.hex()}

    async def query(self, contract: str, name: str, args: Mapping[str, Any] | None = None, *,
                    signed: bool = False, key: SigningKey | None = None) -> Any:
        from urllib.parse import urlencode
        path = f"/v1/query/{contract}/{name}"
        if args:
            path += "?" + urlencode({"args": json.dumps(dict(args), separators=(",", ":"))})
        headers = None
        if signed:
            await self.ensure_chain_id()
            headers = self.read_headers("GET", path, key)
        result = await self._request("GET", path, headers=headers, expect="result")
        return result["result"]

    async def events(self, *, contract: str | None = None, type_: str | None = None,
                     key: str | None = None, from_height: int | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        """Follow committed events (Server-Sent Events), yielding one record at a time."""
        params = {k: v for k, v in (("contract", contract), ("type", type_), ("key", key),
                                    ("from_height", None if from_height is None
                                     else str(from_height))) if v is not None}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.base_url + "/v1/events", params=params,
                                    timeout=timeout) as resp:
            if resp.status != 200:
                raise ClientError(resp.status, "E_HTTP", await resp.text())
            data_lines: list[str] = []
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data:"):
                    data_lines.append(line[5:].strip())
                elif line == "" and data_lines:
                    yield json.loads("\n".join(data_lines))
                    data_lines = []
