"""Key files: one Ed25519 seed per file, mode 0600, refused when others can read it.

Format (JSON, so operators can inspect it): ``{"type": "ed25519", "kind": "node" |
"member" | "device", "seed": <64 hex>, "public": <64 hex>}``. A bare 64-hex-character seed
(or 44-character base64) is also accepted so keys made by other tools can be imported.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from pathlib import Path

from nacl.signing import SigningKey

KINDS = ("node", "member", "device")


class KeyFileError(ValueError):
    """A key file that is missing, malformed, or readable by others."""


def write_key_file(path: str | Path, key: SigningKey, kind: str, *,
                   overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` with mode 0600; never replaces an existing file silently."""
    if kind not in KINDS:
        raise KeyFileError(f"key kind must be one of {', '.join(KINDS)}")
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    payload = {
        "type": "ed25519",
        "kind": kind,
        "seed": bytes(key).hex(),
        "public": key.verify_key.encode().hex(),
    }
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)


def load_key_file(path: str | Path, kind: str | None = None) -> SigningKey:
    """Load a signing key, refusing files that group or others may read or write.

    ``kind``: what the caller needs (``node`` for a node's key); a file that says it is
    another kind is refused (review: a member key copied over ``node.key`` started a node
    that no validator would link with). A file of another ``type`` than Ed25519 is refused
    whatever the caller needs (one saying ``rsa`` signed as Ed25519)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, ValueError) as exc:  # a NUL in the path, a component not a directory
        raise KeyFileError(f"key file {path} cannot be read: {exc}") from None
    if stat.S_ISDIR(mode):  # (a directory was told to chmod 600); a pipe is fine
        raise KeyFileError(f"key file {path} is a directory")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible by group/others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:  # (regression: a traceback for a binary file)
        raise KeyFileError(f"key file {path} is not a valid jangbu key file (not text)") \
            from None
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc.strerror or exc}") from None
    seed: bytes
    if text.startswith("{"):
        try:
            payload = json.loads(text)
            seed = bytes.fromhex(payload["seed"])
        except (ValueError, KeyError, TypeError):
            raise KeyFileError(f"key file {path} is not a valid jangbu key file") from None
        key_type = payload.get("type", "ed25519")
        if key_type != "ed25519":
            raise KeyFileError(f"key file {path} holds a {str(key_type)[:20]!r} key; jangbu "
                               "keys are Ed25519")
        file_kind = payload.get("kind")
        if kind is not None and file_kind is not None and file_kind != kind:
            raise KeyFileError(f"key file {path} is a {str(file_kind)[:20]!r} key; a "
                               f"{kind} key is needed here")
        key = _from_seed(seed, path)
        public = payload.get("public")
        if public is not None and public != key.verify_key.encode().hex():
            raise KeyFileError(f"key file {path}: public key does not match the seed")
        return key
    try:
        seed = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise KeyFileError(f"key file {path}: expected a hex or base64 Ed25519 seed") from None
    return _from_seed(seed, path)


def _from_seed(seed: bytes, path: Path) -> SigningKey:
    if len(seed) != 32:
        raise KeyFileError(f"key file {path}: an Ed25519 seed is 32 bytes, got {len(seed)}")
    return SigningKey(seed)
