"""The exception tree drawn in ``greenplace.errors`` is the tree of the classes, and every
error greenplace defines is in it (or listed below as not there yet, with who owns it).

Every module of the package is imported, then every exception class defined in it is found:
a new error that does not join ``GreenplaceError``, or joins it without being drawn, fails.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import greenplace
from greenplace import errors

# Drawn in the docstring as outside the tree on purpose.
OUTSIDE = {"controller.faults.InjectedFaultError"}
# Defined in modules other work owns; each joins the tree (as a subclass of GreenplaceError,
# keeping ValueError or RuntimeError beside it) and is drawn, then leaves this set.
NOT_YET_JOINED: set[str] = set()


def name(cls: type) -> str:
    return f"{cls.__module__.removeprefix('greenplace.')}.{cls.__qualname__}"


def defined_errors() -> set[type[BaseException]]:
    """Every exception class defined in a module of the package."""
    found: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(greenplace.__path__, "greenplace."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.add(value)
    return found


def drawn_tree() -> dict[str, str]:
    """Each class drawn under ``GreenplaceError`` in the docstring, mapped to its parent."""
    assert errors.__doc__ is not None
    parents: dict[str, str] = {}
    stack = ["GreenplaceError"]
    for line in errors.__doc__.splitlines():
        drawn = re.match(r"^    ((?:│   |    )*)[├└]── ([\w.]+)", line)
        if drawn is None:
            continue
        depth = len(drawn.group(1)) // 4 + 1
        del stack[depth:]
        parents[drawn.group(2)] = stack[-1]
        stack.append(drawn.group(2))
    return parents


def real_tree() -> dict[str, str]:
    parents: dict[str, str] = {}
    for cls in defined_errors():
        if issubclass(cls, errors.GreenplaceError) and cls is not errors.GreenplaceError:
            base = next(b for b in cls.__mro__[1:] if issubclass(b, errors.GreenplaceError))
            parents[name(cls)] = "GreenplaceError" if base is errors.GreenplaceError else name(base)
    return parents


def test_the_drawn_tree_is_the_tree_of_the_classes() -> None:
    drawn = drawn_tree()
    assert len(drawn) >= 10, drawn  # the drawing was read at all
    assert drawn == real_tree()


def test_every_error_greenplace_defines_is_in_the_tree() -> None:
    defined = {name(c): c for c in defined_errors()}
    outside = {n for n, c in defined.items() if not issubclass(c, errors.GreenplaceError)}
    assert outside - OUTSIDE - NOT_YET_JOINED == set(), "join GreenplaceError and draw it"
    joined = (NOT_YET_JOINED & defined.keys()) - outside
    assert not joined, f"{joined} joined the tree: draw it in greenplace.errors, drop it here"
    assert outside >= OUTSIDE
