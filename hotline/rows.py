"""Build new rows of table models without SQLModel's per-field assignment, for the intake path.

`Model(**values)` on a table model assigns every field through SQLModel's __setattr__, which runs
SQLAlchemy's attribute events and pydantic's assignment for each one. That took about 120 µs for a Ticket
and 35 µs for a TicketEvent (sqlmodel 0.0.50, pydantic 2.14, 2-CPU VM), a tenth of a referral's CPU time.
`new_row` builds the same object for a row that is not loaded from the database in about 7 µs: the same
values and defaults in the instance's __dict__, and the same pydantic bookkeeping.
tests/test_rows.py checks it against the constructor for every model built with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import configure_mappers
from sqlmodel import SQLModel

Model = TypeVar("Model", bound=SQLModel)


def new_row(model: type[Model], **values: Any) -> Model:
    """Return a transient instance of the table model `model` with `values` and the defaults of the other fields.

    Like the constructor, it validates nothing and leaves out required fields that `values` lacks. Unknown
    names raise TypeError instead of being dropped. Default factories are called without arguments, which
    is all the models of hotline.models use.
    """
    defaults = _defaults(model)
    unknown = values.keys() - defaults.names
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")

    # The constructor configures the mappers on first use, and assigning an attribute fails until then.
    if not model.__mapper__.configured:
        configure_mappers()

    # SQLAlchemy's class manager makes the instance and its state without calling __init__.
    instance = model._sa_class_manager.new_instance()
    state = instance.__dict__
    state.update(defaults.constants)
    for name, factory in defaults.factories:
        if name not in values:
            state[name] = factory()
    state.update(values)

    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


@dataclass(frozen=True)
class _Defaults:
    names: frozenset[str]
    constants: dict[str, Any]
    factories: tuple[tuple[str, Callable[[], Any]], ...]


@cache
def _defaults(model: type[SQLModel]) -> _Defaults:
    """Read the model's field names, constant defaults and default factories, once per model."""
    fields = model.model_fields
    constants = {name: field.default for name, field in fields.items()
                 if field.default_factory is None and not field.is_required()}
    factories = tuple((name, field.default_factory) for name, field in fields.items()
                      if field.default_factory is not None)
    return _Defaults(frozenset(fields), constants, factories)


def set_fields(instance: SQLModel, **values: Any) -> None:
    """Set fields of a table model instance, directly in its __dict__ while it is in no session.

    A row from `new_row` that is not added to a session yet needs no change tracking: its INSERT writes
    every field it has. A row in a session or loaded from the database gets each value through setattr.
    """
    unknown = values.keys() - type(instance).model_fields.keys()
    if unknown:
        raise TypeError(f"{type(instance).__name__} has no fields {sorted(unknown)}")

    state = inspect(instance)
    if not state.transient:
        for name, value in values.items():
            setattr(instance, name, value)
        return
    instance.__dict__.update(values)
    instance.__pydantic_fields_set__.update(values)
