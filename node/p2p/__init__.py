"""Peer-to-peer transport: authenticated, encrypted, framed links between validators.

``handshake`` (sans-I/O key exchange and identity proof), ``frames`` (sans-I/O AEAD
framing), ``peer_manager`` (the asyncio driver the node uses). See ``docs/p2p.md``.
"""

from node.p2p.frames import DEFAULT_MAX_FRAME, FrameError
from node.p2p.handshake import PROTOCOL_VERSION, HandshakeError
from node.p2p.peer_manager import P2PConfig, PeerManager, PeerStats

__all__ = [
    "DEFAULT_MAX_FRAME",
    "PROTOCOL_VERSION",
    "FrameError",
    "HandshakeError",
    "P2PConfig",
    "PeerManager",
    "PeerStats",
]
