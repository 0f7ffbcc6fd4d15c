"""Whose answer is orphaned: the owner's heartbeat gone, or written by another process now."""

from __future__ import annotations

from app.services.generation_liveness import owner_gone, owner_record


def test_an_owner_is_gone_when_its_heartbeat_is_or_belongs_to_another_process() -> None:
    beat = {"hostname": "w@h", "pid": 41, "started": 1000.5, "queues": ["infer"]}
    owner = owner_record(beat, "w@h")
    assert owner == {"hostname": "w@h", "pid": 41, "started": 1000.5}
    assert not owner_gone(owner, beat)
    assert owner_gone(owner, None)  # expired: the process died
    assert owner_gone(owner, {**beat, "pid": 77})  # restarted under the same name
    assert owner_gone(owner, {**beat, "started": 2000.0})  # same pid again (a container)
    # Recorded while the heartbeat was missing (Redis just restarted): only the name is known.
    assert not owner_gone(owner_record(None, "w@h"), beat)
    assert owner_gone(owner_record(None, "w@h"), None)
