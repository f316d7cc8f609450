"""Measure the bot detector on the user agents shipped in public packages.

Crawlers: every `instances` example of `crawler-user-agents` must be caught.
Browsers: every user agent of `fake-useragent`, weighted by its `percent` market
share, should pass. Run `python bench/bot_quality.py` to print the Markdown report
kept in `bench/results/bot-quality.md`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

from crawleruseragents import CRAWLER_USER_AGENTS_DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracker.consumers.event_filter.bots import BotDetector


@dataclass
class Quality:
    """Recall on crawler examples and the browser traffic share wrongly flagged."""

    crawler_instances: int
    crawlers_missed: list[str] = field(default_factory=list)
    browser_agents: int = 0
    browser_false_positives: list[tuple[str, float]] = field(default_factory=list)
    browser_false_positive_share: float = 0.0

    @property
    def crawler_recall(self) -> float:
        return 1 - len(self.crawlers_missed) / self.crawler_instances


def browser_agents() -> list[tuple[str, float]]:
    """Return (user agent, percent share) of every browser in fake-useragent's data."""
    text = (resources.files("fake_useragent") / "data" / "browsers.jsonl").read_text(
        encoding="utf-8"
    )
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [(row["useragent"], float(row["percent"])) for row in rows]


def measure(detector: BotDetector) -> Quality:
    instances = [
        agent for entry in CRAWLER_USER_AGENTS_DATA for agent in entry.get("instances", [])
    ]
    quality = Quality(crawler_instances=len(instances))
    quality.crawlers_missed = [agent for agent in instances if not detector.is_bot(agent)]

    browsers = browser_agents()
    quality.browser_agents = len(browsers)
    total_share = sum(share for _agent, share in browsers)
    quality.browser_false_positives = [
        (agent, share) for agent, share in browsers if detector.is_bot(agent)
    ]
    flagged_share = sum(share for _agent, share in quality.browser_false_positives)
    quality.browser_false_positive_share = flagged_share / total_share
    return quality


def report(quality: Quality) -> str:
    lines = [
        "# Bot detection quality",
        "",
        "Command: `python bench/bot_quality.py`.",
        f"Data: crawler-user-agents {metadata.version('crawler-user-agents')},"
        f" fake-useragent {metadata.version('fake-useragent')}.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| crawler examples caught | {quality.crawler_instances - len(quality.crawlers_missed)}"
        f" of {quality.crawler_instances} ({quality.crawler_recall:.2%}) | >= 99% |",
        f"| browser agents flagged | {len(quality.browser_false_positives)} of {quality.browser_agents} | |",
        f"| browser traffic share flagged (by percent weight) | {quality.browser_false_positive_share:.4%} | <= 0.1% |",
        "",
        "The crawler examples are the same data the pattern list is maintained against, so",
        "recall on them is an upper bound for crawlers seen in the wild.",
    ]
    if quality.crawlers_missed:
        lines += ["", "Missed crawler examples:", ""] + [
            f"- `{agent}`" for agent in quality.crawlers_missed[:50]
        ]
    if quality.browser_false_positives:
        lines += ["", "Flagged browser agents:", ""] + [
            f"- `{agent}` ({share:.4f}%)" for agent, share in quality.browser_false_positives[:50]
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(measure(BotDetector())), end="")
