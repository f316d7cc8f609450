"""The platform API: tenant management, API keys, tracking URLs, webhooks and analytics over HTTP."""
