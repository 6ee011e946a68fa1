"""Global functions (§10) and webhook variables (§15)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import secrets
import string

from ..errors import AssertException, DivisionByZero, ExitScript, ScriptRuntimeError
from ..runtime import Context
from ..values import wrap32
from .maps import CMap
from .registry import func

func("print", "String", "Void", ctx=True)(lambda ctx, s: ctx.write(s))
func("printLine", "String", "Void", ctx=True)(lambda ctx, s: ctx.write(s + "\n"))
func("getVariable", "String", "String", ctx=True)(lambda ctx, k: ctx.vars.get(k, ""))
func("getVariables", "", "Map", ctx=True)(lambda ctx: CMap(dict(ctx.vars)))


@func("setVariable", "String,String", "Void", ctx=True)
def _set_variable(ctx: Context, k: str, v: str) -> None:
    if k not in ctx.vars:
        ctx.check_array(len(ctx.vars) + 1)
    ctx.store(v)
    ctx.vars[k] = v


for _name in ("log", "logMessage", "printDebug"):
    func(_name, "String", "Void", ctx=True)(lambda ctx, s: ctx.log(s))


@func("exitWithMessage", "String", "Void", ctx=True)
def _exit(ctx: Context, msg: str) -> None:
    ctx.exit_message = msg
    raise ExitScript(msg)


# ---- extended


@func("modulo", "Integer,Integer", "Integer")
def _modulo(a: int, b: int) -> int:
    if b == 0:
        raise DivisionByZero("modulo by zero")
    return wrap32(int(math.fmod(a, b)))


@func("pow", "Float,Float", "Float")
def _pow(a: float, b: float) -> float:
    try:
        r = math.pow(a, b)
    except (OverflowError, ValueError) as e:
        raise ScriptRuntimeError(f"pow: {e}") from None
    return r


@func("rand", "Integer,Integer", "Integer")
def _rand(lo: int, hi: int) -> int:
    if hi < lo:
        lo, hi = hi, lo
    return random.randint(lo, hi)


func("sleep", "Float", "Void", ctx=True)(lambda ctx, s: ctx.sleep(s))


@func("encodeBase64", "Byte[]", "String", ctx=True)
def _b64(ctx: Context, data: bytearray) -> str:
    return ctx.check_string(base64.b64encode(bytes(data)).decode("ascii"))


@func("encodeBase64", "Byte[],Bool", "String", ctx=True)
def _b64_wrap(ctx: Context, data: bytearray, wrap: bool) -> str:
    s = base64.b64encode(bytes(data)).decode("ascii")
    if wrap:
        s = "".join(s[i : i + 76] + "\n" for i in range(0, len(s), 76))
    return ctx.check_string(s)


@func("decodeBase64", "String", "Byte[]")
def _unb64(s: str) -> bytearray:
    try:
        clean = "".join(s.split())
        return bytearray(base64.b64decode(clean + "=" * (-len(clean) % 4), validate=True))
    except (ValueError, TypeError) as e:
        raise ScriptRuntimeError(f"invalid base64 text: {e}") from None


def hash_bytes(s: str) -> bytes:
    """Text as hashed (§10): characters all ≤ U+00FF as those bytes (the inverse of
    String(Byte[]), so a binary key survives), anything else as UTF-8."""
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8")


func("encodeSHA1", "String", "String")(lambda s: hashlib.sha1(hash_bytes(s)).hexdigest())
func("encodeSHA256", "String,String", "String")(
    lambda k, v: hmac.new(hash_bytes(k), hash_bytes(v), hashlib.sha256).hexdigest()
)
func("encodeHMACSHA256", "String,String", "Byte[]")(
    lambda k, v: bytearray(hmac.new(hash_bytes(k), hash_bytes(v), hashlib.sha256).digest())
)
func("encodeHMACSHA512", "String,String", "Byte[]")(
    lambda k, v: bytearray(hmac.new(hash_bytes(k), hash_bytes(v), hashlib.sha512).digest())
)


@func("makePassword", "Integer", "String")
def _make_password(length: int) -> str:
    """§13.1: random letters and digits."""
    if not 1 <= length <= 1024:
        raise ScriptRuntimeError(f"makePassword length {length} outside 1..1024")
    return "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(length))


_PASSWORD_CHARS = string.ascii_letters + string.digits


@func("assert", "Bool", "Void")
def _assert(b: bool) -> None:
    if not b:
        raise AssertException("assertion failed")


def _assert_equals(a: object, b: object) -> None:
    if a != b:
        raise AssertException(f"expected {_show(a)} but got {_show(b)}")


def _show(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v[:200] + '"'
    return str(v)


for _t in ("Bool", "Integer", "Float", "String"):
    func("assertEquals", f"{_t},{_t}", "Void")(_assert_equals)
