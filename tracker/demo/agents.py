"""Real user agents: browsers weighted by market share, and crawler examples.

Browsers come from the `fake-useragent` package's `data/browsers.jsonl`, whose rows carry a
`percent` share. Crawlers are the `instances` examples of the `crawler-user-agents` package.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources

from tracker.errors import TrackerError

__all__ = ["UserAgents", "load_user_agents"]


@dataclass(frozen=True, slots=True)
class UserAgents:
    """Browser agents with their share weights, and crawler agents."""

    browsers: tuple[str, ...]
    browser_weights: tuple[float, ...]
    crawlers: tuple[str, ...]

    def pick_browser(self, rng: random.Random) -> str:
        return rng.choices(self.browsers, weights=self.browser_weights, k=1)[0]

    def pick_crawler(self, rng: random.Random) -> str:
        return rng.choice(self.crawlers)


def load_user_agents() -> UserAgents:
    """Load both lists; raise TrackerError when a package's data is missing or empty."""
    try:
        text = (resources.files("fake_useragent") / "data" / "browsers.jsonl").read_text(
            encoding="utf-8"
        )
        from crawleruseragents import CRAWLER_USER_AGENTS_DATA
    except (ImportError, OSError) as error:
        raise TrackerError(
            f"cannot load user agent data ({error}); install fake-useragent and crawler-user-agents"
        ) from error

    browsers: list[str] = []
    weights: list[float] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        share = float(row.get("percent", 0.0))
        if row.get("useragent") and share > 0:
            browsers.append(row["useragent"])
            weights.append(share)

    crawlers = [agent for entry in CRAWLER_USER_AGENTS_DATA for agent in entry.get("instances", [])]
    if not browsers or not crawlers:
        raise TrackerError(
            "user agent data is empty: fake-useragent or crawler-user-agents is broken"
        )
    return UserAgents(tuple(browsers), tuple(weights), tuple(crawlers))
