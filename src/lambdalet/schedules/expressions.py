"""EventBridge Scheduler's schedule expressions: rate(...), cron(...) and at(...).

    rate(value unit)      unit: minute | minutes | hour | hours | day | days ("1 minute", "5 minutes")
                          (+ second | seconds, only when the server runs with --schedule-test-seconds)
    cron(min hour day-of-month month day-of-week year)    AWS's six fields (not Unix cron):
        min 0-59, hour 0-23, day-of-month 1-31, month 1-12 | JAN-DEC, day-of-week 1-7 | SUN-SAT
        (1 = Sunday), year 1970-2199; wildcards , - * / everywhere, ? in day-of-month or
        day-of-week (exactly one of the two must be ?), L (last day of the month; in day-of-week
        "L" = Saturday, "5L" = last Thursday of the month), W in day-of-month ("15W" = the weekday
        nearest the 15th, "LW" = last weekday), # in day-of-week ("3#2" = second Tuesday).
    at(yyyy-mm-ddThh:mm:ss)   one time.

Times of cron and at are wall-clock times in ScheduleExpressionTimezone (default UTC); a local time
that does not exist (DST gap) is skipped, an ambiguous one fires once (its first instance).
Rate schedules fire every interval counted from their anchor (StartDate, else creation/update time).
"""
from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.timezone.utc
MAX_SEARCH_DAYS = 366 * 8          # cron(... 2199) may be far, but a match within 8 years or none is enough
_MONTHS = {m: i for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                       "NOV", "DEC"], start=1)}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}
_RATE_RE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$")
_AT_RE = re.compile(r"^at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)$")
_CRON_RE = re.compile(r"^cron\((.*)\)$")
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_TEST_UNITS = {"second": 1, "seconds": 1}


class ExpressionError(ValueError):
    pass


def zone(name: str | None) -> dt.tzinfo:
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"Invalid timezone: {name}") from None


# ------------------------------------------------------------------------------ parsed expressions

@dataclass(frozen=True)
class Rate:
    seconds: int

    def next_after(self, t: float, anchor: float, tz: dt.tzinfo = UTC) -> float:
        """The first anchor + k*interval (k >= 1) strictly after t."""
        if t < anchor:
            return anchor + self.seconds
        k = math.floor((t - anchor) / self.seconds) + 1
        return anchor + max(1, k) * self.seconds


@dataclass(frozen=True)
class At:
    when: dt.datetime          # naive wall-clock time in the schedule's timezone

    def instant(self, tz: dt.tzinfo) -> float:
        return self.when.replace(tzinfo=tz).timestamp()

    def next_after(self, t: float, anchor: float, tz: dt.tzinfo = UTC) -> float | None:
        at = self.instant(tz)
        return at if at > t else None


def _field(text: str, lo: int, hi: int, names: dict[str, int] | None, what: str) -> frozenset[int]:
    out: set[int] = set()

    def num(s: str) -> int:
        s = s.upper()
        if names and s in names:
            return names[s]
        if not s.isdigit():
            raise ExpressionError(f"Invalid {what} value: {s}")
        v = int(s)
        if not lo <= v <= hi:
            raise ExpressionError(f"Invalid {what} value: {v} (must be {lo}-{hi})")
        return v

    for part in text.split(","):
        if not part:
            raise ExpressionError(f"Invalid {what} field: {text}")
        step = 1
        if "/" in part:
            part, step_s = part.split("/", 1)
            if not step_s.isdigit() or int(step_s) < 1:
                raise ExpressionError(f"Invalid {what} increment: {step_s}")
            step = int(step_s)
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = num(a), num(b)
            if start > end:
                raise ExpressionError(f"Invalid {what} range: {part}")
        else:
            start = num(part)
            end = hi if step > 1 else start
        out.update(range(start, end + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    dom: tuple | None              # ("set", frozenset) | ("L", offset) | ("W", day) | ("LW",) ; None = "?"
    dow: tuple | None              # ("set", frozenset of 1-7) | ("L", day) | ("#", day, nth) ; None = "?"

    def day_matches(self, y: int, m: int, d: int) -> bool:
        last = calendar.monthrange(y, m)[1]
        if self.dom is not None:
            kind = self.dom[0]
            if kind == "set":
                return d in self.dom[1]
            if kind == "L":
                return d == last - self.dom[1]
            if kind == "W":
                return d == _nearest_weekday(y, m, min(self.dom[1], last))
            if kind == "LW":
                return d == _nearest_weekday(y, m, last)
            return False
        assert self.dow is not None
        wd = _aws_weekday(y, m, d)
        kind = self.dow[0]
        if kind == "set":
            return wd in self.dow[1]
        if kind == "L":
            return wd == self.dow[1] and d + 7 > last
        if kind == "#":
            return wd == self.dow[1] and (d - 1) // 7 + 1 == self.dow[2]
        return False

    def next_after(self, t: float, anchor: float = 0.0, tz: dt.tzinfo = UTC) -> float | None:
        """The first matching wall-clock minute (in tz) strictly after instant t; None when none is left."""
        local = dt.datetime.fromtimestamp(t, tz).replace(tzinfo=None)
        start_minute = local.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start_minute.date()
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        max_year = max(self.years)
        for i in range(MAX_SEARCH_DAYS):
            if i:
                day = day + dt.timedelta(days=1)
            if day.year > max_year:
                return None
            if day.year not in self.years or day.month not in self.months:
                continue
            if not self.day_matches(day.year, day.month, day.day):
                continue
            for h in hours:
                for mi in minutes:
                    cand = dt.datetime(day.year, day.month, day.day, h, mi)
                    if cand < start_minute:
                        continue
                    instant = _to_instant(cand, tz)
                    if instant is not None and instant > t:
                        return instant
        return None


def _aws_weekday(y: int, m: int, d: int) -> int:
    return (dt.date(y, m, d).weekday() + 1) % 7 + 1         # Monday=0 -> 2 ... Sunday=6 -> 1


def _nearest_weekday(y: int, m: int, d: int) -> int:
    """The weekday (Mon-Fri) nearest day d of the month, never leaving the month (Quartz's W)."""
    last = calendar.monthrange(y, m)[1]
    wd = dt.date(y, m, d).weekday()       # 5 = Saturday, 6 = Sunday
    if wd == 5:
        return d - 1 if d > 1 else d + 2
    if wd == 6:
        return d + 1 if d < last else d - 2
    return d


def _to_instant(local: dt.datetime, tz: dt.tzinfo) -> float | None:
    """Wall-clock time -> epoch seconds; None for a time that does not exist in tz (DST gap)."""
    aware = local.replace(tzinfo=tz, fold=0)
    if tz is UTC:
        return aware.timestamp()
    back = dt.datetime.fromtimestamp(aware.timestamp(), tz).replace(tzinfo=None)
    if back != local:
        return None
    return aware.timestamp()


def _parse_dom(text: str) -> tuple | None:
    t = text.upper()
    if t == "?":
        return None
    if t == "L":
        return ("L", 0)
    m = re.fullmatch(r"L-(\d{1,2})", t)
    if m:
        if int(m[1]) > 30:
            raise ExpressionError(f"Invalid day-of-month value: {text}")
        return ("L", int(m[1]))
    if t == "LW":
        return ("LW",)
    m = re.fullmatch(r"(\d{1,2})W", t)
    if m:
        d = int(m[1])
        if not 1 <= d <= 31:
            raise ExpressionError(f"Invalid day-of-month value: {text}")
        return ("W", d)
    return ("set", _field(t, 1, 31, None, "day-of-month"))


def _parse_dow(text: str) -> tuple | None:
    t = text.upper()
    if t == "?":
        return None
    if t == "L":
        return ("set", frozenset({7}))
    m = re.fullmatch(r"([1-7]|[A-Z]{3})L", t)
    if m:
        return ("L", _day_number(m[1], text))
    m = re.fullmatch(r"([1-7]|[A-Z]{3})#([1-5])", t)
    if m:
        return ("#", _day_number(m[1], text), int(m[2]))
    return ("set", _field(t, 1, 7, _DAYS, "day-of-week"))


def _day_number(s: str, text: str) -> int:
    if s.isdigit():
        return int(s)
    if s in _DAYS:
        return _DAYS[s]
    raise ExpressionError(f"Invalid day-of-week value: {text}")


def parse_cron(body: str) -> Cron:
    fields = body.split()
    if len(fields) != 6:
        raise ExpressionError("A cron expression has six fields: minutes hours day-of-month month "
                              "day-of-week year")
    mi, h, dom, mon, dow, yr = fields
    dom_p, dow_p = _parse_dom(dom), _parse_dow(dow)
    if (dom_p is None) == (dow_p is None):
        raise ExpressionError("Exactly one of day-of-month and day-of-week must be '?' (you cannot "
                              "specify both, or neither)")
    return Cron(minutes=_field(mi, 0, 59, None, "minutes"), hours=_field(h, 0, 23, None, "hours"),
                months=_field(mon.upper(), 1, 12, _MONTHS, "month"), years=_field(yr, 1970, 2199, None, "year"),
                dom=dom_p, dow=dow_p)


def parse_expression(text: str, *, test_seconds: bool = False):
    """-> Rate | Cron | At, or ExpressionError with a message fit for a ValidationException."""
    if not isinstance(text, str) or not 1 <= len(text) <= 256:
        raise ExpressionError("Invalid Schedule Expression")
    s = text.strip()
    m = _RATE_RE.match(s)
    if m:
        value, unit = int(m[1]), m[2]
        units = dict(_UNITS, **(_TEST_UNITS if test_seconds else {}))
        if unit not in units:
            raise ExpressionError(f"Invalid Schedule Expression {text}: the unit must be minute(s), hour(s) "
                                  f"or day(s)")
        if value < 1:
            raise ExpressionError(f"Invalid Schedule Expression {text}: the value must be a positive integer")
        if (value == 1) != (not unit.endswith("s")):
            raise ExpressionError(f"Invalid Schedule Expression {text}: use a singular unit for 1 and a plural "
                                  f"unit for more than 1")
        return Rate(value * units[unit])
    m = _AT_RE.match(s)
    if m:
        try:
            return At(dt.datetime(*(int(g) for g in m.groups())))
        except ValueError:
            raise ExpressionError(f"Invalid Schedule Expression {text}: not a valid date and time") from None
    m = _CRON_RE.match(s)
    if m:
        try:
            return parse_cron(m[1])
        except ExpressionError as e:
            raise ExpressionError(f"Invalid Schedule Expression {text}: {e}") from None
    raise ExpressionError(f"Invalid Schedule Expression {text}: expected rate(...), cron(...) or at(...)")
