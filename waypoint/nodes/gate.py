"""Human gates: pause a branch until someone answers.

    class Approval(BaseModel):
        approved: bool
        comment: str = ""

    builder.gate("approve", Approval, prompt="Publish this draft?",
                 payload=lambda s: {"draft": s.draft}, into="approval")

The run records a request (prompt, payload, the answer's JSON schema) and waits.
`resume(graph, run_id, {"approved": true}, gate="approve")` validates the answer
against the schema; an invalid one raises `GateError` and the run stays waiting.

A gate may route on its answer, as a router routes on the state:

    builder.gate("review", Review, routes={"publish": END, "revise": "draft"},
                 route=lambda state, answer: "publish" if answer.approved else "revise")

`route(state, answer)` sees the state before the answer's update; the label it
returns is recorded with the step, so replay follows it without calling it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from waypoint._messages import misfit
from waypoint.errors import GateError
from waypoint.nodes.base import Checks, Node, Outcome, register


@register
@dataclass(frozen=True)
class GateNode(Node):
    """Waits for an answer of type `answer`; writes it to `into` or via `on_answer`;
    routes by `route(state, answer)` when given, else follows its edges."""

    kind: ClassVar[str] = "gate"
    noun: ClassVar[str] = "gate"
    drawing: ClassVar[str] = "gate"
    pauses: ClassVar[bool] = True
    answer: type[BaseModel] = BaseModel
    prompt: str | Callable[[Any], str] = ""
    payload: Callable[[Any], Any] | None = None
    into: str | None = None
    on_answer: Callable[[Any, Any], Any] | None = None
    deadline: float | None = None  # seconds after the gate starts waiting; then "expired"
    route: Callable[[Any, Any], Any] | None = None  # (state, answer) -> a label of its routes

    def request(self, state: Any, now: float | None = None) -> dict[str, Any]:
        """The question as recorded in the log and shown to whoever answers (asked at `now`)."""
        prompt = self.prompt(state) if callable(self.prompt) else self.prompt
        payload = self.payload(state) if self.payload else None
        request = {"prompt": prompt, "payload": payload, "schema": self.answer.model_json_schema()}
        if self.deadline is not None:
            request["deadline_at"] = (time.time() if now is None else now) + self.deadline
        return request

    @staticmethod
    def expired(request: dict[str, Any], now: float | None = None) -> bool:
        """True once a waiting request's deadline has passed."""
        deadline_at = request.get("deadline_at")
        return deadline_at is not None and (time.time() if now is None else now) >= deadline_at

    def validate(self, raw: Any, *, run_id: str) -> BaseModel:
        """Turn a raw answer (model, dict or JSON text) into `answer`, or raise GateError."""
        if isinstance(raw, self.answer):
            return raw
        try:
            if isinstance(raw, (str, bytes)):
                return self.answer.model_validate_json(raw)
            return self.answer.model_validate(raw)
        except ValidationError as exc:
            raise GateError(
                f"run {run_id!r}, gate {self.name!r}: {misfit('the answer', raw, self.answer, exc)} "
                "The run is still waiting; resume again with a corrected answer.",
                run_id=run_id,
                node=self.name,
            ) from None

    def answered(self, state: Any, answer: BaseModel, run_id: str) -> Outcome:
        """What an accepted answer does: its update, and the route `route` picks from it."""
        labels = self.chosen(self.route(state, answer), run_id) if self.route is not None else None
        return Outcome(update=self.update_for(state, answer), labels=labels)

    @property
    def edges_beside_routes(self) -> bool:
        """An escalation route ("expired") beside the edges an answer follows; none with `route`."""
        return self.route is None

    def check(self, checks: Checks, name: str) -> list[str]:
        return checks.gate(name, self)

    def caption(self) -> list[str]:
        return [f"waits for {self.answer.__name__}"]

    def update_for(self, state: Any, answer: BaseModel) -> Any:
        """The state update an accepted answer makes."""
        if self.on_answer is not None:
            return self.on_answer(state, answer)
        if self.into is not None:
            return {self.into: answer}
        return None

