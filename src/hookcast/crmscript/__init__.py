"""Sandboxed CRMScript interpreter (spec: shared/spec/crmscript.md).

Pipeline: `#include` expansion → lark LALR parse → one checking pass (names, types,
overloads) that also builds Python closures → run under the §14 limits (statements, wall
time, output, string/array sizes, call depth, include depth, HTTP requests, plus a memory
budget). A script cannot catch LimitExceeded. Compiled scripts are cached by source and
include texts. `run_script` never raises for script problems.

Supported — every [C] item: lexical rules (keywords in any letter case, `in` only in
foreach), all types with null semantics, scopes/shadowing, static operators, every
statement, functions with overloading and recursion, #include (include-once), try/catch
with `error`/`errorLocation`, throw, global functions, webhook variables, Integer, Float,
Bool, String, arrays (multi-dimensional), Map, parseJSON/XMLNode, JSONBuilder, HTTP (host
transport + per-tenant host allow-list, http/https only).
[E] also supported: structs (methods, `this`, chaining, member initializers, toJson,
fromXMLNode), Long, Byte (Byte[] is a bytearray), Vector, Date/Time/DateTime (UTC),
unary +, `for(;;)`, `return voidCall();`, String regexp (no back-references or nested
repetition), getWord, toByteArray, utf8/url/html/xml encode+decode, keepChars,
toDate/toTime/toDateTime, modulo, pow, rand, sleep (virtual: counts against the time
limit), encodeBase64/decodeBase64, encodeSHA1, encodeSHA256 (HMAC), encodeHMACSHA256/512,
assert/assertEquals, XMLNode getNodeFromPath/setName/setText/setParameter/addChild/
setChildren/toJSON/toString, JSONBuilder.setPrettyPrint/addNull, Map.toJson/fromJson, the
%EJSCRIPT_START% inline wrapper, TimeZone/getLocalTimeZone().getName() and makePassword
(§13.1). Accepted beyond the spec (⚠12/⚠13): `*= /= %=`, prefix `++x`, method calls on
literals. A compile reports every error it finds (panic-mode recovery for syntax errors,
statement by statement for checking errors), each with line and column.

Not supported (UnsupportedFeature at compile time): every other global function and class
of SuperOffice's CRMScript reference — CRM/database APIs (NS* agents, Ticket, Customer,
Company, User, Message, Email, SearchEngine, Attachment, ExtraTable, Parser,
ReplyTemplate, EventData, File, getEventData, getActiveUser, ...), web context (getCgi*,
setCookie, setParserVariable, screens and HTML elements), chat (addChatMessage,
resetChat, setChatStatus, ...), mail, host access (runProgram, executeSQLQuery,
executeScript, getEnvVariable), HTTP *AsStream/addDocumentData/addAttachmentData/
setDebugMode/getDebug, String prettyChop/escape/getLine/parseCSV/quote/wrap/getEmails/...,
parseXML and the Generic helpers. docs/crmscript-compatibility.md lists them.
"""

from .errors import CompileError, Diagnostic
from .interpreter import CompiledScript, RunResult, check, compile_script, run_script
from .limits import Limits
from .transport import HttpResponse, HttpTransport, HttpTransportError

__all__ = [
    "CompileError",
    "CompiledScript",
    "Diagnostic",
    "HttpResponse",
    "HttpTransport",
    "HttpTransportError",
    "Limits",
    "RunResult",
    "check",
    "compile_script",
    "run_script",
]
