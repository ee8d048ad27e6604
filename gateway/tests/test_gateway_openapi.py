"""The OpenAPI document: valid 3.1, complete, and true to the proto3 JSON mapping."""

from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from gateway.descriptors import annotated_methods, load_descriptor_set
from gateway.openapi import build_openapi, render_openapi
from gateway.render import DEFAULT_DESCRIPTOR, DEFAULT_OPENAPI

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def doc() -> Doc:
    return build_openapi(load_descriptor_set(DEFAULT_DESCRIPTOR))


def _schema(doc: Doc, name: str) -> Doc:
    schema: Doc = doc["components"]["schemas"][name]
    return schema


def _operations(doc: Doc) -> dict[str, tuple[str, str, Doc]]:
    return {
        op["operationId"]: (verb, path, op)
        for path, item in doc["paths"].items()
        for verb, op in item.items()
    }


def test_committed_document_is_what_the_generator_writes() -> None:
    rendered = render_openapi(load_descriptor_set(DEFAULT_DESCRIPTOR))
    assert DEFAULT_OPENAPI.read_text(encoding="utf-8") == rendered, "run `make protos`"
    assert rendered.endswith("}\n")
    assert rendered == render_openapi(load_descriptor_set(DEFAULT_DESCRIPTOR))


def test_document_is_valid_openapi_3_1(doc: Doc) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_http_annotated_rpc_is_an_operation(doc: Doc) -> None:
    ops = _operations(doc)
    methods = annotated_methods(load_descriptor_set(DEFAULT_DESCRIPTOR))
    expected = {f"{m.service.rsplit('.', 1)[1]}_{m.method.name}" for m in methods}
    assert expected <= ops.keys()
    # One operation per annotated RPC, none more (no hard count: services keep adding RPCs).
    assert len(ops) == len(expected)
    assert ops["CatalogService_GetListing"][:2] == ("get", "/v1/listings/{listing_id}")
    assert ops["TenantService_DeleteApiKey"][:2] == (
        "delete",
        "/v1/tenants/{tenant_id}/apiKeys/{key_id}",
    )


def test_listing_schema_follows_the_proto3_json_mapping(doc: Doc) -> None:
    listing = _schema(doc, "hygoshop.catalog.v1.Listing")
    props = listing["properties"]
    assert {"listingId", "createTime", "updateTime", "variants", "attributes"} <= props.keys()
    assert not [name for name in props if "_" in name]
    assert listing["required"] == ["title", "variants"]
    assert props["createTime"] == {"type": "string", "format": "date-time", "readOnly": True}
    assert props["attributes"]["additionalProperties"] == {"type": "string"}
    assert props["status"]["$ref"] == "#/components/schemas/hygoshop.catalog.v1.ListingStatus"
    assert _schema(doc, "hygoshop.catalog.v1.ListingStatus")["enum"][:2] == [
        "LISTING_STATUS_UNSPECIFIED",
        "LISTING_STATUS_DRAFT",
    ]
    assert props["description"]["description"].startswith("Plain text or light markdown")
    variant = _schema(doc, "hygoshop.catalog.v1.Variant")["properties"]
    assert variant["price"]["$ref"] == "#/components/schemas/google.type.Money"
    assert variant["inventoryQuantity"] == {
        "type": "integer",
        "format": "int32",
        "description": "Units on hand, not negative.",
    }


def test_money_is_its_message_with_int64_units_as_string(doc: Doc) -> None:
    money = _schema(doc, "google.type.Money")["properties"]
    assert set(money) == {"currencyCode", "units", "nanos"}
    assert {k: v for k, v in money["units"].items() if k != "description"} == {
        "type": "string",
        "format": "int64",
    }
    assert money["nanos"]["type"] == "integer"


def test_parameters_and_bodies_follow_the_http_rules(doc: Doc) -> None:
    ops = _operations(doc)
    _, path, update = ops["CatalogService_UpdateListing"]
    assert path == "/v1/listings/{listing_id}"  # from {listing.listing_id}
    names = [(p["name"], p["in"]) for p in update["parameters"]]
    assert names == [("listing_id", "path"), ("updateMask", "query")]
    body = update["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"] == "#/components/schemas/hygoshop.catalog.v1.Listing"
    # body: "listing" leaves request_id to the query string.
    create = ops["CatalogService_CreateListing"][2]
    assert [p["name"] for p in create["parameters"]] == ["requestId"]
    listing = {p["name"]: p for p in ops["CatalogService_ListListings"][2]["parameters"]}
    assert list(listing) == ["pageSize", "pageToken", "status", "updatedAfter"]
    assert listing["updatedAfter"]["schema"]["format"] == "date-time"
    assert "requestBody" not in ops["CatalogService_GetListing"][2]
    empty = ops["CatalogService_DeleteListing"][2]["responses"]["200"]
    assert empty["content"]["application/json"]["schema"] == {"type": "object"}


def test_bearer_auth_and_status_errors_apply_everywhere(doc: Doc) -> None:
    assert doc["security"] == [{"bearerAuth": []}]
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for _, _, op in _operations(doc).values():
        assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}
        assert op["summary"]
        assert op["description"]
    status = _schema(doc, "google.rpc.Status")["properties"]
    assert set(status) == {"code", "message", "details"}
    assert status["details"]["items"]["$ref"] == "#/components/schemas/google.protobuf.Any"
    assert "@type" in _schema(doc, "google.protobuf.Any")["properties"]


DEMO_PROTO = """
syntax = "proto3";
package hygoshop.demo.v1;
import "google/api/annotations.proto";
import "google/api/field_behavior.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";

// Demo things.
service DemoService {
  // Makes a thing.
  rpc MakeThing(MakeThingRequest) returns (Thing) {
    option (google.api.http) = {
      post: "/v1/{parent=shops/*}/things"
      body: "*"
      additional_bindings {put: "/v2/{parent=shops/*}/things" body: "thing"}
    };
  }
  // Claims a thing.
  rpc ClaimThing(ClaimThingRequest) returns (Thing) {
    option (google.api.http) = {post: "/v1/things/{thing_id}:claim" body: "*"};
  }
  // Streams things.
  rpc SearchThings(SearchThingsRequest) returns (stream Thing) {
    option (google.api.http) = {get: "/v1/things:search"};
  }
  rpc Internal(ClaimThingRequest) returns (Thing);
}

message Thing {
  int64 count = 1;
  uint64 big = 2;
  bytes blob = 3;
  google.protobuf.Int64Value maybe = 4;
  google.protobuf.Duration ttl = 5;
  google.protobuf.Struct extra = 6;
  map<string, Inner> inners = 7;
  double ratio = 8;
  string secret = 9 [(google.api.field_behavior) = INPUT_ONLY];
  optional string nick_name = 10;
  Inner.Kind kind = 11;
}
message Inner {
  enum Kind { KIND_UNSPECIFIED = 0; KIND_BIG = 1; }
  Kind kind = 1;
}
message MakeThingRequest { string parent = 1; Thing thing = 2; string request_id = 3; }
message ClaimThingRequest { string thing_id = 1; string operator_note = 2; }
message Filter { int64 min_count = 1; Inner.Kind kind = 2; }
message SearchThingsRequest {
  Filter filter = 1;
  repeated string tags = 2;
  map<string, string> labels = 3;
  repeated Inner inners = 4;
}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Doc:
    """A document from a proto using what hygoshop's protos do not use yet."""
    root = tmp_path_factory.mktemp("demo")
    (root / "demo.proto").write_text(textwrap.dedent(DEMO_PROTO))
    googleapis = Path(str(importlib.resources.files("google.api"))).parent.parent
    out = root / "demo.binpb"
    subprocess.run(
        [
            *(sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"-I{googleapis}"),
            *("--include_imports", "--include_source_info", f"--descriptor_set_out={out}"),
            "demo.proto",
        ],
        check=True,
        cwd=root,
    )
    document = build_openapi(load_descriptor_set(out))
    validate(document)
    return document


def test_demo_bindings_templates_and_streaming(demo: Doc) -> None:
    ops = _operations(demo)
    assert set(ops) == {
        "DemoService_MakeThing",
        "DemoService_MakeThing_1",
        "DemoService_ClaimThing",
        "DemoService_SearchThings",
    }
    verb, path, make = ops["DemoService_MakeThing"]
    assert (verb, path) == ("post", "/v1/{parent}/things")
    assert "shops/*" in make["parameters"][0]["description"]
    body = make["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"thing", "requestId"}  # body "*" minus the path
    verb, path, put = ops["DemoService_MakeThing_1"]
    assert (verb, path) == ("put", "/v2/{parent}/things")
    assert [p["name"] for p in put["parameters"]] == ["parent", "requestId"]
    assert ops["DemoService_ClaimThing"][1] == "/v1/things/{thing_id}:claim"
    search = ops["DemoService_SearchThings"][2]
    query = {p["name"]: p for p in search["parameters"]}
    assert list(query) == ["filter.minCount", "filter.kind", "tags"]
    assert query["filter.minCount"]["schema"] == {"type": "string", "format": "int64"}
    assert query["tags"]["schema"] == {"type": "array", "items": {"type": "string"}}
    ok = search["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"type": "array", "items": {"$ref": "#/components/schemas/hygoshop.demo.v1.Thing"}}


def test_demo_scalars_and_well_known_types(demo: Doc) -> None:
    thing = demo["components"]["schemas"]["hygoshop.demo.v1.Thing"]["properties"]
    assert thing["count"] == {"type": "string", "format": "int64"}
    assert thing["big"] == {"type": "string", "format": "uint64"}
    assert thing["blob"]["contentEncoding"] == "base64"
    assert thing["maybe"] == {"type": "string", "format": "int64"}
    assert thing["ttl"]["type"] == "string"
    assert thing["extra"] == {"type": "object", "additionalProperties": True}
    assert thing["inners"] == {
        "type": "object",
        "additionalProperties": {"$ref": "#/components/schemas/hygoshop.demo.v1.Inner"},
    }
    assert thing["ratio"] == {"type": "number", "format": "double"}
    assert thing["secret"]["writeOnly"] is True
    assert "nickName" in thing
    kind = demo["components"]["schemas"]["hygoshop.demo.v1.Inner.Kind"]
    assert kind == {"type": "string", "enum": ["KIND_UNSPECIFIED", "KIND_BIG"]}
    assert json.dumps(demo, sort_keys=True)  # JSON-serialisable as is
