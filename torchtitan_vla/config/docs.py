"""Field documentation read from the dataclasses' attribute docstrings (torchtitan's convention).

Used by ``--print-config``'s comments and by ``scripts/gen_config_docs.py`` (docs/configuration.md).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for a dataclass whose fields are followed by a string literal."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for stmt, nxt in zip(body, body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def undocumented_fields(cls: type) -> list[str]:
    """Fields of ``cls`` (and nested config dataclasses) without a docstring, as dotted names."""
    missing = []
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name not in docs:
            missing.append(f"{cls.__name__}.{f.name}")
    return missing
