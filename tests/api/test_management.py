"""Tests of tenant, API key, tracking URL and webhook management over a real `tracker api` server."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.api.conftest import ApiServer, assert_error, create_tenant


def test_create_tenant_returns_secrets_once(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "mgmtone", plan="pro")
    created = keys.created

    assert created["tenant"]["key_prefix"] == "mgmtone"
    assert created["tenant"]["plan"] == "pro"
    assert len(bytes.fromhex(created["hmac_secret_hex"])) == 32
    assert len(bytes.fromhex(created["aes_key_hex"])) == 32
    assert created["key"]["scope"] == "write"
    assert created["api_key"].startswith("trk_")
    with api_server.client() as admin:
        fetched = admin.get("/api/tenants/mgmtone").json()
    assert "hmac_secret_hex" not in fetched
    assert created["hmac_secret_hex"] not in str(fetched)


def test_create_tenant_generates_prefix(api_server: ApiServer) -> None:
    with api_server.client() as admin:
        answer = admin.post("/api/tenants", json={})

    assert answer.status_code == 201
    assert len(answer.json()["tenant"]["key_prefix"]) == 8


def test_duplicate_tenant_is_conflict(api_server: ApiServer) -> None:
    create_tenant(api_server, "mgmtdup")
    with api_server.client() as admin:
        answer = admin.post("/api/tenants", json={"key_prefix": "mgmtdup"})

    assert_error(answer, 409, "conflict")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key_prefix": "Has Space"}, "key_prefix"),
        ({"key_prefix": "x" * 33}, "key_prefix"),
        ({"key_prefix": 7}, "key_prefix"),
        ({"plan": "gold"}, "plan"),
        ({"name": "n" * 201}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_create_tenant_rejects_bad_fields(api_server: ApiServer, body: dict, field: str) -> None:
    with api_server.client() as admin:
        answer = admin.post("/api/tenants", json=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
def test_malformed_body_is_rejected(api_server: ApiServer, content: bytes, code: str) -> None:
    with api_server.client() as admin:
        answer = admin.post(
            "/api/tenants", content=content, headers={"content-type": "application/json"}
        )

    assert_error(answer, 400, code, "body")


def test_oversized_body_is_rejected(api_server: ApiServer) -> None:
    with api_server.client() as admin:
        answer = admin.post("/api/tenants", json={"name": "x" * 70_000})

    assert_error(answer, 413, "payload_too_large", "body")


def test_update_tenant_plan_and_status(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "mgmtplan")
    with api_server.client() as admin:
        changed = admin.patch("/api/tenants/mgmtplan", json={"plan": "pro", "status": "disabled"})
        listed = {
            tenant["key_prefix"]: tenant for tenant in admin.get("/api/tenants").json()["tenants"]
        }

    assert changed.status_code == 200, changed.text
    assert changed.json()["plan"] == "pro"
    assert listed["mgmtplan"]["status"] == "disabled"
    # A disabled tenant's keys stop working.
    with api_server.client(keys.read_key) as reader:
        assert_error(reader.get("/api/keys"), 401, "unauthorized")

    with api_server.client() as admin:
        assert admin.patch("/api/tenants/mgmtplan", json={"status": "active"}).status_code == 200
    with api_server.client(keys.read_key) as reader:
        assert reader.get("/api/keys").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "plan"),
        ({"plan": "gold"}, "plan"),
        ({"status": "gone"}, "status"),
        ({"name": "x"}, "name"),
    ],
)
def test_update_tenant_rejects_bad_fields(api_server: ApiServer, body: dict, field: str) -> None:
    create_tenant(api_server, "mgmtbad") if not _exists(api_server, "mgmtbad") else None
    with api_server.client() as admin:
        answer = admin.patch("/api/tenants/mgmtbad", json=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


def _exists(server: ApiServer, key_prefix: str) -> bool:
    with server.client() as admin:
        return admin.get(f"/api/tenants/{key_prefix}").status_code == 200


def test_unknown_tenant_is_not_found(api_server: ApiServer) -> None:
    with api_server.client() as admin:
        assert_error(admin.get("/api/tenants/nosuchtenant"), 404, "not_found")
        assert_error(
            admin.patch("/api/tenants/nosuchtenant", json={"plan": "pro"}), 404, "not_found"
        )
        assert_error(admin.post("/api/tenants/nosuchtenant/keys", json={}), 404, "not_found")
        assert_error(admin.get("/api/tenants/%2e%2e%2fadmin"), 404, "not_found")


def test_rotate_and_retire_secret(api_server: ApiServer) -> None:
    create_tenant(api_server, "mgmtrot")
    with api_server.client() as admin:
        rotated = admin.post("/api/tenants/mgmtrot/secrets", json={"kind": "hmac"})
        tenant = admin.get("/api/tenants/mgmtrot").json()
        retired = admin.delete("/api/tenants/mgmtrot/secrets/hmac/0")
        last = admin.delete("/api/tenants/mgmtrot/secrets/hmac/1")
        bad_kind = admin.post("/api/tenants/mgmtrot/secrets", json={"kind": "rsa"})
        bad_id = admin.delete("/api/tenants/mgmtrot/secrets/hmac/%C2%B2")

    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["key_id"] == 1
    assert len(bytes.fromhex(rotated.json()["secret_hex"])) == 32
    assert tenant["hmac_key_ids"] == [0, 1]
    assert retired.json()["hmac_key_ids"] == [1]
    assert_error(last, 409, "conflict")
    assert_error(bad_kind, 400, "invalid_field", "kind")
    assert_error(bad_id, 400, "invalid_field", "secret_id")


def test_tenant_key_lifecycle(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "mgmtkeys")
    with api_server.client(keys.write_key) as writer:
        created = writer.post("/api/keys", json={"scope": "read", "name": "dashboard"})
        new_key = created.json()["api_key"]
        listed = writer.get("/api/keys").json()["keys"]
        revoked = writer.delete(f"/api/keys/{created.json()['key']['key_id']}")

    assert created.status_code == 201, created.text
    assert {key["name"] for key in listed} == {"first key", "reader", "dashboard"}
    assert all("api_key" not in key for key in listed)
    assert new_key not in str(listed)
    assert revoked.json()["revoked_at"] is not None
    with api_server.client(new_key) as revoked_client:
        assert_error(revoked_client.get("/api/keys"), 401, "unauthorized", "authorization")


def test_tenant_cannot_create_admin_key(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "mgmtesc")
    with api_server.client(keys.write_key) as writer:
        answer = writer.post("/api/keys", json={"scope": "admin"})

    assert_error(answer, 400, "invalid_field", "scope")


def test_tenant_cannot_revoke_other_tenants_key(api_server: ApiServer) -> None:
    own = create_tenant(api_server, "mgmtowna")
    other = create_tenant(api_server, "mgmtownb")
    other_key_id = other.created["key"]["key_id"]
    with api_server.client(own.write_key) as writer:
        answer = writer.delete(f"/api/keys/{other_key_id}")

    assert_error(answer, 404, "not_found")
    with api_server.client(other.write_key) as still_valid:
        assert still_valid.get("/api/keys").status_code == 200


def test_tracking_url_lifecycle(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "mgmturls")
    with api_server.client(keys.write_key) as writer:
        created = writer.post(
            "/api/tracking-urls",
            json={
                "destination": "https://shop.example/a",
                "name": "spring",
                "params": {"campaign": "c1"},
            },
        )
        tu_id = created.json()["tu_id"]
        rotated = writer.patch(
            f"/api/tracking-urls/{tu_id}", json={"destination": "https://shop.example/b"}
        )
        disabled = writer.patch(f"/api/tracking-urls/{tu_id}", json={"status": "disabled"})
        fetched = writer.get(f"/api/tracking-urls/{tu_id}")
        listed = writer.get("/api/tracking-urls").json()["tracking_urls"]

    assert created.status_code == 201, created.text
    assert created.json()["params"] == {"campaign": "c1"}
    assert rotated.json()["destination"] == "https://shop.example/b"
    assert disabled.json()["status"] == "disabled"
    assert fetched.json()["status"] == "disabled"
    assert [url["tu_id"] for url in listed] == [tu_id]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "destination"),
        ({"destination": "javascript:alert(1)"}, "destination"),
        ({"destination": "ftp://files.example/x"}, "destination"),
        ({"destination": "https://shop.example/" + "a" * 5000}, "destination"),
        ({"destination": "https://shop.example/", "params": ["a"]}, "params"),
        ({"destination": "https://shop.example/", "params": {"k": 1}}, "params"),
        ({"destination": "https://shop.example/", "name": "n" * 201}, "name"),
        ({"destination": "https://shop.example/", "key_prefix": 5}, "key_prefix"),
    ],
)
def test_tracking_url_rejects_bad_fields(api_server: ApiServer, body: dict, field: str) -> None:
    keys = (
        create_tenant(api_server, "mgmturlbad") if not _exists(api_server, "mgmturlbad") else None
    )
    write_key = keys.write_key if keys else _key_of(api_server, "mgmturlbad")
    with api_server.client(write_key) as writer:
        answer = writer.post("/api/tracking-urls", json=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


def _key_of(server: ApiServer, key_prefix: str) -> str:
    with server.client() as admin:
        return admin.post(f"/api/tenants/{key_prefix}/keys", json={"scope": "write"}).json()[
            "api_key"
        ]


def test_tracking_urls_are_tenant_scoped(api_server: ApiServer) -> None:
    owner = create_tenant(api_server, "mgmtura")
    stranger = create_tenant(api_server, "mgmturb")
    with api_server.client(owner.write_key) as writer:
        tu_id = writer.post(
            "/api/tracking-urls", json={"destination": "https://a.example/"}
        ).json()["tu_id"]

    with api_server.client(stranger.write_key) as other:
        assert_error(other.get(f"/api/tracking-urls/{tu_id}"), 404, "not_found")
        assert_error(
            other.patch(
                f"/api/tracking-urls/{tu_id}", json={"destination": "https://evil.example/"}
            ),
            404,
            "not_found",
        )
        assert other.get("/api/tracking-urls").json()["tracking_urls"] == []
        spoofed = other.post(
            "/api/tracking-urls",
            json={"destination": "https://b.example/", "key_prefix": "mgmtura"},
        )
    assert_error(spoofed, 403, "forbidden", "key_prefix")
    with api_server.client(owner.read_key) as reader:
        assert (
            reader.get(f"/api/tracking-urls/{tu_id}").json()["destination"] == "https://a.example/"
        )


def test_admin_creates_tracking_url_for_tenant(api_server: ApiServer) -> None:
    create_tenant(api_server, "mgmtadmurl")
    with api_server.client() as admin:
        created = admin.post(
            "/api/tracking-urls",
            json={"destination": "https://a.example/", "key_prefix": "mgmtadmurl"},
        )
        missing = admin.post("/api/tracking-urls", json={"destination": "https://a.example/"})

    assert created.status_code == 201, created.text
    assert created.json()["key_prefix"] == "mgmtadmurl"
    assert_error(missing, 400, "missing_field", "key_prefix")


def test_webhook_lifecycle(api_server: ApiServer) -> None:
    keys = create_tenant(api_server, "mgmthooks")
    with api_server.client(keys.write_key) as writer:
        created = writer.post(
            "/api/webhooks",
            json={
                "url": "https://hooks.example/in",
                "event_types": ["postback"],
                "param_filters": {"a": "1"},
            },
        )
        endpoint_id = created.json()["endpoint"]["endpoint_id"]
        listed = writer.get("/api/webhooks").json()["endpoints"]
        fetched = writer.get(f"/api/webhooks/{endpoint_id}").json()
        deliveries = writer.get(
            f"/api/webhooks/{endpoint_id}/deliveries", params={"status": "dead", "limit": 5}
        )
        dead = writer.get("/api/webhook-dead-letters", params={"endpoint_id": endpoint_id})
        replay = writer.post("/api/webhook-deliveries/dlv_nosuch/replay")
        deleted = writer.delete(f"/api/webhooks/{endpoint_id}")
        gone = writer.get(f"/api/webhooks/{endpoint_id}")

    assert created.status_code == 201, created.text
    assert created.json()["secret"].startswith("whsec_")
    assert [endpoint["endpoint_id"] for endpoint in listed] == [endpoint_id]
    assert "secret" not in fetched
    assert fetched["event_types"] == ["postback"]
    assert deliveries.json() == {"deliveries": []}
    assert dead.json() == {"deliveries": []}
    assert_error(replay, 404, "not_found")
    assert deleted.status_code == 200
    assert_error(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "http://127.0.0.1:9/x"}, "url"),
        ({"url": "http://169.254.169.254/latest"}, "url"),
        ({"url": "https://user:pw@hooks.example/"}, "url"),
        ({"url": "https://hooks.example/", "event_types": "click"}, "event_types"),
        ({"url": "https://hooks.example/", "event_types": ["bad type!"]}, "event_types"),
        ({"url": "https://hooks.example/", "param_filters": {"a": 1}}, "param_filters"),
        ({"url": "https://hooks.example/", "description": 5}, "description"),
    ],
)
def test_webhook_rejects_bad_fields(api_server: ApiServer, body: dict, field: str) -> None:
    keys = (
        create_tenant(api_server, "mgmthookbad") if not _exists(api_server, "mgmthookbad") else None
    )
    write_key = keys.write_key if keys else _key_of(api_server, "mgmthookbad")
    with api_server.client(write_key) as writer:
        answer = writer.post("/api/webhooks", json=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == field


def test_webhooks_are_tenant_scoped(api_server: ApiServer) -> None:
    owner = create_tenant(api_server, "mgmthka")
    stranger = create_tenant(api_server, "mgmthkb")
    with api_server.client(owner.write_key) as writer:
        endpoint_id = writer.post("/api/webhooks", json={"url": "https://hooks.example/a"}).json()[
            "endpoint"
        ]["endpoint_id"]

    with api_server.client(stranger.write_key) as other:
        assert_error(other.get(f"/api/webhooks/{endpoint_id}"), 404, "not_found")
        assert_error(other.get(f"/api/webhooks/{endpoint_id}/deliveries"), 404, "not_found")
        assert_error(other.delete(f"/api/webhooks/{endpoint_id}"), 404, "not_found")
        assert other.get("/api/webhooks").json()["endpoints"] == []
    with api_server.client(owner.read_key) as reader:
        assert reader.get(f"/api/webhooks/{endpoint_id}").status_code == 200


def test_concurrent_tenant_creation_has_one_winner(api_server: ApiServer) -> None:
    def attempt(_: int) -> int:
        with api_server.client() as admin:
            return admin.post("/api/tenants", json={"key_prefix": "mgmtrace"}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(attempt, range(8)))

    assert statuses.count(201) == 1
    assert statuses.count(409) == 7


def _insert_delivery(server: ApiServer, endpoint_id: str, key_prefix: str, status: str) -> str:
    """Write one delivery row as the webhook consumer would, and return its id."""
    import sqlite3
    import time
    import uuid

    delivery_id = f"dlv_{uuid.uuid4().hex}"
    now = int(time.time())
    with sqlite3.connect(server.data_dir / "registry.db") as connection:
        connection.execute(
            "INSERT INTO webhook_deliveries (delivery_id, endpoint_id, key_prefix, event_id, event, status,"
            " attempts, last_error, created_at, updated_at) VALUES (?, ?, ?, ?, '{}', ?, 8, 'HTTP 500', ?, ?)",
            (delivery_id, endpoint_id, key_prefix, str(uuid.uuid4()), status, now, now),
        )
    return delivery_id


def test_dead_letter_replay(api_server: ApiServer) -> None:
    owner = create_tenant(api_server, "mgmtreplay")
    stranger = create_tenant(api_server, "mgmtreplayx")
    with api_server.client(owner.write_key) as writer:
        endpoint_id = writer.post("/api/webhooks", json={"url": "https://hooks.example/r"}).json()[
            "endpoint"
        ]["endpoint_id"]
    dead_id = _insert_delivery(api_server, endpoint_id, "mgmtreplay", "dead")
    pending_id = _insert_delivery(api_server, endpoint_id, "mgmtreplay", "pending")

    with api_server.client(stranger.write_key) as other:
        assert other.get("/api/webhook-dead-letters").json()["deliveries"] == []
        assert_error(other.post(f"/api/webhook-deliveries/{dead_id}/replay"), 404, "not_found")
    with api_server.client(owner.write_key) as writer:
        dead = writer.get("/api/webhook-dead-letters").json()["deliveries"]
        replayed = writer.post(f"/api/webhook-deliveries/{dead_id}/replay")
        in_flight = writer.post(f"/api/webhook-deliveries/{pending_id}/replay")
        pending = writer.get(
            f"/api/webhooks/{endpoint_id}/deliveries", params={"status": "pending"}
        ).json()

    assert [delivery["delivery_id"] for delivery in dead] == [dead_id]
    assert dead[0]["last_error"] == "HTTP 500"
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "pending"
    assert replayed.json()["attempts"] == 0
    assert_error(in_flight, 409, "conflict")
    assert {delivery["delivery_id"] for delivery in pending["deliveries"]} == {dead_id, pending_id}
