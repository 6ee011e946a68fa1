"""Tables of built-in signatures, filled by the modules of this package."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..types import Ty, parse_ty

# The implementations take and return plain Python values (values.py), their types being
# given by the CRMScript signature strings; registering returns the function unchanged.
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class Sig:
    name: str
    params: tuple[Ty, ...]
    ret: Ty
    impl: Callable[..., Any]
    ctx: bool = False  # impl takes the run Context first
    mutates: bool = False  # value-type receiver: impl returns (new receiver value, result)


METHODS: dict[str, dict[str, list[Sig]]] = {}
CTORS: dict[str, list[Sig]] = {}
FUNCS: dict[str, list[Sig]] = {}

# Real CRMScript global functions outside the subset (§13) → UnsupportedFeature.
UNSUPPORTED_FUNCS = frozenset(
    [
        "getEventData",
        "getActiveUser",
        "getCgiVariable",
        "getCgiVariables",
        "getCgiVariableNames",
        "getCgiContent",
        "setCookie",
        "getCookie",
        "setParserVariable",
        "runProgram",
        "executeSQLQuery",
        "executeScript",
        "getEnvVariable",
        "sendMail",
        "sendEmail",
        "sendSms",
        "getHtmlElement",
        "getScreen",
        "getCurrentUser",
        "getDatabaseConnection",
        "addHtmlElement",
        "getParserVariable",
        "setEnvVariable",
        "parseXML",
        "getTypeName",
        "GenericToString",
        "GenericFromString",
        "getProgram",
        "getLanguage",
    ]
)


# Optional methods of the spec that this implementation leaves out → UnsupportedFeature.
UNSUPPORTED_METHODS = {
    "String": frozenset(["prettyChop", "escape", "getLine", "parseCSV", "quote", "wrap"]),
    "HTTP": frozenset(
        [
            "getAsStream",
            "postAsStream",
            "putAsStream",
            "openAsStream",
            "addDocumentData",
            "addAttachmentData",
            "setDebugMode",
            "getDebug",
        ]
    ),
}


def _params(spec: str) -> tuple[Ty, ...]:
    return tuple(parse_ty(p.strip()) for p in spec.split(",") if p.strip())


def method(
    tname: str, mname: str, params: str, ret: str, *, ctx: bool = False, mutates: bool = False
) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        METHODS.setdefault(tname, {}).setdefault(mname, []).append(
            Sig(mname, _params(params), parse_ty(ret), fn, ctx, mutates)
        )
        return fn

    return deco


def ctor(tname: str, params: str, *, ctx: bool = False) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        CTORS.setdefault(tname, []).append(Sig(tname, _params(params), parse_ty(tname), fn, ctx))
        return fn

    return deco


def func(name: str, params: str, ret: str, *, ctx: bool = False) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        FUNCS.setdefault(name, []).append(Sig(name, _params(params), parse_ty(ret), fn, ctx))
        return fn

    return deco


def simple(tname: str, mname: str, params: str, ret: str, fn: Callable[..., Any]) -> None:
    method(tname, mname, params, ret)(fn)
