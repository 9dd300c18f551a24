"""The state schema: which fields a state has, their reducers, and their codecs.

    schema = StateSchema(State)
    values = schema.check_update("draft", {"text": "hi"}, run_id=run_id)
    plain = schema.encode(values)            # msgpack-ready plain data
    schema.decode(plain) == values

Updates are validated field by field against the declared types; what is
persisted is plain data, decoded only into the declared types. The merged state
is then validated as pydantic validates an assignment (`apply`): field validators
and the model's config apply to each changed field, and a model with model-level
validators is validated whole. So the state a node sees is the same live, on
replay, and after a snapshot is restored (`model_validate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from waypoint._messages import problems
from waypoint._reducers import is_reducer
from waypoint.errors import UpdateError
from waypoint.graphs.reducers import append


@dataclass(frozen=True)
class FieldSpec:
    name: str
    adapter: TypeAdapter[Any]
    reducer: Callable[[Any, Any], Any] | None
    annotation: Any


class StateSchema:
    """Field specs of a pydantic state model, built once at compile time."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.fields: dict[str, FieldSpec] = {}
        for name, info in model.model_fields.items():
            reducers = [m for m in info.metadata if is_reducer(m)]
            others = [m for m in info.metadata if not is_reducer(m)]
            annotation = Annotated[(info.annotation, *others)] if others else info.annotation
            self.fields[name] = FieldSpec(
                # cast: pydantic's stubs type an annotation differently from one release to the next
                name, TypeAdapter(cast(Any, annotation)), reducers[0] if reducers else None, info.annotation
            )
        decorators = model.__pydantic_decorators__
        self.whole = bool(decorators.model_validators or decorators.root_validators)
        # Revalidated on assignment: fields with validators, and under a model config (which
        # the per-field adapters do not see) the last-value fields. Otherwise the adapters'
        # check is what assignment would do, and a loop appending to a long list must not
        # pay for the whole list at every step.
        configured = bool(model.model_config)
        self.revalidated = {n for n, f in self.fields.items()
                            if _has_validator(decorators, n) or (configured and f.reducer is None)}
        # Lists that only grow by `append` and that no validator may rewrite: a snapshot can
        # hold them by reference (engine/_appended.py), since the log holds their items.
        self.appendable = frozenset(
            () if self.whole else
            (n for n, f in self.fields.items() if f.reducer is append and n not in self.revalidated))

    def normalize(self, node: str, update: Any, *, run_id: str) -> dict[str, Any]:
        """A node's return value as a dict of field updates."""
        if update is None:
            return {}
        if isinstance(update, dict):
            return update
        if isinstance(update, BaseModel):
            return {k: getattr(update, k) for k in update.model_fields_set}
        raise UpdateError(
            f"run {run_id!r}, node {node!r}: returned {type(update).__name__}, but a node "
            "must return a dict of field updates, a state model, or None.",
            run_id=run_id,
            node=node,
        )

    def check_update(self, node: str, update: Any, *, run_id: str) -> dict[str, Any]:
        """Validate each field of `update`; unknown fields and bad values raise UpdateError."""
        values = self.normalize(node, update, run_id=run_id)
        checked: dict[str, Any] = {}
        for name, value in values.items():
            spec = self.fields.get(name)
            if spec is None:
                raise UpdateError(
                    f"run {run_id!r}, node {node!r}: wrote unknown field {name!r}; the state "
                    f"{self.model.__name__} has {sorted(self.fields)}. Add the field to the "
                    "state or fix the key.",
                    run_id=run_id,
                    node=node,
                )
            checked[name] = self._validate(spec, value, node=node, run_id=run_id)
        return checked

    def _validate(self, spec: FieldSpec, value: Any, *, node: str, run_id: str) -> Any:
        try:
            return spec.adapter.validate_python(value)
        except ValidationError as exc:
            problem = problems(exc)
            raise UpdateError(
                f"run {run_id!r}, node {node!r}: field {spec.name!r} got {value!r:.200}, "
                f"which does not fit {_type_name(spec.annotation)}: {problem}.",
                run_id=run_id,
                node=node,
            ) from None

    def apply(self, state: BaseModel, values: dict[str, Any], *, node: str = "-") -> BaseModel:
        """The new state after `values` (reducers merge, other fields are replaced).

        Validated as on assignment (see the module's docstring); a validator that
        refuses the merged value raises UpdateError naming `node` and the field.
        """
        if not values:
            return state
        merged = {}
        for name, value in values.items():
            reduce = self.fields[name].reducer
            merged[name] = reduce(getattr(state, name), value) if reduce else value
        new = _copy(state, merged)
        try:
            if self.whole:
                return self.model.model_validate(dict(new))
            validator = self.model.__pydantic_validator__
            for name in self.revalidated.intersection(merged) if self.revalidated else ():
                validator.validate_assignment(new, name, merged[name])
        except ValidationError as exc:
            problem = problems(exc, whole="state")
            raise UpdateError(
                f"node {node!r}: the state's validators refused its update {_clip(values)}: {problem}. "
                "Return a value the validators accept, or fix the validator.", node=node) from None
        return new

    def encode(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self.fields[k].adapter.dump_python(v, mode="json") for k, v in values.items()}

    def decode(self, plain: dict[str, Any]) -> dict[str, Any]:
        return {k: self.fields[k].adapter.validate_python(v) for k, v in plain.items()}

    def encode_state(self, state: BaseModel, exclude: Iterable[str] = ()) -> dict[str, Any]:
        return state.model_dump(mode="json", exclude=set(exclude) or None)

    def decode_state(self, plain: dict[str, Any]) -> BaseModel:
        return self.model.model_validate(plain)

    def initial(self, value: Any) -> BaseModel:
        """The run's starting state from a model, a dict, or None (all defaults)."""
        if isinstance(value, self.model):
            return value
        return self.model.model_validate(value or {})


def _copy(state: BaseModel, merged: dict[str, Any]) -> BaseModel:
    """`state.model_copy(update=merged)`, without its generic steps when the model has no extras
    or private attributes (the common case, paid once per step)."""
    if state.__pydantic_extra__ is not None or getattr(state, "__pydantic_private__", None) is not None:
        return state.model_copy(update=merged)
    new = state.__class__.__new__(state.__class__)
    values = state.__dict__.copy()
    values.update(merged)
    object.__setattr__(new, "__dict__", values)
    object.__setattr__(new, "__pydantic_fields_set__", state.__pydantic_fields_set__ | merged.keys())
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_private__", None)
    return new


def _has_validator(decorators: Any, field: str) -> bool:
    return any(field in d.info.fields or "*" in d.info.fields
               for group in (decorators.field_validators, decorators.validators) for d in group.values())


def _clip(values: dict[str, Any]) -> str:
    text = repr(values)
    return text if len(text) <= 200 else text[:197] + "..."


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation).replace("typing.", "")
