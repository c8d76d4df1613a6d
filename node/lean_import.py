"""Importing the node's modules for ``jangbu node start`` without aiohttp's eager read of
the system's CA bundle.

Why: importing aiohttp builds two client TLS contexts at module level, and the verifying
one reads every certificate of the CA bundle file (``ssl.create_default_context``: 144
certificates here, 0.05-0.10 s). A node makes no outgoing TLS connection: its API is a
server and its peer links have their own handshake. Those 0.05-0.10 s were a tenth of a
killed node's restart, on its critical path (docs/benchmarks.md, twenty-first round).

How: OpenSSL reads the bundle from ``SSL_CERT_FILE`` when that is set, and the CA
*directory* (``SSL_CERT_DIR`` or the system's hashed ``certs/``) only lazily, certificate by
certificate as a verification needs one. So ``SSL_CERT_FILE`` points at an empty file
while the node's modules are imported and is restored right after: nothing is read, and a
verifying context made then still trusts the system's CAs through the directory (on
systems whose CA directory is hashed, as Debian's and Alpine's are). The variable is put
back as it was, set or not (an operator's or a container image's own value included), so
every context made afterwards, and every process the node starts, reads what it always
read; only aiohttp's two import-time contexts, which the node never uses, skip the file.

Threads: ``setenv`` while another thread reads the environment is undefined behaviour in
C. The only other thread while this runs is the store's opener (node/store_open.py), inside
LevelDB's open, which reads no environment variable; keep it that way (nothing else may
be started before the node's modules are imported).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

CA_FILE_ENV = "SSL_CERT_FILE"


@contextmanager
def without_eager_ca_bundle() -> Iterator[None]:
    """Within it, OpenSSL's default CA file is an empty one (see the module's docstring);
    nothing changes if aiohttp is imported already."""
    if "aiohttp" in sys.modules:
        yield
        return
    before = os.environ.get(CA_FILE_ENV)
    os.environ[CA_FILE_ENV] = os.devnull
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CA_FILE_ENV, None)
        else:
            os.environ[CA_FILE_ENV] = before
