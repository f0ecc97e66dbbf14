"""Due dates: a deadline phrase is found in the new text, and dateparser reads it relative to the
message's sent time in the owner's time zone.

The phrases are located by pattern (dateparser's own search over a whole body is about a
hundred times slower, and finds dates in every phone number); what a phrase means is
dateparser's answer. Conventions on top of it, as task managers use them: "EOD"/"COB" is the
day it was sent, "end of the week" its Friday, "next week" the Monday of next week, "end of next
week" that week's Friday, "end of the month" its last day.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

import dateparser

_DATE_LANGUAGES = ["en", "de", "fr", "es", "it"]
_WEEKDAYS = ("monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thur|thurs|fri"
             "|montag|dienstag|mittwoch|donnerstag|freitag|lundi|mardi|mercredi|jeudi|vendredi"
             "|lunes|martes|mi[eé]rcoles|jueves|viernes|luned[iì]|marted[iì]|mercoled[iì]|gioved[iì]|venerd[iì]")
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|december"
           "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
           "|januar|februar|m[äa]rz|juni|juli|oktober|dezember|janvier|f[ée]vrier|mars|avril|mai|juin|juillet"
           "|ao[uû]t|septembre|octobre|novembre|d[ée]cembre|enero|febrero|marzo|abril|mayo|junio|julio|agosto"
           "|septiembre|octubre|noviembre|diciembre")
_ORD = r"(?:st|nd|rd|th|er|\.)?"

# (kind, pattern); the first group is what dateparser reads unless the kind says otherwise.
_PATTERNS: list[tuple[str, str]] = [
    ("today", r"\b(?:eod|cob|eob|end of (?:the )?(?:business )?day|close of business|by tonight|today|tonight"
              r"|heute|aujourd'hui|ce soir|hoy)\b"),
    ("end_next_week", r"\bend of next week\b"),
    ("end_week", r"\b(?:end of (?:the |this )?week|ende der woche|fin de (?:la )?semaine|final de (?:la )?semana)\b"),
    ("end_month", r"\b(?:end of (?:the |this )?month|ende des monats|fin (?:du|de) mois)\b"),
    ("next_week", r"\b(?:next week|n[äa]chste woche|semaine prochaine|la semana que viene|pr[oó]xima semana)\b"),
    ("parse", r"\b(tomorrow|morgen|demain|ma[ñn]ana)\b"),
    ("parse", r"\b(in (?:\d+|a|one|two|three|four|five|ten) (?:days?|weeks?))\b"),
    ("parse", r"\b(\d{4}-\d{2}-\d{2})\b"),
    ("parse", rf"\b((?:{_WEEKDAYS}),? )?((?:{_MONTHS})\.? \d{{1,2}}{_ORD}(?:,? \d{{4}})?)\b"),
    ("parse", rf"\b((?:{_WEEKDAYS}),? )?(\d{{1,2}}{_ORD} (?:of |de )?(?:{_MONTHS})\.?(?: \d{{4}})?)\b"),
    ("parse", r"\b(\d{1,2}/\d{1,2}(?:/\d{2,4})?)\b"),
    ("day_of_month", r"\b(?:the )(\d{1,2})(?:st|nd|rd|th)\b"),
    ("parse", rf"(?<!last )(?<!letzten )\b((?:(?:this|next|coming|n[äa]chsten) )?(?:{_WEEKDAYS}))\b"),
]
_COMPILED = [(kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _PATTERNS]
_CUE = re.compile(r"\b(?:by|before|until|till|due|deadline|no later than|not later than|latest|bis|sp[äa]testens|"
                  r"avant|d'ici|antes del?|para el|para|entro)\W*(?:\w+\W+){0,2}$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Due:
    date: dt.date
    phrase: str
    with_cue: bool  # "by Friday", "no later than ...": stated as a deadline


def local_base(sent_at: dt.datetime | None, time_zone: str) -> dt.datetime:
    """The sent time as naive wall-clock time in the owner's zone (dateparser's RELATIVE_BASE)."""
    moment = sent_at or dt.datetime.now(dt.UTC)
    try:
        zone = zoneinfo.ZoneInfo(time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    return moment.astimezone(zone).replace(tzinfo=None)


@lru_cache(maxsize=4096)
def _parse(phrase: str, base: dt.datetime) -> dt.date | None:
    found = dateparser.parse(phrase, languages=_DATE_LANGUAGES,
                             settings={"RELATIVE_BASE": base, "PREFER_DATES_FROM": "future"})
    return found.date() if found else None


def _resolve(kind: str, match: re.Match[str], base: dt.datetime) -> dt.date | None:
    today = base.date()
    if kind == "today":
        return today
    if kind == "end_week":
        return today + dt.timedelta(days=max(0, 4 - today.weekday()))
    if kind in ("next_week", "end_next_week"):
        day = _parse("next week", base)
        if day is None:
            return None
        monday = day - dt.timedelta(days=day.weekday())
        return monday + dt.timedelta(days=4) if kind == "end_next_week" else monday
    if kind == "day_of_month":
        # "the 20th": this month's if still ahead, else next month's (dateparser alone reads "12th" as December).
        day = int(match.group(1))
        month = dt.date(today.year, today.month, 1)
        if day < today.day:
            month = (month + dt.timedelta(days=32)).replace(day=1)
        return _parse(f"{day} {calendar.month_name[month.month]} {month.year}", base)
    if kind == "end_month":
        return today.replace(day=calendar.monthrange(today.year, today.month)[1])
    phrase = match.group(match.lastindex or 0)
    return _parse(phrase.lower().rstrip("."), base)


def find_due(text: str, sent_at: dt.datetime | None, time_zone: str) -> Due | None:
    """The due date stated in ``text``: the first one stated as a deadline, else the first date."""
    if not text:
        return None
    base = local_base(sent_at, time_zone)
    candidates: list[tuple[int, Due]] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _COMPILED:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < stop and end > begin for begin, stop in taken):
                continue  # inside a phrase already read ("next Friday" vs "Friday")
            day = _resolve(kind, match, base)
            if day is None or day < base.date():
                continue
            taken.append((start, end))
            cue = bool(_CUE.search(text[max(0, start - 40):start]))
            candidates.append((start, Due(day, match.group(0), cue)))
    if not candidates:
        return None
    candidates.sort(key=lambda item: (not item[1].with_cue, item[0]))
    return candidates[0][1]
