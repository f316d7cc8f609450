"""Tenant and health tools report what the API and the services report themselves."""

from __future__ import annotations

import httpx

from tests.mcp.conftest import result_json


def test_tenant_matches_api(mcp_stdio, platform):
    tenant = result_json(mcp_stdio.call("get_tenant"))
    admin = {"Authorization": f"Bearer {platform.demo['admin_api_key']}"}
    from_api = httpx.get(f"{platform.api_url}/api/tenants/demo", headers=admin).json()

    assert tenant["key_prefix"] == "demo"
    assert tenant["scope"] == "write"
    assert tenant["plan"] == from_api["plan"]
    assert tenant["status"] == from_api["status"]
    assert tenant["default_tier"] == tenant["tier_by_plan"][from_api["plan"]]


def test_api_keys_match_api(mcp_stdio, platform):
    keys = result_json(mcp_stdio.call("list_api_keys"))

    assert keys["keys"] == platform.api("GET", "/api/keys").json()["keys"]
    assert platform.api_key not in str(keys)


def test_health_covers_every_component(mcp_stdio, platform):
    health = result_json(mcp_stdio.call("get_platform_health"))

    assert health["ok"] is True
    assert set(health["components"]) == {"ingest", "api", "sse"}
    api = httpx.get(f"{platform.api_url}/api/health").json()
    assert health["components"]["api"]["body"]["status"] == api["status"]
    assert health["components"]["ingest"]["body"]["status"] == "ok"
    assert health["components"]["sse"]["http_status"] == 200
