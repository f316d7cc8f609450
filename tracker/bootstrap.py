"""First-run set-up for `tracker up`: a demo tenant, its keys and ready-to-click URLs."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from tracker import _core

__all__ = ["DemoTenant", "ensure_demo_tenant", "render_welcome"]

DEMO_PREFIX = "demo"
DEMO_DESTINATION = "https://example.com/landing?campaign=launch"
CREDENTIALS_FILE = "demo-tenant.json"


@dataclass(frozen=True)
class DemoTenant:
    """The demo tenant's credentials, written once to `<data dir>/demo-tenant.json`."""

    key_prefix: str
    hmac_secret_hex: str
    aes_key_hex: str
    aes_key_id: int
    api_key: str
    admin_api_key: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ensure_demo_tenant(data_dir: Path, env: Mapping[str, str]) -> DemoTenant | None:
    """Create the demo tenant when the registry has no tenant yet; return it, else None."""
    from tracker.registry.api_keys import create_api_key
    from tracker.registry.db import Registry
    from tracker.registry.tenants import create_tenant, list_tenants

    registry_path = Path(env.get("REGISTRY_PATH") or data_dir / "registry.db")
    registry = Registry(
        registry_path, turso_url=env.get("TURSO_URL"), turso_token=env.get("TURSO_AUTH_TOKEN")
    )
    try:
        if list_tenants(registry):
            return None
        tenant = create_tenant(registry, key_prefix=DEMO_PREFIX, name="Demo tenant", plan="free")
        api_key = create_api_key(registry, key_prefix=tenant.key_prefix, scope="write", name="demo")
        admin_key = create_api_key(registry, key_prefix=None, scope="admin", name="demo admin")
    finally:
        registry.close()

    demo = DemoTenant(
        key_prefix=tenant.key_prefix,
        hmac_secret_hex=tenant.hmac_secret.hex(),
        aes_key_hex=tenant.aes_key.hex(),
        aes_key_id=tenant.aes_key_id,
        api_key=api_key.raw_key,
        admin_api_key=admin_key.raw_key,
    )
    path = data_dir / CREDENTIALS_FILE
    # The file contains secrets, so it is created readable by the owner only.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(demo.as_dict(), handle, indent=2)
    return demo


def example_urls(demo: DemoTenant, *, base_url: str) -> dict[str, str]:
    """Build a signed click, an encrypted click, a postback and an impression URL."""
    secret = bytes.fromhex(demo.hmac_secret_hex)
    sig = _core.sign_click(secret, DEMO_DESTINATION, key_prefix=demo.key_prefix)
    signed = f"{base_url}/t?" + urlencode(
        {"url": DEMO_DESTINATION, "sig": sig, "sub1": "welcome", "click_id": "c-1001"},
        quote_via=quote,
    )

    expires_at = int(time.time()) + 30 * 24 * 3600
    blob = _core.encrypt_destination(
        bytes.fromhex(demo.aes_key_hex),
        demo.aes_key_id,
        DEMO_DESTINATION,
        key_prefix=demo.key_prefix,
        expires_at=expires_at,
    )
    encrypted = f"{base_url}/t?" + urlencode({"d": blob, "sub1": "welcome"}, quote_via=quote)
    postback = f"{base_url}/p?" + urlencode(
        {"key_prefix": demo.key_prefix, "click_id": "c-1001", "amount": "12.50"}
    )
    impression = f"{base_url}/i?" + urlencode({"key_prefix": demo.key_prefix, "placement": "top"})
    return {
        "signed click": signed,
        "encrypted click": encrypted,
        "postback": postback,
        "impression": impression,
    }


def render_welcome(demo: DemoTenant, *, host: str, port: int, api_port: int, sse_port: int) -> str:
    """Format the first-run message with credentials, URLs and curl examples."""
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{port}"
    api_url = f"http://{shown_host}:{api_port}"
    lines = [
        "",
        "Created the demo tenant (credentials saved, owner-only, in demo-tenant.json):",
        f"  key prefix     {demo.key_prefix}",
        f"  HMAC secret    {demo.hmac_secret_hex}",
        f"  AES key        {demo.aes_key_hex} (key id {demo.aes_key_id})",
        f"  API key        {demo.api_key}",
        f"  admin API key  {demo.admin_api_key}",
        "",
        "Try it:",
    ]
    for name, url in example_urls(demo, base_url=base_url).items():
        lines.append(f"  {name:<16} {url}")
    batch = json.dumps(
        [{"event_type": "signup", "params": {"key_prefix": demo.key_prefix, "plan": "trial"}}]
    )
    lines += [
        "",
        f"  curl -X POST {base_url}/batch -H 'Content-Type: application/json' -d '{batch}'",
        f"  curl -H 'Authorization: Bearer {demo.api_key}' '{api_url}/api/events/stats?hours=24&group_by=event_type'",
        f"  curl -N '{f'http://{shown_host}:{sse_port}'}/events/stream?key={demo.api_key}'",
        "",
    ]
    return "\n".join(lines)
