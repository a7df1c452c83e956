"""Event ids drawn by the gateway are random version-4 UUIDs in canonical form, all distinct."""

from __future__ import annotations

import os
import uuid

from openconnector.ce.emit import build_event, new_event_id


def test_ids_are_canonical_random_uuids() -> None:
    ids = [new_event_id() for _ in range(2_000)]  # several refills of the pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_the_bits_are_not_fixed() -> None:
    # Every random nibble position takes more than one value over a few hundred ids.
    ids = [new_event_id().replace("-", "") for _ in range(500)]
    for position in range(32):
        seen = {text[position] for text in ids}
        assert len(seen) == 1 if position == 12 else len(seen) > 1, position


def test_build_event_draws_one_unless_given() -> None:
    drawn = build_event(type="nl.example.thing.created", source="urn:nld:x", data={})
    assert uuid.UUID(drawn.id).version == 4
    given = build_event(type="nl.example.thing.created", source="urn:nld:x", data={}, event_id="abc")
    assert given.id == "abc"


def test_a_forked_child_draws_its_own_ids() -> None:
    read, write = os.pipe()
    new_event_id()  # the parent's pool is filled
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child_id != new_event_id()
    assert uuid.UUID(child_id).version == 4
