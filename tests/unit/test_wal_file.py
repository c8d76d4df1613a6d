"""The consensus WAL file's framing: whole records back in order, a torn or damaged tail
dropped, never an exception on any bytes."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.wal_file import MAX_RECORD_BYTES, WalFile, decode_records, encode_record

payload_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=8)


@given(payload_lists)
def test_records_decode_to_the_payloads_written(payloads: list[bytes]) -> None:
    data = b"".join(encode_record(p) for p in payloads)
    assert decode_records(data) == (payloads, len(data))


@given(payload_lists, st.data())
def test_a_log_cut_anywhere_reads_as_the_records_before_the_cut(payloads: list[bytes],
                                                                  data: Any) -> None:
    log = b"".join(encode_record(p) for p in payloads)
    cut = data.draw(st.integers(0, len(log)))
    found, good = decode_records(log[:cut])
    assert found == payloads[:len(found)]
    assert good == len(b"".join(encode_record(p) for p in found)) <= cut
    # Only a whole record can be missing: the next one did not fit before the cut.
    if len(found) < len(payloads):
        assert good + len(encode_record(payloads[len(found)])) > cut


@given(payload_lists, st.data())
def test_invalid_flipped_byte_ends_the_log_at_the_damaged_record(payloads: list[bytes],
                                                                 data: Any) -> None:
    log = bytearray(b"".join(encode_record(p) for p in payloads))
    if not log:
        return
    at = data.draw(st.integers(0, len(log) - 1))
    log[at] ^= 1 << data.draw(st.integers(0, 7))
    found, _ = decode_records(bytes(log))
    # Every record before the damaged one reads back; nothing damaged is ever returned.
    bounds, offset = [], 0
    for p in payloads:
        offset += len(encode_record(p))
        bounds.append(offset)
    whole_before = sum(1 for end in bounds if end <= at)
    # The records before the damaged one, and nothing from it on: the CRC covers the
    # length as well as the payload, so no flipped bit lets a record through.
    assert found == payloads[:whole_before]


@given(st.binary(max_size=2000))
def test_invalid_any_bytes_decode_without_raising(data: bytes) -> None:
    _, good = decode_records(data)
    assert 0 <= good <= len(data)


def test_invalid_absurd_length_is_damage_not_an_allocation() -> None:
    head = (MAX_RECORD_BYTES + 1).to_bytes(4, "big") + b"\0" * 4
    assert decode_records(head + b"x" * 100) == ([], 0)


def test_open_cuts_a_torn_tail_so_the_next_append_reads_back(tmp_path: Any) -> None:
    path = str(tmp_path / "consensus.wal")
    wal = WalFile(path)
    assert wal.open() == []
    wal.append(b"one")
    wal.append(b"two")
    wal.close()
    with open(path, "ab") as file:
        file.write(encode_record(b"three")[:-2])
    again = WalFile(path)
    assert again.open() == [b"one", b"two"]
    assert again.dropped_bytes == len(encode_record(b"three")) - 2
    again.append(b"four")
    assert again.size == os.path.getsize(path)
    again.close()
    assert WalFile(path).open() == [b"one", b"two", b"four"]


def test_reset_replaces_every_record(tmp_path: Any) -> None:
    wal = WalFile(str(tmp_path / "consensus.wal"))
    wal.open()
    for payload in (b"a", b"b", b"c"):
        wal.append(payload)
    wal.reset([b"next"])
    wal.append(b"more")
    wal.reset()
    assert wal.size == 0
    wal.append(b"after")
    wal.close()
    again = WalFile(wal.path)
    assert again.open() == [b"after"]
    again.close()


def test_invalid_append_before_open_is_refused(tmp_path: Any) -> None:
    wal = WalFile(str(tmp_path / "consensus.wal"))
    with pytest.raises(ValueError, match="not open"):
        wal.append(b"x")


@given(payload_lists, st.integers(1, 64))
def test_invalid_zeros_after_the_records_are_not_records(payloads: list[bytes],
                                                         zeros: int) -> None:
    # What an unsynced file often holds after a power cut: its length grew, its data did
    # not. A CRC-32 of nothing is 0, so a CRC of the payload alone took zeros for records.
    log = b"".join(encode_record(p) for p in payloads)
    assert decode_records(log + bytes(zeros)) == (payloads, len(log))


def test_invalid_empty_record_is_refused() -> None:
    with pytest.raises(ValueError, match="never empty"):
        encode_record(b"")


def test_invalid_second_open_is_refused(tmp_path: Any) -> None:
    wal = WalFile(str(tmp_path / "consensus.wal"))
    wal.open()
    with pytest.raises(ValueError, match="open already"):
        wal.open()
    wal.sync()
    wal.close()
