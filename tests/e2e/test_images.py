"""Uploads and listing images through Envoy: presigned upload, attach, download, isolation.

The client talks to the API through the gateway and sends the bytes straight to object
storage with the presigned URL it got, as a browser or a merchant's script would.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from hygoshop_platform.blobs import BlobSettings, make_client
from tests.e2e.conftest import BROWSER_ORIGIN
from tests.e2e.test_rest_api import Tenant, _new_tenant, bearer, create

pytestmark = pytest.mark.e2e
IMAGE = "UPLOAD_PURPOSE_LISTING_IMAGE"
IMPORT = "UPLOAD_PURPOSE_IMPORT_FILE"
MB = 1024 * 1024


def _png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = _png()
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"


@pytest.fixture(scope="module")
def tenant_a(http: httpx.Client, admin_key: str) -> Tenant:
    return _new_tenant(http, admin_key, "Images A")


@pytest.fixture(scope="module")
def tenant_b(http: httpx.Client, admin_key: str) -> Tenant:
    return _new_tenant(http, admin_key, "Images B")


def request_upload(
    http: httpx.Client,
    tenant: Tenant,
    size: int,
    content_type: str = "image/png",
    *,
    purpose: str = IMAGE,
    file_name: str = "photo.png",
) -> httpx.Response:
    return http.post(
        "/v1/uploads",
        json={
            "purpose": purpose,
            "contentType": content_type,
            "sizeBytes": str(size),
            "fileName": file_name,
        },
        headers=bearer(tenant.key),
    )


def upload(
    http: httpx.Client, tenant: Tenant, data: bytes, content_type: str = "image/png", **kw: Any
) -> dict[str, Any]:
    """Ask for an upload URL through the gateway, then send the bytes to storage with it."""
    reply = request_upload(http, tenant, len(data), content_type, **kw)
    assert reply.status_code == 200, reply.text
    ticket = dict(reply.json())
    sent = httpx.put(ticket["url"], content=data, headers=ticket["headers"])
    assert sent.status_code == 200, sent.text
    return ticket


def attach(
    http: httpx.Client, tenant: Tenant, listing_id: str, key: str, alt: str = ""
) -> httpx.Response:
    return http.post(
        f"/v1/listings/{listing_id}:attachImage",
        json={"key": key, "altText": alt},
        headers=bearer(tenant.key),
    )


def violations(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 400, reply.text
    details = reply.json()["details"]
    bad = next(d for d in details if d["@type"].endswith("BadRequest"))
    return {v["field"]: v["description"] for v in bad["fieldViolations"]}


def test_an_uploaded_image_is_attached_and_served(
    http: httpx.Client, tenant_a: Tenant, stack_s3: BlobSettings
) -> None:
    listing_id = create(http, tenant_a)["listingId"]
    ticket = upload(http, tenant_a, PNG, file_name="Front view.png")
    assert ticket["key"].startswith("uploads/images/")
    assert ticket["key"].endswith("/Front_view.png")
    assert (ticket["method"], ticket["contentType"], ticket["sizeBytes"]) == (
        "PUT",
        "image/png",
        str(len(PNG)),
    )
    assert ticket["headers"]["Content-Type"] == "image/png"
    # The URL lives minutes; an upload nothing takes is deleted a day after it was signed.
    # A dashboard page may send it from the browser (the catalog set the bucket's CORS
    # rules at start); another site's page may not.
    for origin, allowed in ((BROWSER_ORIGIN, True), ("https://evil.example", False)):
        asked = httpx.options(
            ticket["url"],
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert (asked.headers.get("access-control-allow-origin") == origin) is allowed, origin
    url_expiry = datetime.fromisoformat(ticket["expireTime"])
    deleted = datetime.fromisoformat(ticket["deleteTime"])
    assert url_expiry < deleted
    assert timedelta(hours=23) < deleted - datetime.now(UTC) <= timedelta(days=1)

    attached = attach(http, tenant_a, listing_id, ticket["key"], alt="Front view")
    assert attached.status_code == 200, attached.text
    (image,) = attached.json()["images"]
    assert image["key"].startswith(f"listings/{listing_id}/images/")
    assert image["key"].endswith(".png")
    assert (image["altText"], image["contentType"], image["sizeBytes"]) == (
        "Front view",
        "image/png",
        str(len(PNG)),
    )

    got = http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.key)).json()
    url = got["images"][0]["url"]
    download = httpx.get(url)
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    listed = http.get("/v1/listings", headers=bearer(tenant_a.key)).json()["listings"]
    assert next(item for item in listed if item["listingId"] == listing_id)["images"][0]["url"]

    # The upload was copied into the listing's storage and is gone: a second PUT to the old
    # upload URL can no longer change what the listing shows.
    storage = make_client(stack_s3)
    with pytest.raises(ClientError):
        storage.head_object(
            Bucket=stack_s3.bucket, Key=f"tenants/{tenant_a.tenant_id}/{ticket['key']}"
        )
    assert httpx.put(ticket["url"], content=b"x" * len(PNG), headers=ticket["headers"]).is_success
    assert httpx.get(url).content == PNG

    # A retried attach (the client missed the first answer) changes nothing.
    again = attach(http, tenant_a, listing_id, ticket["key"], alt="Front view")
    assert again.status_code == 200, again.text
    assert [i["key"] for i in again.json()["images"]] == [image["key"]]


def test_upload_requests_outside_the_limits_are_refused_before_signing(
    http: httpx.Client, tenant_a: Tenant
) -> None:
    too_big = request_upload(http, tenant_a, 10 * MB + 1)
    assert "size_bytes" in violations(too_big)
    assert "url" not in too_big.json()
    assert "content_type" in violations(request_upload(http, tenant_a, 100, "image/svg+xml"))
    assert "content_type" in violations(request_upload(http, tenant_a, 100, "text/csv"))
    assert "purpose" in violations(
        request_upload(http, tenant_a, 100, purpose="UPLOAD_PURPOSE_UNSPECIFIED")
    )
    bad = violations(request_upload(http, tenant_a, 0, "not a type", file_name="a\nb"))
    assert set(bad) == {"size_bytes", "content_type", "file_name"}

    big_import = request_upload(
        http, tenant_a, 50 * MB, "text/csv", purpose=IMPORT, file_name="rows.csv"
    )
    assert big_import.status_code == 200, big_import.text
    assert big_import.json()["key"].startswith("uploads/imports/")
    assert "size_bytes" in violations(
        request_upload(
            http, tenant_a, 50 * MB + 1, "text/csv", purpose=IMPORT, file_name="rows.csv"
        )
    )
    assert "content_type" in violations(
        request_upload(http, tenant_a, 100, "image/png", purpose=IMPORT, file_name="rows.csv")
    )
    read_only = http.post(
        "/v1/uploads",
        json={"purpose": IMAGE, "contentType": "image/png", "sizeBytes": "100"},
        headers=bearer(tenant_a.read_key),
    )
    assert read_only.status_code == 403

    # The declared size and type are signed: storage refuses anything else.
    ticket = request_upload(http, tenant_a, 100).json()
    png_type = {"Content-Type": "image/png"}
    bigger = httpx.put(ticket["url"], content=b"\x89PNG" * 26, headers=png_type)
    assert bigger.status_code == 403
    other_type = httpx.put(ticket["url"], content=b"x" * 100, headers={"Content-Type": "text/html"})
    assert other_type.status_code == 403


def test_fake_and_mislabelled_images_are_refused(http: httpx.Client, tenant_a: Tenant) -> None:
    listing_id = create(http, tenant_a)["listingId"]
    fake = upload(http, tenant_a, b"<html>not an image at all</html>", "image/png")
    refused = violations(attach(http, tenant_a, listing_id, fake["key"]))
    assert refused == {"key": "is not a JPEG, PNG, WebP or GIF image"}

    mislabelled = upload(http, tenant_a, PNG, "image/jpeg", file_name="photo.jpg")
    assert violations(attach(http, tenant_a, listing_id, mislabelled["key"])) == {
        "key": "content is image/png but it was uploaded as image/jpeg"
    }
    csv = upload(http, tenant_a, b"sku,title\n", "text/csv", purpose=IMPORT, file_name="a.csv")
    assert violations(attach(http, tenant_a, listing_id, csv["key"])) == {
        "key": "was uploaded as text/csv, not as an image"
    }
    for traversal in ("../escape.png", "/etc/passwd", "uploads//x.png"):
        assert "key" in violations(attach(http, tenant_a, listing_id, traversal))
    assert "alt_text" in violations(attach(http, tenant_a, listing_id, fake["key"], "x" * 501))

    listing = http.get(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.key)).json()
    assert listing["images"] == []
    # A refused image was not consumed: the upload can still be fixed and attached.
    fixed = upload(http, tenant_a, PNG, "image/png")
    assert attach(http, tenant_a, listing_id, fixed["key"]).status_code == 200


def test_another_tenants_upload_answers_like_a_missing_one(
    http: httpx.Client, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    a_listing = create(http, tenant_a)["listingId"]
    b_listing = create(http, tenant_b)["listingId"]
    a_upload = upload(http, tenant_a, PNG)

    answers = [
        attach(http, tenant_b, b_listing, key)
        for key in (
            a_upload["key"],
            f"tenants/{tenant_a.tenant_id}/{a_upload['key']}",
            f"uploads/images/{uuid.uuid4().hex}/photo.png",
        )
    ]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert answers[0].json() == answers[1].json() == answers[2].json()

    # B can neither reach A's listing nor its images; A's upload is untouched by B's tries.
    b_upload = upload(http, tenant_b, PNG)
    assert attach(http, tenant_b, a_listing, b_upload["key"]).status_code == 404
    assert http.get(f"/v1/listings/{a_listing}", headers=bearer(tenant_b.key)).status_code == 404
    assert attach(http, tenant_a, a_listing, a_upload["key"]).status_code == 200


def test_updates_rearrange_attached_images_and_removed_files_go_away(
    http: httpx.Client, tenant_a: Tenant
) -> None:
    listing_id = create(http, tenant_a)["listingId"]
    attach(http, tenant_a, listing_id, upload(http, tenant_a, PNG)["key"], "front")
    gif = upload(http, tenant_a, GIF, "image/gif", file_name="back.gif")
    both = attach(http, tenant_a, listing_id, gif["key"], "back").json()["images"]
    assert [i["contentType"] for i in both] == ["image/png", "image/gif"]

    swapped = http.patch(
        f"/v1/listings/{listing_id}",
        params={"updateMask": "images"},
        json={"images": [{"key": both[1]["key"], "altText": "Back"}, {"key": both[0]["key"]}]},
        headers=bearer(tenant_a.key),
    )
    assert swapped.status_code == 200, swapped.text
    assert [(i["key"], i["altText"], i["contentType"]) for i in swapped.json()["images"]] == [
        (both[1]["key"], "Back", "image/gif"),
        (both[0]["key"], "", "image/png"),
    ]

    smuggled = http.patch(
        f"/v1/listings/{listing_id}",
        params={"updateMask": "images"},
        json={"images": [{"key": both[0]["key"]}, {"key": "uploads/images/x/evil.png"}]},
        headers=bearer(tenant_a.key),
    )
    assert "listing.images[1].key" in violations(smuggled)
    created_with_images = http.post(
        "/v1/listings",
        json={
            "title": "x",
            "variants": [{"sku": f"S-{uuid.uuid4().hex[:8]}", "price": {"currencyCode": "USD"}}],
            "images": [{"key": both[0]["key"]}],
        },
        headers=bearer(tenant_a.key),
    )
    assert "listing.images" in violations(created_with_images)

    front_url = swapped.json()["images"][1]["url"]
    assert httpx.get(front_url).status_code == 200
    kept = http.patch(
        f"/v1/listings/{listing_id}",
        params={"updateMask": "images"},
        json={"images": [{"key": both[1]["key"], "altText": "Back"}]},
        headers=bearer(tenant_a.key),
    )
    assert kept.status_code == 200, kept.text
    assert httpx.get(front_url).status_code == 404  # the removed image's file is gone
    back_url = kept.json()["images"][0]["url"]
    assert httpx.get(back_url).status_code == 200

    assert http.delete(f"/v1/listings/{listing_id}", headers=bearer(tenant_a.key)).is_success
    assert httpx.get(back_url).status_code == 404  # and a deleted listing's files too
