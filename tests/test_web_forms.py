"""Answer forms (waypoint/web/forms.py): a gate's answer model as form fields, and a submitted
form back into the answer, validated by that same model (what `resume` validates with)."""

from enum import Enum
from typing import Literal

import pytest
from pydantic import BaseModel, Field, field_validator, model_validator

from waypoint.web.forms import FormField, form_fields, read_form


class Colour(Enum):
    red = "red"
    blue = "blue"


class Address(BaseModel):
    """Where to send it."""

    street: str = Field(description="Street and number")
    zip: int | None = None


class Order(BaseModel):
    approved: bool
    amount: int = Field(10, ge=0, le=1000, description="In euros")
    ratio: float = 0.5
    colour: Colour = Colour.blue
    size: Literal["S", "M", "L"]
    address: Address
    tags: list[str] = []
    counts: list[int] = []
    urgent: bool | None = None
    billing: Address | None = None
    extra: dict[str, int] = {}
    note: str = ""

    @field_validator("note")
    @classmethod
    def no_shouting(cls, value: str) -> str:
        if value.isupper():
            raise ValueError("no shouting")
        return value


def by_name(fields: list[FormField]) -> dict[str, FormField]:
    out = {}
    for f in fields:
        out[f.name] = f
        out.update(by_name(list(f.children)))
    return out


FIELDS = by_name(form_fields(Order.model_json_schema()))


def test_each_type_gets_its_widget():
    widgets = {name: f.widget for name, f in FIELDS.items()}
    assert widgets == {
        "approved": "checkbox", "amount": "number", "ratio": "number", "colour": "select", "size": "select",
        "address": "fieldset", "address.street": "text", "address.zip": "number", "tags": "lines",
        "counts": "lines", "urgent": "select", "billing": "fieldset", "billing.street": "text",
        "billing.zip": "number", "extra": "json", "note": "text"}


def test_defaults_descriptions_bounds_choices_and_required_marks():
    amount = FIELDS["amount"]
    shown = (amount.value, amount.step, amount.minimum, amount.maximum, amount.help)
    assert shown == ("10", "1", "0", "1000", "In euros")
    assert FIELDS["ratio"].step == "any" and FIELDS["ratio"].value == "0.5"
    assert FIELDS["colour"].options == (("red", "red"), ("blue", "blue")) and FIELDS["colour"].value == "blue"
    assert FIELDS["size"].options == (("S", "S"), ("M", "M"), ("L", "L"))  # required: no blank choice
    assert FIELDS["urgent"].options == (("", "—"), ("true", "yes"), ("false", "no"))
    assert FIELDS["address.street"].help == "Street and number"
    assert FIELDS["address"].help == "Where to send it."  # the nested model's docstring
    required = {name for name, f in FIELDS.items() if f.required}
    assert required == {"approved", "size", "address", "address.street", "billing.street"}
    assert FIELDS["extra"].value == "{}" and FIELDS["tags"].value == ""
    assert FIELDS["address.street"].id == "f-address-street"


def test_a_nested_default_fills_the_nested_inputs():
    class Outer(BaseModel):
        home: Address = Address(street="1 Main St", zip=12345)
        on: bool = True

    fields = by_name(form_fields(Outer.model_json_schema()))
    assert fields["home.street"].value == "1 Main St" and fields["home.zip"].value == "12345"
    assert fields["on"].checked


GOOD = {"approved": "on", "amount": "250", "ratio": "0.25", "colour": "red", "size": "M",
        "address.street": "1 Main St", "address.zip": "", "tags": "a\n\n b \n", "counts": "1\n2",
        "urgent": "false", "extra": '{"x": 1}', "note": "fine", "csrf_token": "ignored"}


def test_a_right_form_reads_back_as_the_typed_answer():
    reading = read_form(Order, GOOD)
    assert reading.errors == {}
    assert reading.answer == {
        "approved": True, "amount": 250, "ratio": 0.25, "colour": "red", "size": "M",
        "address": {"street": "1 Main St", "zip": None}, "tags": ["a", "b"], "counts": [1, 2],
        "urgent": False, "billing": None, "extra": {"x": 1}, "note": "fine"}
    assert Order.model_validate(reading.answer).colour is Colour.red


def test_blank_inputs_take_defaults_and_an_unchecked_box_is_false():
    reading = read_form(Order, {"size": "S", "address.street": "x", "amount": "", "urgent": ""})
    assert reading.answer is not None
    answer = Order.model_validate(reading.answer)
    assert (answer.approved, answer.amount, answer.urgent, answer.billing) == (False, 10, None, None)


def test_a_filled_optional_fieldset_is_read():
    reading = read_form(Order, {**GOOD, "billing.street": "2 Side St", "billing.zip": "999"})
    assert reading.answer is not None and reading.answer["billing"] == {"street": "2 Side St", "zip": 999}


def test_errors_are_placed_beside_their_inputs():
    bad = {**GOOD, "amount": "5000", "size": "XL", "address.street": "", "counts": "1\nlots",
           "note": "LOUD"}
    del bad["address.street"]
    reading = read_form(Order, bad)
    assert reading.answer is None
    errors = reading.errors
    assert set(errors) == {"amount", "size", "address.street", "counts", "note"}
    assert "less than or equal to 1000" in errors["amount"]
    assert "'S', 'M' or 'L'" in errors["size"]
    assert errors["address.street"] == "Field required"
    assert errors["counts"].startswith("item 2: Input should be a valid integer")
    assert "no shouting" in errors["note"]


def test_json_that_does_not_parse_is_an_error_on_its_input_and_validation_waits():
    reading = read_form(Order, {**GOOD, "extra": "{x: 1", "amount": "-1"})
    assert reading.answer is None
    assert reading.errors == {"extra": "not valid JSON: Expecting property name enclosed in double quotes "
                                       "(line 1, column 2)"}


def test_a_whole_answer_error_has_no_input():
    class Review(BaseModel):
        approved: bool
        reason: str = ""

        @model_validator(mode="after")
        def reason_when_rejected(self) -> "Review":
            if not self.approved and not self.reason:
                raise ValueError("say why when you reject")
            return self

    reading = read_form(Review, {})
    assert reading.answer is None and list(reading.errors) == [""]
    assert "say why when you reject" in reading.errors[""]
    assert read_form(Review, {"reason": "too long"}).answer == {"approved": False, "reason": "too long"}


def test_a_refused_form_is_redrawn_as_submitted_with_its_errors():
    submitted = {**GOOD, "amount": "5000"}
    del submitted["approved"]
    errors = read_form(Order, submitted).errors
    fields = by_name(form_fields(Order.model_json_schema(), values=submitted, errors=errors))
    assert fields["amount"].value == "5000" and "1000" in fields["amount"].error
    assert not fields["approved"].checked and fields["tags"].value == GOOD["tags"]
    assert fields["size"].error == ""


@pytest.mark.parametrize("raw", ["12abc", "1e400x", ""])
def test_numbers_that_do_not_parse_reach_the_model_as_typed(raw):
    class Count(BaseModel):
        n: int

    reading = read_form(Count, {"n": raw})
    assert reading.answer is None
    assert reading.errors["n"] == ("Field required" if raw == "" else
                                   "Input should be a valid integer, unable to parse string as an integer")


def test_the_example_gates_answer_model():
    from examples.approval import Approval

    fields = by_name(form_fields(Approval.model_json_schema()))
    assert [(f.name, f.widget, f.required) for f in fields.values()] == [
        ("approved", "checkbox", True), ("comment", "text", False)]
    assert read_form(Approval, {"comment": "shorter"}).answer == {"approved": False, "comment": "shorter"}
