"""Ordered ids: unique, sorted by creation, and random past their time and counter."""

from __future__ import annotations

import os

from agent_relay_runtime.relay.store import ordered_id


def test_ids_are_unique_and_sort_by_creation() -> None:
    ids = [ordered_id("msg") for _ in range(10_000)]  # more than one pool of random bytes
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(i.startswith("msg_") and len(i) == len("msg_") + 12 + 4 + 8 for i in ids)
    tails = {i[-8:] for i in ids}
    assert len(tails) > 9_900  # 32 random bits each: a repeat is rare, a run of them a bug


def test_a_forked_child_does_not_repeat_its_parents_random_bits() -> None:
    ordered_id("msg")  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id's random part, to the parent
        os.write(write, ordered_id("msg")[-8:].encode())
        os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 8).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert child != ordered_id("msg")[-8:]
