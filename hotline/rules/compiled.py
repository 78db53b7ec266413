"""Conditions as Python closures, built once from rule-engine's syntax tree, for fast evaluation.

rule-engine (5.1) evaluates a condition by walking its tree and, for every symbol it reads, resolving
the name, converting the value and checking its type again. A ticket's facts are converted and checked
once by `prepare_facts`, and each condition becomes a closure that only compares values.

Each translated part keeps rule-engine's own semantics, as its classes in rule_engine/ast define them:

- literals of boolean, number, string and null, arrays of such literals, and fact names;
- `and`, `or` and `not`;
- `==` and `!=`, where values of two different types are never equal (ComparisonExpression);
- `<`, `<=`, `>` and `>=` between scalars, where a type mismatch raises EvaluationError
  (ArithmeticComparisonExpression);
- `in` and `not in` (ContainsExpression).

Any other part (arithmetic, regular expressions, attributes, built-in functions, comprehensions,
ordering of arrays) makes `translate` return None, and rule-engine evaluates that condition.
"""

from __future__ import annotations

import decimal
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import rule_engine
from rule_engine import ast

Values = Mapping[str, Any]
Closure = Callable[[Values], Any]

STRING, BOOLEAN, NUMBER, STRINGS = "string", "boolean", "number", "strings"
_ORDERINGS = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
_HASHABLE_LITERALS = (str, bool, decimal.Decimal, type(None))


class _Untranslatable(Exception):
    """The condition uses a part of the grammar that is not translated."""


def fact_kinds(schema: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Map a rule-engine type schema (name -> DataType) to (name, kind) pairs for prepare_facts."""
    kinds = []
    for name, data_type in schema.items():
        if data_type == rule_engine.DataType.STRING:
            kinds.append((name, STRING))
        elif data_type == rule_engine.DataType.BOOLEAN:
            kinds.append((name, BOOLEAN))
        elif data_type == rule_engine.DataType.FLOAT:
            kinds.append((name, NUMBER))
        elif data_type == rule_engine.DataType.ARRAY(rule_engine.DataType.STRING):
            kinds.append((name, STRINGS))
        else:
            raise ValueError(f"fact {name}: type {data_type} has no fast evaluation")
    return tuple(kinds)


def prepare_facts(facts: Mapping[str, Any], kinds: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    """Convert facts the way rule-engine converts them (numbers to Decimal, lists to tuples).

    Return None when a fact is missing, is not exactly of its declared Python type (str, bool, int or
    float, list or tuple of str), or is a float that is not finite. The caller then evaluates with
    rule-engine, which raises its own errors for such values.
    """
    values: dict[str, Any] = {}
    for name, kind in kinds:
        value = facts.get(name, _MISSING)
        value_type = type(value)
        if kind is STRING:
            if value_type is not str:
                return None
        elif kind is BOOLEAN:
            if value_type is not bool:
                return None
        elif kind is NUMBER:
            if value_type is float:
                if not math.isfinite(value):
                    return None
                value = _decimal_of_float(value)
            elif value_type is int:
                value = decimal.Decimal(value)
            else:
                return None
        else:
            if value_type is not list and value_type is not tuple:
                return None
            value = tuple(value)
            for item in value:
                if type(item) is not str:
                    return None
        values[name] = value
    return values


def translate(expression: ast.ExpressionBase) -> Callable[[Values], bool] | None:
    """Return a closure that evaluates `expression` to a bool on prepared values, or None if untranslatable."""
    try:
        closure = _closure(expression)
    except _Untranslatable:
        return None

    def test(values: Values) -> bool:
        return bool(closure(values))

    return test


_MISSING = object()
_FLOAT_DECIMALS: dict[float, decimal.Decimal] = {}


def _decimal_of_float(value: float) -> decimal.Decimal:
    # rule-engine converts a float through its repr (types/coercion.py, _to_decimal). Few distinct
    # counts occur, so the conversions are kept; the cache is cleared rather than grown without bound.
    converted = _FLOAT_DECIMALS.get(value)
    if converted is None:
        if len(_FLOAT_DECIMALS) > 1024:
            _FLOAT_DECIMALS.clear()
        converted = _FLOAT_DECIMALS[value] = decimal.Decimal(repr(value))
    return converted


def _closure(node: ast.ExpressionBase) -> Closure:
    kind = type(node)
    if kind in (ast.BooleanExpression, ast.FloatExpression, ast.StringExpression, ast.NullExpression,
                ast.ArrayExpression):
        value = _literal(node)
        return lambda _values: value
    if kind is ast.SymbolExpression:
        if node.scope is not None:
            raise _Untranslatable(node.name)
        return operator.itemgetter(node.name)
    if kind is ast.LogicExpression:
        return _logic(node)
    if kind is ast.UnaryExpression and node.type == "not":
        right = _closure(node.right)
        return lambda values: not right(values)
    if kind is ast.ComparisonExpression:
        return _equality(node)
    if kind is ast.ArithmeticComparisonExpression:
        return _ordering(node)
    if kind is ast.ContainsExpression:
        return _contains(node)
    raise _Untranslatable(kind.__name__)


def _literal(node: ast.ExpressionBase) -> Any:
    kind = type(node)
    if kind is ast.ArrayExpression:
        return tuple(_literal(member) for member in node.value)
    if kind not in (ast.BooleanExpression, ast.FloatExpression, ast.StringExpression, ast.NullExpression):
        raise _Untranslatable(kind.__name__)
    return node.value


def _logic(node) -> Closure:
    left, right = _closure(node.left), _closure(node.right)
    if node.type == "and":
        return lambda values: bool(left(values) and right(values))
    if node.type == "or":
        return lambda values: bool(left(values) or right(values))
    raise _Untranslatable(node.type)


def _equality(node) -> Closure:
    if node.type not in ("eq", "ne"):
        raise _Untranslatable(node.type)
    equal = node.type == "eq"

    if type(node.right) in (ast.StringExpression, ast.FloatExpression, ast.BooleanExpression):
        left, constant = _closure(node.left), node.right.value
        constant_type = type(constant)

        def compare_constant(values: Values) -> bool:
            value = left(values)
            return (type(value) is constant_type and value == constant) is equal

        return compare_constant

    left, right = _closure(node.left), _closure(node.right)

    def compare(values: Values) -> bool:
        left_value, right_value = left(values), right(values)
        if type(left_value) is not type(right_value):
            return not equal
        return (left_value == right_value) is equal

    return compare


def _ordering(node) -> Closure:
    if node.type not in _ORDERINGS:
        raise _Untranslatable(node.type)
    for side in (node.left, node.right):
        if rule_engine.DataType.is_type(side.result_type, rule_engine.DataType.ARRAY):
            raise _Untranslatable("ordering of arrays")
    compare_values = _ORDERINGS[node.type]
    left, right = _closure(node.left), _closure(node.right)

    def compare(values: Values) -> bool:
        left_value, right_value = left(values), right(values)
        if left_value is None and right_value is None:
            return compare_values in (operator.ge, operator.le)
        if type(left_value) is not type(right_value) or isinstance(left_value, tuple):
            raise rule_engine.errors.EvaluationError("data type mismatch")
        return compare_values(left_value, right_value)

    return compare


def _contains(node) -> Closure:
    member = _closure(node.member)
    if type(node.container) is ast.ArrayExpression:
        items = _literal(node.container)
        if all(type(item) in _HASHABLE_LITERALS for item in items):
            lookup = frozenset(items)
            return lambda values: member(values) in lookup
        return lambda values: member(values) in items

    container = _closure(node.container)

    def contains(values: Values) -> bool:
        container_value = container(values)
        member_value = member(values)
        if type(container_value) is str and type(member_value) is not str:
            raise rule_engine.errors.EvaluationError("data type mismatch")
        return member_value in container_value

    return contains
