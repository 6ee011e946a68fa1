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

# Real CRMScript global functions outside the subset (§13) → UnsupportedFeature: every global
# of SuperOffice's CRMScript reference that this sandbox does not implement (CRM and database
# access, web screens and CGI, chat, mail, host access), plus a few older names.
UNSUPPORTED_FUNCS = frozenset(
    [
        "addAction",
        "addChatMessage",
        "addHtmlElement",
        "buildUrl",
        "cgiWasPost",
        "checkReply",
        "combineHtmlStrings",
        "convertStatus",
        "copyCRMDocumentToAttachment",
        "debugWait",
        "decodeBase64AsStream",
        "decodeDBValue",
        "enableDebug",
        "encodeHMACSHA1",
        "executeDbiAgentSchedule",
        "executeMacro",
        "executeScript",
        "executeSQLQuery",
        "faqSearch",
        "findReplyTemplateToMerge",
        "flushCaches",
        "forwardMail",
        "getActiveUser",
        "getAgentId",
        "getAgentScheduleId",
        "getAttachmentsSize",
        "getCategoryIdFromFullname",
        "getCgiContent",
        "getCgiUrl",
        "getCgiVariable",
        "getCgiVariableArray",
        "getCgiVariableNames",
        "getCgiVariables",
        "getCookie",
        "getCurrent",
        "getCurrentUser",
        "getCustomerMainEmail",
        "getDatabaseConnection",
        "getDbiControl",
        "getDefaultElementConfig",
        "getDocumentId",
        "getEnvVariable",
        "getEventData",
        "getExecutable",
        "getExternalProgram",
        "getExternalProgramAdmin",
        "getExternalProgramAjax",
        "getExternalProgramBlogic",
        "getExternalProgramChat",
        "getExternalProgramCustomer",
        "getExternalProgramDocument",
        "getExternalProgramHelp",
        "getExternalProgramKnowledge",
        "getExternalProgramRms",
        "getExternalProgramSoap",
        "getExternalProgramStat",
        "getExternalProgramTicket",
        "getExtraTable",
        "getFavourites",
        "getFunctionList",
        "getGlobalStaticMap",
        "getGlobalVariable",
        "getHtmlElement",
        "getHtmlElementIndex",
        "getHtmlElementName",
        "getHttpHeader",
        "getLanguage",
        "getLanguageVariable",
        "getMainMenu",
        "getNtUser",
        "getNumHtmlElements",
        "getParser",
        "getParserParameter",
        "getParserParameterCount",
        "getParserVariable",
        "getParserVariableAsCSV",
        "getParserVariableCount",
        "getPID",
        "getPriorityIdFromName",
        "getProgram",
        "getProgramAdmin",
        "getProgramAjax",
        "getProgramBlogic",
        "getProgramChat",
        "getProgramCustomer",
        "getProgramDocument",
        "getProgramHelp",
        "getProgramKnowledge",
        "getProgramRms",
        "getProgramSoap",
        "getProgramStat",
        "getProgramTicket",
        "getReplyTemplateBody",
        "getReplyTemplateSubject",
        "getScreen",
        "getScreenElementConfig",
        "getScreenElementId",
        "getScreenElementName",
        "getScreenElementType",
        "getScriptId",
        "getSelectionIds",
        "getSessionVariable",
        "getSessionVariables",
        "getStatusIdFromName",
        "getSystemFlags",
        "getSystemLang",
        "getTypeName",
        "getUserLang",
        "getUsername",
        "getWarnings",
        "GenericFromString",
        "GenericToString",
        "htmlConvToText",
        "idToLang",
        "invoiceTypesExists",
        "isValidPhoneNumber",
        "langToId",
        "mapValue",
        "parseXML",
        "printBinary",
        "reloadAndSendShipment",
        "removeHtmlElement",
        "resetChat",
        "runProgram",
        "saveAllCgiAttachments",
        "saveCgiAttachment",
        "sendEmail",
        "sendMail",
        "sendSms",
        "setChatStatus",
        "setCookie",
        "setCurrent",
        "setEnvVariable",
        "setFromCgi",
        "setGlobalVariable",
        "setHidden",
        "setPageFocusFirstControl",
        "setPageOnLoad",
        "setPageRefresh",
        "setPageTitle",
        "setParserVariable",
        "setSessionVariable",
        "setUserIsTyping",
        "simpleTwoWay",
    ]
)


# Real methods of supported types that the sandbox leaves out (the spec's optional String
# helpers, HTTP streams, documents and debugging, the rest of TimeZone) → UnsupportedFeature.
UNSUPPORTED_METHODS = {
    "String": frozenset(
        [
            "escape",
            "extractHtmlBody",
            "extractHtmlHead",
            "getEmails",
            "getLine",
            "isValidEmail",
            "parseCSV",
            "parseSOMultiLanguageString",
            "prettyChop",
            "quote",
            "wrap",
        ]
    ),
    "HTTP": frozenset(
        [
            "addAttachmentData",
            "addDocumentData",
            "deleteAsStream",
            "getAsStream",
            "getDebug",
            "openAsStream",
            "patchAsStream",
            "postAsStream",
            "putAsStream",
            "setDebugMode",
        ]
    ),
    # real methods that §13.1 does not name
    "TimeZone": frozenset(["getTimeZone", "getTimeZoneSecs"]),
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
