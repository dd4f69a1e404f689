"""A small, safe, vectorised evaluator for the constraint expressions in ``data/spaces/*.json``.

Constraints are Python-syntax arithmetic over parameter names (``"MWG % (MDIMC * VWM) == 0"``),
the form Kernel Tuner's ``restrictions`` and CLBlast's tuner use. They are data, so they are never
passed to ``eval``: :func:`compile_expr` parses them with :mod:`ast`, accepts only numbers, names,
arithmetic, comparisons and boolean operators, and returns a function that evaluates the
expression on numpy arrays (one element per configuration). ``/`` is true division, as in
Kernel Tuner; a division or modulo by zero makes the comparison false (NaN compares false).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gemmperf.errors import DataFormatError

Values = Mapping[str, Any]
Compiled = Callable[[Values], Any]

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.fmod,
    ast.Pow: np.power,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _float(value: Any) -> Any:
    # Integer division/modulo by zero raises or warns in numpy; floats give inf/NaN instead.
    return np.asarray(value, dtype=np.float64)


def _safe(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def run(a: Any, b: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return op(_float(a), _float(b))

    return run


def _build(node: ast.AST, text: str) -> Compiled:
    if isinstance(node, ast.Expression):
        return _build(node.body, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        value = node.value
        return lambda env: value
    if isinstance(node, ast.Name):
        name = node.id

        def lookup(env: Values) -> Any:
            try:
                return env[name]
            except KeyError:
                raise DataFormatError(f"constraint {text!r} uses unknown name {name!r}") from None

        return lookup
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op = _BINARY[type(node.op)]
        left, right = _build(node.left, text), _build(node.right, text)
        if type(node.op) in (ast.Div, ast.FloorDiv, ast.Mod):
            safe = _safe(op)
            return lambda env: safe(left(env), right(env))
        return lambda env: op(left(env), right(env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        inner = _build(node.operand, text)
        if isinstance(node.op, ast.Not):
            return lambda env: np.logical_not(inner(env))
        sign = -1 if isinstance(node.op, ast.USub) else 1
        return lambda env: sign * inner(env)
    if isinstance(node, ast.Compare) and all(type(o) in _COMPARE for o in node.ops):
        parts = [_build(node.left, text), *(_build(c, text) for c in node.comparators)]
        ops = [_COMPARE[type(o)] for o in node.ops]

        def compare(env: Values) -> Any:
            values = [p(env) for p in parts]
            result = ops[0](values[0], values[1])
            for i in range(1, len(ops)):  # a < b < c means a < b and b < c
                result = np.logical_and(result, ops[i](values[i], values[i + 1]))
            return result

        return compare
    if isinstance(node, ast.BoolOp):
        items = [_build(v, text) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

        def boolean(env: Values) -> Any:
            result = items[0](env)
            for item in items[1:]:
                result = combine(result, item(env))
            return result

        return boolean
    raise DataFormatError(
        f"constraint {text!r}: {type(node).__name__} is not allowed (use numbers, parameter "
        "names, + - * / // % **, comparisons, and/or/not)"
    )


def compile_expr(text: str) -> Compiled:
    """Compile ``text`` into ``f(values) -> array``; raises DataFormatError on anything unsafe."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise DataFormatError(f"constraint {text!r} is not an expression ({exc.msg})") from None
    return _build(tree, text)


def expr_names(text: str) -> set[str]:
    """The names an expression refers to."""
    return {n.id for n in ast.walk(ast.parse(str(text).strip(), mode="eval"))
            if isinstance(n, ast.Name)}


_FIELD = re.compile(r"\{([^{}]+)\}")


def format_reason(template: str, values: Values) -> str:
    """Fill ``{expr}`` fields of a reason template with the expression's value for one config."""

    def fill(match: re.Match[str]) -> str:
        value = np.asarray(compile_expr(match.group(1))(values)).item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    return _FIELD.sub(fill, template)
