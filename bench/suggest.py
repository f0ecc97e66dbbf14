"""Rules-engine throughput on one core: messages judged per second over the labelled set.

    DEBUG=true .venv/bin/python -m bench.suggest [--seconds 5]

The cases are parsed once (as the flow's input), then judged in a loop; dates are re-read every
time (the parse cache is cleared between rounds), so the figure is the engine's, not a cache's.
Target: >= 500 messages/s.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
django.setup()

from automation.engines import dates  # noqa: E402
from automation.engines.rules import RulesEngine  # noqa: E402
from automation.evaluation import read_cases  # noqa: E402

SET = Path(__file__).resolve().parent.parent / "tests" / "suggestions"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    messages = [case.message for case in read_cases(sorted(SET.glob("eval_*.jsonl")))]
    engine = RulesEngine()
    for message in messages:  # warm-up: regexes compiled, dateparser's language data loaded
        engine.judge(message)
    judged, started = 0, time.perf_counter()
    slowest = 0.0
    while time.perf_counter() - started < args.seconds:
        dates._parse.cache_clear()  # noqa: SLF001 - measure the real date parsing
        for message in messages:
            t = time.perf_counter()
            engine.judge(message)
            slowest = max(slowest, time.perf_counter() - t)
        judged += len(messages)
    elapsed = time.perf_counter() - started
    print(f"messages={judged} seconds={elapsed:.2f} rate={judged / elapsed:.0f}/s "
          f"mean_ms={elapsed / judged * 1000:.3f} slowest_ms={slowest * 1000:.2f} cases={len(messages)}")


if __name__ == "__main__":
    main()
