"""The rules engine: deterministic, no network, explainable.

It reads only the new text (automation.engines.text). Suppressors are checked first and any one
of them ends the judgement (confidence 0, the suppressor named). Otherwise each positive signal
that fires adds its weight, combined as independent evidence (1 - product of (1 - weight)), and
a task is suggested at MIN_CONFIDENCE or above. The reasoning lists every signal that fired.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from automation.engines.base import Engine, Judgement, MessageInput
from automation.engines.dates import Due, find_due
from automation.engines.text import new_text, sentences


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"(?:^|\b)(?:" + "|".join(alternatives) + r")(?:\b|$)", re.IGNORECASE)


# --- positive signals --------------------------------------------------------------------------
REQUEST = _words(
    r"please", r"pls", r"could you", r"can you", r"would you", r"will you", r"could we", r"can we", r"let me know",
    r"need you to", r"i need you", r"would you mind", r"would it be possible", r"i'?d appreciate", r"kindly",
    r"make sure", r"don'?t forget", r"remember to", r"are you able to", r"do you mind",
    r"(?:i|we)(?: would|'d) be grateful", r"grateful if you", r"(?:we|i) need your", r"waiting (?:on|for) your",
    r"needs? your (?:signature|approval|input|feedback|sign-off|review|ok|confirmation|answer|decision)",
    r"would (?:be great|love) (?:to get|to hear|if you)", r"(?:just )?(?:checking|following) (?:in|up) on",
    r"potresti", r"potrebbe", r"per favore", r"puoi",
    # German, French, Spanish
    r"bitte", r"k[öo]nnten sie", r"k[öo]nntest du", r"kannst du", r"k[öo]nnen sie", r"w[äa]ren sie so",
    r"pourriez-vous", r"pouvez-vous", r"peux-tu", r"pourrais-tu", r"merci de", r"s'il vous pla[iî]t", r"svp",
    r"por favor", r"puedes", r"podr[ií]as", r"podr[ií]a", r"puede usted", r"necesito que",
)
# Courtesy formulas that contain a request word but ask nothing.
BOILERPLATE = _words(
    r"please (?:find|see) (?:the )?attached", r"please find", r"please note", r"please do not reply",
    r"please don'?t hesitate", r"please feel free", r"please consider the environment",
    r"(?:please )?let me know if you (?:have|need) (?:any )?(?:questions|anything|help|thoughts)",
    r"let me know if (?:there'?s|there is) anything", r"let me know if i can help",
    r"can you believe", r"(?:please )?do not reply to this", r"if you have any questions", r"please welcome",
)
IMPERATIVE = re.compile(
    r"^(?:(?:hi|hey|hello|dear)\b[^,:]{0,30}[,:] ?)?(?:also,? |and |so |then |just |pls |please )?"
    r"(?:(?:could|can|would|will) you (?:please |kindly )?)?"
    r"(review|send|sign|confirm|schedule|call|approve|submit|forward|share|book|prepare|update|fill out|fill in|"
    r"complete|check|reply|respond|return|pay|upload|order|set up|arrange|ping|remind|follow up|get back|"
    r"add|fix|draft|put together|look over|take a look|bring|ship|renew|register|email|text)\b",
    re.IGNORECASE)
QUESTION_TO_YOU = re.compile(r"\b(?:you|your|du|sie|vous|tu|usted|ustedes)\b", re.IGNORECASE)
MEETING = _words(
    r"meet(?:ing)?", r"catch up", r"hop on a call", r"jump on a call", r"quick call", r"a call", r"set up a time",
    r"find a time", r"grab (?:a )?(?:coffee|lunch)", r"are you (?:free|available)", r"your availability",
    r"works? for you", r"zoom", r"calendar invite", r"treffen", r"termin", r"r[ée]union", r"rendez-vous",
    r"reuni[oó]n", r"llamada",
)
URGENT = _words(r"asap", r"urgent(?:ly)?", r"as soon as possible", r"right away", r"time-sensitive", r"dringend",
                r"urgente?", r"lo antes posible", r"d[èe]s que possible")

# --- suppressors ------------------------------------------------------------------------------
NO_REPLY_SENDER = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|notifications?|notify|alerts?|mailer-daemon|postmaster|"
    r"bounces?|news(?:letter)?|marketing|updates|digest|info|billing|receipts?|orders?|support|automated|"
    r"calendar-notification|system|accounts?|jira|confluence|gitlab|bitbucket)(?:[-_+.][^@]*)?@", re.IGNORECASE)
SHORT_CODE = re.compile(r"^\+?\d{3,6}$")
AUTO_REPLY_SUBJECT = _words(r"automatic reply", r"auto(?:matic)?[- ]?reply", r"auto:", r"out of (?:the )?office",
                            r"ooo", r"abwesenheitsnotiz", r"automatische antwort", r"r[ée]ponse automatique",
                            r"absence", r"respuesta autom[áa]tica", r"fuera de la oficina")
AUTO_REPLY_BODY = _words(r"i am (?:currently )?out of (?:the )?office", r"i'?m (?:currently )?out of (?:the )?office",
                         r"i am (?:currently )?away", r"i will be out of", r"i'?ll be out of the office",
                         r"with limited access to (?:e-?mail|my email)", r"ich bin (?:bis|vom|derzeit)",
                         r"je suis absent", r"estoy fuera de la oficina")
RECEIPT = _words(r"receipt", r"your order", r"order (?:confirmation|#|number)", r"payment (?:received|confirmation)",
                 r"has shipped", r"out for delivery", r"thank you for your (?:purchase|order|payment)",
                 r"verification code", r"one-time (?:code|password)", r"security alert", r"password (?:was )?reset",
                 r"your statement is (?:ready|available)", r"invoice (?:is )?(?:available|attached) for your records",
                 r"transaction", r"booking confirm", r"reservation confirm", r"your trip", r"e-?ticket")
NEWSLETTER_BODY = _words(r"unsubscribe", r"view (?:this email )?in (?:your )?browser", r"you are receiving this",
                         r"you received this (?:email|message) because", r"manage (?:your )?(?:email )?preferences",
                         r"update your preferences", r"abmelden", r"se d[ée]sabonner", r"darse de baja")
CALENDAR_SUBJECT = re.compile(r"^(?:updated )?(?:invitation|invitaci[oó]n|einladung|accepted|declined|tentative|"
                              r"canceled|cancelled)(?: event)?:", re.IGNORECASE)
CLOSING = re.compile(
    r"^(?:(?:ok(?:ay)?|great|perfect|awesome|cool|sounds good|noted|got it|received|will do|understood|sure|"
    r"thanks?(?: you)?(?: so much| very much| a lot)?|many thanks|thx|ty|cheers|appreciate it|much appreciated|"
    r"all good|no worries|done|d'accord|merci(?: beaucoup)?|danke(?: schön| dir| ihnen)?|alles klar|"
    r"gracias|perfecto|vale|entendido)(?:[ ,.!:;-]+|$))+$",
    re.IGNORECASE)
BULK_LABELS = {"category_promotions", "category_social", "category_forums", "category_updates"}

WEIGHTS = {"request": 0.55, "imperative": 0.45, "question": 0.3, "meeting": 0.3, "deadline": 0.3, "urgent": 0.2}
MIN_CONFIDENCE = 0.5


class RulesEngine(Engine):
    name = "rules"
    version = "1.0"

    def judge(self, message: MessageInput) -> Judgement:
        suppressor = self._suppressor(message)
        if suppressor is not None:
            return self._no(f"Suppressed: {suppressor}.", ("suppressed",))
        email = message.channel == "email"
        text = new_text(message.body, email=email)
        if not text:
            return self._no("No new text (everything is quoted or empty).", ())
        closing = self._closing(text)
        if closing:
            return self._no(f"Suppressed: a closing reply ({closing!r}).", ("suppressed",))
        fired, evidence, best = self._signals(sentences(text))
        due = find_due(text, message.sent_at, message.time_zone) if fired else None
        if due is not None:
            fired["deadline"] = WEIGHTS["deadline"] if due.with_cue else WEIGHTS["deadline"] / 2
            evidence["deadline"] = f"{due.phrase!r} -> {due.date.isoformat()}"
        if not fired:
            return self._no("No request, question, meeting or deadline in the new text.", ())
        remaining = 1.0
        for weight in fired.values():
            remaining *= 1.0 - weight
        confidence = round(1.0 - remaining, 2)
        if len(fired) == 1 and "deadline" in fired:
            confidence = min(confidence, 0.3)  # a date alone asks nothing
        reasons = "; ".join(f"{name} ({evidence[name]})" for name in fired)
        if confidence < MIN_CONFIDENCE:
            return self._no(f"Too weak ({confidence:.2f}): {reasons}.", tuple(fired), confidence)
        return Judgement(
            action=True, confidence=confidence, reasoning=f"Signals: {reasons}. Confidence {confidence:.2f}.",
            engine=self.name, engine_version=self.version, title=_title(best, message.subject),
            description=text[:1000], priority=_priority(fired, due, message), due=due.date if due else None,
            tags=tuple(fired), signals=tuple(fired),
        )

    def _no(self, reasoning: str, signals: tuple[str, ...], confidence: float = 0.0) -> Judgement:
        return Judgement(action=False, confidence=confidence, reasoning=reasoning, engine=self.name,
                         engine_version=self.version, signals=signals)

    @staticmethod
    def _suppressor(message: MessageInput) -> str | None:
        own = message.owner_addresses
        if message.direction == "outbound" or (message.sender and message.sender in own):
            return "outbound (you sent it)"
        headers = message.headers
        if message.channel == "email" and own:
            to_you, cc_you = bool(own.intersection(message.to)), bool(own.intersection(message.cc))
            if cc_you and not to_you:
                return "you are only in cc"
        auto = headers.get("auto-submitted", "").strip().lower()
        if auto and auto != "no":
            return f"Auto-Submitted: {auto}"
        if headers.get("x-autoreply") or headers.get("x-autorespond"):
            return "an auto-reply (X-Autoreply)"
        if AUTO_REPLY_SUBJECT.search(message.subject) or AUTO_REPLY_BODY.search(message.body[:600]):
            return "an auto-reply (out of office)"
        if headers.get("list-unsubscribe") or headers.get("list-id"):
            return "a newsletter or list mail (List-Unsubscribe / List-Id)"
        if headers.get("precedence", "").strip().lower() in ("bulk", "list", "junk"):
            return f"Precedence: {headers['precedence'].strip().lower()}"
        if BULK_LABELS.intersection(label.lower() for label in message.labels):
            return "filed by the provider as promotions/updates/social"
        if message.channel == "email" and NO_REPLY_SENDER.search(message.sender):
            return f"an automated sender ({message.sender})"
        if message.channel != "email" and SHORT_CODE.match(message.sender):
            return f"an automated short-code sender ({message.sender})"
        if message.has_calendar or CALENDAR_SUBJECT.search(message.subject):
            return "a calendar invitation (answered in the calendar)"
        if RECEIPT.search(message.subject) or RECEIPT.search(message.body[:400]):
            return "a receipt or notification"
        if NEWSLETTER_BODY.search(message.body[-1500:]):
            return "a newsletter (unsubscribe footer)"
        return None

    @staticmethod
    def _closing(text: str) -> str | None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # A greeting line ("Hi Bob,") and a closing name line are not the message.
        body = [line for line in lines if not re.match(r"^(?:hi|hey|hello|dear|hallo|bonjour|hola)\b.{0,30}$", line,
                                                       re.IGNORECASE)]
        if not body or len(" ".join(body)) > 200:
            return None
        first = " ".join(body[:2]) if len(body) > 1 and len(body[1].split()) > 2 else body[0]
        return first if CLOSING.match(first) or (CLOSING.match(body[0]) and "?" not in " ".join(body)
                                                and not REQUEST.search(" ".join(body))) else None

    @staticmethod
    def _signals(parts: Iterable[str]) -> tuple[dict[str, float], dict[str, str], str]:
        fired: dict[str, float] = {}
        evidence: dict[str, str] = {}
        best, best_score = "", 0.0

        def fire(name: str, what: str) -> None:
            if name not in fired:
                fired[name] = WEIGHTS[name]
                evidence[name] = what

        for sentence in parts:
            cleaned = BOILERPLATE.sub(" ", sentence)
            score = 0.0
            if (found := REQUEST.search(cleaned)) is not None:
                fire("request", f"'{found.group(0).lower()}'")
                score += 2
            if (found := IMPERATIVE.search(cleaned)) is not None:
                fire("imperative", f"'{found.group(1).lower()}'")
                score += 1.5
            if cleaned.rstrip().endswith("?") and QUESTION_TO_YOU.search(cleaned):
                fire("question", "a direct question")
                score += 1
            if (found := MEETING.search(cleaned)) is not None and (score or "?" in cleaned):
                fire("meeting", f"'{found.group(0).lower()}'")
                score += 1
            if (found := URGENT.search(cleaned)) is not None:
                fire("urgent", f"'{found.group(0).lower()}'")
            if score > best_score:
                best, best_score = sentence, score
        return fired, evidence, best


_LEAD = re.compile(
    r"^(?:(?:hi|hey|hello|dear)\b[^,:]{0,30}[,:]\s*)?(?:(?:also|and|so|then|just|one more thing)[,:]?\s+)?"
    r"(?:(?:could|can|would|will) you(?: please| kindly)?|please|pls|kindly|i need you to|need you to|"
    r"would you mind|are you able to)\s+", re.IGNORECASE)


def _title(sentence: str, subject: str) -> str:
    title = _LEAD.sub("", sentence).strip().rstrip("?.!; ").strip()
    title = re.sub(r",?\s*(?:please|thanks|thank you)$", "", title, flags=re.IGNORECASE)
    if len(title) < 4:
        title = f"Reply: {subject}" if subject else "Reply"
    title = title[0].upper() + title[1:]
    return title if len(title) <= 120 else title[:117].rstrip() + "..."


def _priority(fired: dict[str, float], due: Due | None, message: MessageInput) -> str:
    if "urgent" in fired:
        return "high"
    if due is not None and message.sent_at is not None:
        days = (due.date - message.sent_at.date()).days
        if days <= 1:
            return "high"
    if due is None and len(fired) == 1:
        return "low"
    return "medium"
