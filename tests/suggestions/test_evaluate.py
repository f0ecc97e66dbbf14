"""manage.py evaluate_suggestions: wrong cases, then exactly one summary line; the set's shape."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

from django.core.management import call_command

HERE = Path(__file__).parent
CATEGORIES = {"request", "fyi", "newsletter", "receipt", "calendar", "ooo", "quoted", "cc", "outbound", "sms",
              "non_english", "ambiguous", "closing"}


def test_the_last_line_has_the_exact_format(tmp_path):
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"id": 1, "owner": "alice@example.com", "timezone": "UTC", "action": True, "due": "2026-03-06",
         "raw": "From: Bob <bob@acme.com>\nTo: alice@example.com\nSubject: Q4\nDate: Wed, 04 Mar 2026 14:00:00 +0000\n\n"
                "Could you review the Q4 proposal by Friday?\n"},
        {"id": 2, "owner": "+14155550100", "timezone": "America/Los_Angeles", "action": False, "due": None,
         "sms": {"from": "+14155550123", "to": "+14155550100", "body": "Landed!", "sent_at": "2026-03-04T17:00:00Z"}},
        {"id": 3, "owner": "alice@example.com", "timezone": "UTC", "action": True, "due": None,
         "raw": "From: Bob <bob@acme.com>\nTo: alice@example.com\nSubject: hm\n\nThe weather is nice.\n"},
    ]
    cases.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    out = io.StringIO()
    call_command("evaluate_suggestions", str(cases), "--engine", "rules", stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert lines[-1] == "precision=1.00 recall=0.50 f1=0.67 due_accuracy=1.00 n=3"
    assert re.fullmatch(r"precision=\d\.\d\d recall=\d\.\d\d f1=\d\.\d\d due_accuracy=\d\.\d\d n=\d+", lines[-1])
    assert lines[0].startswith("3: missed")


def test_the_set_is_big_varied_and_has_a_holdout():
    tune = [json.loads(line) for line in (HERE / "eval_tune.jsonl").read_text().splitlines()]
    holdout = [json.loads(line) for line in (HERE / "eval_holdout.jsonl").read_text().splitlines()]
    assert len(tune) + len(holdout) >= 200
    assert 0.28 <= len(holdout) / (len(tune) + len(holdout)) <= 0.38
    assert {row["category"] for row in holdout} == CATEGORIES == {row["category"] for row in tune}
    assert not {row["id"] for row in tune} & {row["id"] for row in holdout}
