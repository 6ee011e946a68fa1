"""Date, Time and DateTime (§11.10). Values are naive datetime objects in UTC (host clock)."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar, overload

from ..errors import ScriptRuntimeError
from ..values import NULL_DATE, NULL_DATETIME, NULL_TIME, NullDate, NullDateTime, NullTime, wrap32
from .registry import ctor, func, method, simple

EPOCH = datetime(1970, 1, 1)
T_ = TypeVar("T_")
D_ = TypeVar("D_", bound=date)  # Date or DateTime (datetime is a subclass of date)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _guard(fn: Callable[..., T_]) -> Callable[..., T_]:
    def wrapped(*a: Any) -> T_:
        try:
            return fn(*a)
        except (OverflowError, ValueError) as e:
            raise ScriptRuntimeError(f"date out of range: {e}") from None

    return wrapped


def add_months(d: D_, n: int) -> D_:
    y, m = divmod(d.month - 1 + n, 12)
    y += d.year
    if not 1 <= y <= 9999:
        raise ScriptRuntimeError("date out of range")
    base = d.replace(year=y, month=m + 1, day=1)
    return base + timedelta(days=d.day - 1)


# ---- parsing
_DATE_RE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})\s*\Z")
_TIME_RE = re.compile(r"\s*(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?\s*\Z")
_DT_RE = re.compile(
    r"\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?\s*\Z"
)
_DT_COMPACT = re.compile(r"\s*(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\s*\Z")


def parse_date(s: str) -> date:
    m = _DATE_RE.match(s)
    if m:
        try:
            return date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            pass
    return NULL_DATE


def parse_time(s: str) -> time:
    m = _TIME_RE.match(s)
    if m:
        try:
            return time(int(m[1]), int(m[2]), int(m[3] or 0))
        except ValueError:
            pass
    return NULL_TIME


def parse_datetime(s: str) -> datetime:
    m = _DT_RE.match(s) or _DT_COMPACT.match(s)
    if m:
        try:
            y, mo, d, h, mi, sec = (int(x or 0) for x in m.groups())
            return datetime(y, mo, d, h, mi, sec)
        except ValueError:
            pass
    return NULL_DATETIME


# ---- Date
D = "Date"
ctor(D, "")(lambda: now().date())
ctor(D, "Date")(lambda d: d)
ctor(D, "String")(parse_date)
ctor(D, "DateTime")(lambda d: NULL_DATE if isinstance(d, NullDateTime) else d.date())
simple(D, "toString", "", "String", lambda d: "" if isinstance(d, NullDate) else d.isoformat())
simple(D, "isNull", "", "Bool", lambda d: isinstance(d, NullDate))


def _mut(fn: Callable[..., T_]) -> Callable[..., tuple[T_, T_]]:
    """Mutating method: the new value replaces the receiver and is also returned."""

    g = _guard(fn)

    def m(d: Any, *a: Any) -> tuple[T_, T_]:
        r = g(d, *a)
        return r, r

    return m


@overload
def _plain(d: datetime) -> datetime: ...
@overload
def _plain(d: date) -> date: ...
def _plain(d: date) -> date:
    """Null dates become real (year 1) values once changed."""
    if isinstance(d, NullDateTime):
        return datetime(1, 1, 1)
    if isinstance(d, NullDate):
        return date(1, 1, 1)
    return d


for _T in ("Date", "DateTime"):
    method(_T, "addDay", "Integer", _T, mutates=True)(
        _mut(lambda d, n: _plain(d) + timedelta(days=n))
    )
    method(_T, "addMonth", "Integer", _T, mutates=True)(_mut(lambda d, n: add_months(_plain(d), n)))
    method(_T, "addYear", "Integer", _T, mutates=True)(
        _mut(lambda d, n: add_months(_plain(d), 12 * n))
    )
    simple(_T, "getYear", "", "Integer", lambda d: d.year)
    simple(_T, "getMonth", "", "Integer", lambda d: d.month)
    simple(_T, "getMDay", "", "Integer", lambda d: d.day)
    simple(_T, "getWeekDay", "", "Integer", lambda d: d.weekday())
    simple(_T, "getWeek", "", "Integer", lambda d: d.isocalendar()[1])

# ---- Time
T = "Time"
ctor(T, "")(lambda: now().time())
ctor(T, "Time")(lambda t: t)
ctor(T, "String")(parse_time)
simple(
    T, "toString", "", "String", lambda t: "" if isinstance(t, NullTime) else t.strftime("%H:%M:%S")
)
simple(T, "isNull", "", "Bool", lambda t: isinstance(t, NullTime))
simple(T, "getHour", "", "Integer", lambda t: t.hour)
simple(T, "getMin", "", "Integer", lambda t: t.minute)
simple(T, "getSec", "", "Integer", lambda t: t.second)


def _tset(field: str) -> Callable[[time, int], time]:
    def setter(t: time, v: int) -> time:
        parts = {"hour": t.hour, "minute": t.minute, "second": t.second, field: v}
        try:
            return time(parts["hour"], parts["minute"], parts["second"])
        except ValueError:
            raise ScriptRuntimeError(f"invalid {field} {v}") from None

    return setter


method(T, "setHour", "Integer", "Void", mutates=True)(lambda t, v: (_tset("hour")(t, v), None))
method(T, "setMin", "Integer", "Void", mutates=True)(lambda t, v: (_tset("minute")(t, v), None))
method(T, "setSec", "Integer", "Void", mutates=True)(lambda t, v: (_tset("second")(t, v), None))

# ---- DateTime
DT = "DateTime"
ctor(DT, "")(now)
ctor(DT, "DateTime")(lambda d: d)
ctor(DT, "String")(lambda s: NULL_DATETIME if s.strip() in ("", "0") else parse_datetime(s))
ctor(DT, "Date")(
    lambda d: NULL_DATETIME if isinstance(d, NullDate) else datetime(d.year, d.month, d.day)
)


@ctor(DT, "Integer,Integer,Integer,Integer,Integer,Integer")
def _dt_parts(y: int, mo: int, d: int, h: int, mi: int, s: int) -> datetime:
    try:
        return datetime(y, mo, d, h, mi, s)
    except (ValueError, OverflowError) as e:
        raise ScriptRuntimeError(f"invalid DateTime: {e}") from None


simple(DT, "isNull", "", "Bool", lambda d: isinstance(d, NullDateTime))
simple(
    DT,
    "toString",
    "",
    "String",
    lambda d: "" if isinstance(d, NullDateTime) else d.strftime("%Y-%m-%d %H:%M:%S"),
)

_CODES = sorted(
    [
        "YY4",
        "YY2",
        "MM2",
        "MM1",
        "DD2",
        "DD1",
        "HH24",
        "H24",
        "HH12",
        "H12",
        "MI2",
        "SS2",
        "AMPM",
        "WEEKDAY",
        "ISOW2",
        "ISOW1",
        "ISOWY4",
        "ISOWY2",
    ],
    key=len,
    reverse=True,
)


def _h12(h: int) -> int:
    return 12 if h % 12 == 0 else h % 12


def format_dt(
    d: datetime, fmt: str, months: list[str] | None = None, days: list[str] | None = None
) -> str:
    iso = d.isocalendar()
    values = {
        "YY4": f"{d.year:04d}",
        "YY2": f"{d.year % 100:02d}",
        "MM2": f"{d.month:02d}",
        "MM1": str(d.month),
        "DD2": f"{d.day:02d}",
        "DD1": str(d.day),
        "HH24": f"{d.hour:02d}",
        "H24": str(d.hour),
        "HH12": f"{_h12(d.hour):02d}",
        "H12": str(_h12(d.hour)),
        "MI2": f"{d.minute:02d}",
        "SS2": f"{d.second:02d}",
        "AMPM": "am" if d.hour < 12 else "pm",
        "WEEKDAY": str(d.isoweekday()),
        "ISOW2": f"{iso[1]:02d}",
        "ISOW1": str(iso[1]),
        "ISOWY4": f"{iso[0]:04d}",
        "ISOWY2": f"{iso[0] % 100:02d}",
    }
    codes = _CODES
    if months is not None:
        values["MONTH"] = months[d.month - 1] if d.month - 1 < len(months) else ""
        wd = d.isoweekday() % 7  # Sunday 0
        values["WDAY"] = days[wd] if days is not None and wd < len(days) else ""
        codes = sorted([*codes, "MONTH", "WDAY"], key=len, reverse=True)
    out: list[str] = []
    i = 0
    n = len(fmt)
    while i < n:
        for c in codes:
            if fmt.startswith(c, i):
                out.append(values[c])
                i += len(c)
                break
        else:
            out.append(fmt[i])
            i += 1
    return "".join(out)


simple(DT, "toString", "String", "String", lambda d, f: format_dt(d, f))
simple(
    DT,
    "toString",
    "String,String,String",
    "String",
    lambda d, f, m, w: format_dt(d, f, m.split(","), w.split(",")),
)


@method(DT, "toString", "Integer,Integer,Bool", "String")
def _dt_mode(d: datetime, mode: int, lang: int, h24: bool) -> str:
    if mode == 0:
        return d.strftime("%Y-%m-%d")
    hour = f"{d.hour:02d}" if h24 else f"{_h12(d.hour):02d}"
    suffix = "" if h24 else (" am" if d.hour < 12 else " pm")
    if mode == 1:
        return d.strftime("%Y-%m-%d ") + f"{hour}:{d.minute:02d}{suffix}"
    return d.strftime("%Y-%m-%d ") + f"{hour}:{d.minute:02d}:{d.second:02d}{suffix}"


method(DT, "addHour", "Integer", DT, mutates=True)(
    _mut(lambda d, n: _plain(d) + timedelta(hours=n))
)
method(DT, "addMin", "Integer", DT, mutates=True)(
    _mut(lambda d, n: _plain(d) + timedelta(minutes=n))
)
method(DT, "addSec", "Integer", DT, mutates=True)(
    _mut(lambda d, n: _plain(d) + timedelta(seconds=n))
)
method(DT, "setTime", "Time", "Void", mutates=True)(
    lambda d, t: (datetime.combine(_plain(d).date(), time(t.hour, t.minute, t.second)), None)
)
simple(DT, "getTime", "", "Time", lambda d: NULL_TIME if isinstance(d, NullDateTime) else d.time())
simple(DT, "getDate", "", "Date", lambda d: NULL_DATE if isinstance(d, NullDateTime) else d.date())
simple(DT, "getHour", "", "Integer", lambda d: d.hour)
simple(DT, "getMin", "", "Integer", lambda d: d.minute)
simple(DT, "getSec", "", "Integer", lambda d: d.second)
simple(DT, "diff", "DateTime", "Integer", lambda a, b: wrap32(int((a - b).total_seconds())))
simple(DT, "getUnix", "", "Integer", lambda d: wrap32(int((d - EPOCH).total_seconds())))
method(DT, "setUnix", "Integer", "Void", mutates=True)(
    _guard(lambda d, s: (EPOCH + timedelta(seconds=s), None))
)


def _week_start(d: datetime) -> datetime:
    return datetime.combine(d.date() - timedelta(days=d.weekday()), time())


def _month_end(d: datetime) -> datetime:
    last = calendar.monthrange(d.year, d.month)[1]
    return datetime(d.year, d.month, last, 23, 59, 59)


def _quarter_start(d: datetime) -> datetime:
    return datetime(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


_MOVES: dict[str, Callable[[datetime], datetime]] = {
    "moveToDayStart": lambda d: datetime.combine(d.date(), time()),
    "moveToDayEnd": lambda d: datetime.combine(d.date(), time(23, 59, 59)),
    "moveToHourStart": lambda d: d.replace(minute=0, second=0),
    "moveToHourEnd": lambda d: d.replace(minute=59, second=59),
    "moveToWeekStart": _week_start,
    "moveToWeekEnd": lambda d: _week_start(d) + timedelta(days=6, hours=23, minutes=59, seconds=59),
    "moveToMonthStart": lambda d: datetime(d.year, d.month, 1),
    "moveToMonthEnd": _month_end,
    "moveToQuarterStart": _quarter_start,
    "moveToQuarterEnd": lambda d: _month_end(add_months(_quarter_start(d), 2)),
    "moveToYearStart": lambda d: datetime(d.year, 1, 1),
    "moveToYearEnd": lambda d: datetime(d.year, 12, 31, 23, 59, 59),
}


def _on_plain(fn: Callable[[datetime], datetime]) -> Callable[[datetime], datetime]:
    return lambda d: fn(_plain(d))


for _name, _fn in _MOVES.items():
    method(DT, _name, "", DT, mutates=True)(_mut(_on_plain(_fn)))

# ---- conversions from String and current time
simple("String", "toDate", "", "Date", parse_date)
simple("String", "toTime", "", "Time", parse_time)
simple(
    "String",
    "toDateTime",
    "",
    "DateTime",
    lambda s: NULL_DATETIME if s.strip() in ("", "0") else parse_datetime(s),
)
func("getCurrentDateTime", "", "DateTime")(now)
func("getCurrentDate", "", "Date")(lambda: now().date())
func("getCurrentTime", "", "Time")(lambda: now().time())


# ---- TimeZone (§13.1): the host's zone, which is UTC (like every date and time here)


class TimeZone:
    __slots__ = ("name",)

    def __init__(self, name: str = "UTC") -> None:
        self.name = name


HOST_TIME_ZONE = TimeZone("UTC")
func("getLocalTimeZone", "", "TimeZone")(lambda: HOST_TIME_ZONE)
simple("TimeZone", "getName", "", "String", lambda tz: tz.name)
