"""Analytics over the hot, warm and cold tiers, and the router that picks one per query."""
