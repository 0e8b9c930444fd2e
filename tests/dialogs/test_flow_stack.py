"""The stack of flows as `current` and `is_active` read it: what is handed out is a copy, and only the flows of
this exchange's member, registered ones, count."""

from types import SimpleNamespace

import dialogs  # noqa: F401  (registers the project's flows)
from dialogs import flow


def exchange(state: dict, member: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(state=state, member=member)


def entry(name: str, member: str | None = None, **data: object) -> dict:
    return {"name": name, "step": "confirm", "data": {"kept": ["as", {"it": "was"}], **data}, "member": member}


def test_current_is_a_copy_of_the_members_top_flow():
    state = {"flows": [entry("stop", "ann"), entry("stop", "bea", n=1), entry("no such flow", "ann")]}
    before = repr(state)
    ann = flow.current(exchange(state, "ann"))
    assert ann == entry("stop", "ann")
    ann["data"]["kept"][1]["it"] = "changed"
    ann["step"] = "elsewhere"
    assert repr(state) == before  # the state is as it was
    assert flow.current(exchange(state, "bea")) == entry("stop", "bea", n=1)
    assert flow.current(exchange(state, "cid")) is None
    assert flow.current(exchange({})) is None


def test_is_active_reads_only_the_members_registered_flows():
    state = {"flows": [entry("stop", "bea"), entry("no such flow", "ann")]}
    before = repr(state)
    assert flow.is_active(exchange(state, "bea"), "stop")
    assert not flow.is_active(exchange(state, "ann"), "stop")
    assert not flow.is_active(exchange(state, "ann"), "no such flow")
    assert flow.is_active(exchange(state), "stop")  # (no one in particular: every flow of the chat)
    assert repr(state) == before
