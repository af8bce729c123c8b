"""AUREN example agent: a LangGraph graph whose replies depend on the user's cognitive mode.

The bridge delivers every mode switch of a user to that user's thread, in one of two ways
(`LANGGRAPH_DELIVERY`):

* ``state`` (default): ``POST /threads/{id}/state`` with the flat keys below
  (``mode``, ``confidence``, ``reasons``, ``readings``, ``switch_id``, ``switched_at``,
  ``applied_switch_ids``...) and ``"as_node": "apply_switch"``. No node runs; the reducers of
  this schema apply. The bridge reads the thread state first and skips a switch whose id is in
  ``applied_switch_ids`` or that is older than ``switched_at`` (API-NOTES.md, "Idempotence").
* ``run``: a run with ``{"switch": <SwitchMessage>}`` as input. ``apply_switch`` checks it,
  applies it once (a switch id already applied, or a switch older than the current one, changes
  nothing) and the agent reacts at once with a message.

A run whose input carries a user message (``{"messages": [{"role": "user", "content": ...}]}``)
gets a reply that depends on the current mode. Everything is deterministic: there is no model.
The one place to plug a real LLM in is marked ``PLUG A REAL LLM HERE`` below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Optional, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.channels.ephemeral_value import EphemeralValue
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

MODES = ("REFLEX", "GUARDIAN", "PATTERN", "HYPOTHESIS")
# SwitchMessage.schema values this graph understands (crates/auren/src/messages.rs).
SUPPORTED_SCHEMAS = (1,)
# How many applied switch ids a thread remembers. Older ids fall off; a redelivery of one of
# those is still a no-op because it is older than the current switch (see apply_switch).
MAX_APPLIED_IDS = 1000


class SwitchMessage(TypedDict, total=False):
    """What the bridge publishes for a switch (crates/auren/src/messages.rs, SwitchMessage)."""

    schema: int
    switch_id: str
    thread_id: str  # the bridge's own thread name ("thr_..."), not the LangGraph thread UUID
    user_id: str
    user_pseudonym: str
    from_mode: str
    to_mode: str
    at: str  # RFC 3339, UTC
    confidence: float
    reasons: list[dict]
    snapshot: dict
    calibrating: bool
    event_id: str


def add_switch_ids(current: Optional[list[str]], new: Any) -> list[str]:
    """Reducer of ``applied_switch_ids``: appends ids not yet present, in order, keeping the last
    MAX_APPLIED_IDS. Writing an id that is already there changes nothing, so a state update that
    is sent twice does not list its switch twice."""
    out = list(current or [])
    if new is None:
        return out
    for sid in [new] if isinstance(new, str) else list(new):
        if sid not in out:
            out.append(sid)
    return out[-MAX_APPLIED_IDS:]


class AgentState(TypedDict, total=False):
    # Input of a `run` delivery: the switch as the bridge publishes it. An ephemeral channel:
    # it holds the value for the step after the input only. An ordinary channel would keep it,
    # and a switch that made a run fail would then be re-read, and fail, at every later run
    # (a user message included), since the node that would clear it never completed.
    switch: Annotated[Optional[SwitchMessage], EphemeralValue(dict)]
    # The current mode and what it rests on; written together, by apply_switch or by a
    # `state` delivery (POST /threads/{id}/state, as_node "apply_switch").
    mode: Optional[str]
    previous_mode: Optional[str]
    confidence: Optional[float]
    reasons: Optional[list[dict]]
    readings: Optional[dict]  # the switch's snapshot of the latest readings
    calibrating: Optional[bool]
    switch_id: Optional[str]
    switched_at: Optional[str]
    user_pseudonym: Optional[str]
    # Every switch this thread has taken, in the order it took them (idempotence + audit).
    applied_switch_ids: Annotated[list[str], add_switch_ids]
    # The conversation.
    messages: Annotated[list[AnyMessage], add_messages]


def _parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an RFC 3339 string, got {value!r}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{what} is not an RFC 3339 time: {value!r}") from e
    if t.tzinfo is None:
        raise ValueError(f"{what} has no time zone: {value!r}")
    return t


def _check_switch(sw: Any) -> SwitchMessage:
    """Refuses what is not a SwitchMessage; the run then fails (HTTP 200 with `__error__`)."""
    if not isinstance(sw, dict):
        raise ValueError(f"switch must be an object, got {type(sw).__name__}")
    schema = sw.get("schema", 1)
    if schema not in SUPPORTED_SCHEMAS:
        raise ValueError(f"unsupported switch schema {schema!r}; this graph reads {SUPPORTED_SCHEMAS}")
    if not isinstance(sw.get("switch_id"), str) or not sw["switch_id"]:
        raise ValueError("switch has no switch_id")
    if sw.get("to_mode") not in MODES:
        raise ValueError(f"unknown mode: {sw.get('to_mode')!r}")
    _parse_time(sw.get("at"), "switch.at")
    return sw


def route_input(state: AgentState) -> str:
    if state.get("switch") is not None:
        return "apply_switch"
    msgs = state.get("messages") or []
    if msgs and isinstance(msgs[-1], HumanMessage):
        return "respond"
    return END


def apply_switch(state: AgentState) -> dict:
    sw = _check_switch(state["switch"])
    sid = sw["switch_id"]
    if sid in (state.get("applied_switch_ids") or []):
        return {}  # a redelivery: already applied, nothing changes
    current = state.get("switched_at")
    if current and _parse_time(sw["at"], "switch.at") < _parse_time(current, "switched_at"):
        # Older than the switch in force: it never overrides it, but it has been seen.
        return {"applied_switch_ids": [sid]}
    mode = sw["to_mode"]
    return {
        "mode": mode,
        "previous_mode": sw.get("from_mode"),
        "confidence": sw.get("confidence"),
        "reasons": sw.get("reasons") or [],
        "readings": sw.get("snapshot") or {},
        "calibrating": sw.get("calibrating"),
        "switch_id": sid,
        "switched_at": sw["at"],
        "user_pseudonym": sw.get("user_pseudonym") or state.get("user_pseudonym"),
        "applied_switch_ids": [sid],
        # The agent reacts at once. The message id is derived from the switch id, so even a
        # duplicate that got this far would replace the message rather than add a second one.
        "messages": [
            AIMessage(
                id=f"switch-{sid}",
                content=reaction_to_switch(mode, sw),
                response_metadata={"auren_mode": mode, "switch_id": sid, "kind": "switch"},
            )
        ],
    }


def respond(state: AgentState) -> dict:
    mode = state.get("mode")
    user_text = state["messages"][-1].content
    if not isinstance(user_text, str):  # content blocks: keep the text parts
        user_text = " ".join(b.get("text", "") for b in user_text if isinstance(b, dict))
    reply = compose_reply(mode, state, user_text)
    return {
        "messages": [
            AIMessage(
                content=reply,
                response_metadata={"auren_mode": mode, "switch_id": state.get("switch_id"), "kind": "reply"},
            )
        ]
    }


# What each mode asks of the agent. Used by the deterministic replies below and meant as the
# system prompt of a real LLM.
MODE_INSTRUCTIONS = {
    "REFLEX": "Acute stress. Be very short and calming; one slow-breathing cue; no questions, no advice lists.",
    "GUARDIAN": "Low reserves. Be protective: lower demands, suggest rest and recovery, discourage strain.",
    "PATTERN": "Normal. Coach as usual: engage with what the user says and suggest a next step.",
    "HYPOTHESIS": "Readings look inconsistent. Ask the user to check the sensor (fit, charge, sync) before concluding anything.",
    None: "No mode yet: the bridge is still calibrating to this user. Stay general and say so.",
}


def reaction_to_switch(mode: str, sw: SwitchMessage) -> str:
    """The message the agent sends by itself when a switch arrives in `run` delivery."""
    return {
        "REFLEX": "I noticed a sudden stress signal. Let's take one slow breath together: in for 4, out for 6.",
        "GUARDIAN": "Your body looks low on reserves. I'll keep things light today; rest counts as progress.",
        "PATTERN": "Your readings are back to your usual pattern. We can pick up where we left off.",
        "HYPOTHESIS": "Some readings look unusual. Could you check that your sensor is snug, charged and synced?",
    }[mode]


def compose_reply(mode: Optional[str], state: AgentState, user_text: str) -> str:
    """The agent's reply to `user_text` in `mode`.

    ====================================================================================
    PLUG A REAL LLM HERE. Replace the body of this function with a model call, e.g.:

        from langchain_openai import ChatOpenAI            # or any chat model
        from langchain_core.messages import SystemMessage
        llm = ChatOpenAI(model="...")                       # build it once, at import time
        system = SystemMessage(MODE_INSTRUCTIONS[mode] + f" Reasons: {state.get('reasons')}")
        return llm.invoke([system, *state["messages"]]).content

    Everything else (routing, idempotent switches, state keys) stays as it is. The tests in
    tests/ rely on the deterministic replies below, so keep them for CI.
    ====================================================================================
    """
    if mode is None:
        return "I'm still calibrating to your readings, so I'll keep my advice general for now."
    if mode == "REFLEX":
        return "Let's pause. Breathe in for 4, out for 6. You're safe; I'm here."
    if mode == "GUARDIAN":
        return (
            "Your body is asking for recovery today, so let's protect your energy: keep demands "
            "low, skip hard training and aim for an early night. We can revisit the rest tomorrow."
        )
    if mode == "HYPOTHESIS":
        return (
            "Before I read anything into this: some of your readings look unusual. Could you check "
            "your sensor (snug fit, battery, last sync) and tell me what you see?"
        )
    # PATTERN: ordinary coaching.
    return (
        f"Your readings look steady. About \"{user_text[:80]}\": let's pick one concrete next step "
        "for today and check in on how it went tonight."
    )


builder = StateGraph(AgentState)
builder.add_node("apply_switch", apply_switch)
builder.add_node("respond", respond)
builder.add_conditional_edges(START, route_input, ["apply_switch", "respond", END])
builder.add_edge("apply_switch", END)
builder.add_edge("respond", END)
graph = builder.compile()
