"""Sandboxed CRMScript interpreter (spec: shared/spec/crmscript.md).

Pipeline: includes → lark LALR parse → one checking pass that also builds Python closures
→ run with the §14 limits (statements, wall time, output, string/array sizes, call depth,
include depth, HTTP requests; plus a memory budget), none of which a script can catch.

Supported: every [C] item — lexical rules (keywords in any case), all value/reference
types and null semantics, declarations/scopes, operators with static types, all statements,
functions with overloading, #include (include-once), errors with try/catch
(`error`, `errorLocation`), global functions, webhook variables, Integer/Float/Bool/String/
array/Map/XMLNode+parseJSON/JSONBuilder/HTTP (host transport + per-tenant allow-list).
[E]: structs (methods, `this`, toJson, fromXMLNode, member initializers), Long, Byte,
Vector, Date/Time/DateTime (UTC), unary +, `for(;;)`, `return voidCall();`, String extras
(regexp without back-references or nested repetition, getWord, toByteArray, utf8/url/html/
xml encoders, keepChars, toDate/...), modulo, pow, rand, sleep (virtual), base64, SHA1,
HMAC, assert/assertEquals, XMLNode setters/toJSON/toString, JSONBuilder.setPrettyPrint,
Map.toJson/fromJson, the %EJSCRIPT_START% inline wrapper. Also accepted (⚠12/13):
`*= /= %=`, prefix `++x`, methods on literals.
Not supported (UnsupportedFeature at compile time): CRM/database APIs (NS* agents, Ticket,
Customer, SearchEngine, ...), web context (getCgi*, setCookie, ...), host access
(runProgram, executeSQLQuery, getEnvVariable, File), HTTP streams/attachments/debug,
parseXML, Generic helpers.
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
