"""Generate the public OpenAPI 3.1 document from the protobuf descriptor set.

Every RPC with a `google.api.http` rule becomes an operation; schemas follow the proto3
JSON mapping that Envoy's gRPC-JSON transcoder speaks (lowerCamel names, 64-bit integers
as strings, enums as their value names, well-known types in their JSON form).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from gateway.descriptors import (
    SERVICE,
    AnnotatedMethod,
    HttpBinding,
    annotated_methods,
    comments_by_path,
    field_behaviors,
    load_descriptor_set,
)

Schema = dict[str, Any]
FDP = descriptor_pb2.FieldDescriptorProto

_SCALARS: dict[int, Schema] = {
    FDP.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FDP.TYPE_FLOAT: {"type": "number", "format": "float"},
    FDP.TYPE_INT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FDP.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    FDP.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    # proto3 JSON writes 64-bit integers as strings: JavaScript numbers lose precision.
    FDP.TYPE_INT64: {"type": "string", "format": "int64"},
    FDP.TYPE_SINT64: {"type": "string", "format": "int64"},
    FDP.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FDP.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FDP.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FDP.TYPE_BOOL: {"type": "boolean"},
    FDP.TYPE_STRING: {"type": "string"},
    FDP.TYPE_BYTES: {"type": "string", "format": "byte", "contentEncoding": "base64"},
}

_WRAPPERS = {
    "DoubleValue": FDP.TYPE_DOUBLE,
    "FloatValue": FDP.TYPE_FLOAT,
    "Int64Value": FDP.TYPE_INT64,
    "UInt64Value": FDP.TYPE_UINT64,
    "Int32Value": FDP.TYPE_INT32,
    "UInt32Value": FDP.TYPE_UINT32,
    "BoolValue": FDP.TYPE_BOOL,
    "StringValue": FDP.TYPE_STRING,
    "BytesValue": FDP.TYPE_BYTES,
}

# Well-known types whose JSON form is not an object with their fields.
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "Seconds with up to 9 fractional digits and an `s` suffix, e.g. `1.5s`.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths in lowerCamelCase, e.g. `title,variants`.",
    },
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {"$ref": "#/components/schemas/google.protobuf.Any"},
    **{f"google.protobuf.{name}": _SCALARS[kind] for name, kind in _WRAPPERS.items()},
}

_ANY: Schema = {
    "type": "object",
    "description": "A message of the type named by `@type`, with that message's fields.",
    "properties": {"@type": {"type": "string", "examples": ["type.googleapis.com/..."]}},
    "required": ["@type"],
    "additionalProperties": True,
}
_STATUS: Schema = {
    "type": "object",
    "description": (
        "An error as google.rpc.Status in JSON. `details` carries typed error details "
        "such as `google.rpc.ErrorInfo` and `google.rpc.BadRequest`."
    ),
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "google.rpc.Code"},
        "message": {"type": "string", "description": "Developer-facing, in English."},
        "details": {"type": "array", "items": {"$ref": "#/components/schemas/google.protobuf.Any"}},
    },
    "required": ["code", "message"],
}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")
_TEMPLATE_VAR = re.compile(r"\{([A-Za-z0-9_.]+)(?:=([^}]*))?\}")
_MAX_QUERY_DEPTH = 3


@dataclass
class _Generator:
    """Walks the descriptor set and collects the component schemas an operation needs."""

    messages: dict[str, tuple[descriptor_pb2.DescriptorProto, str]] = field(default_factory=dict)
    enums: dict[str, tuple[descriptor_pb2.EnumDescriptorProto, str]] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)  # full name (.field) -> comment
    schemas: dict[str, Schema] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    def index(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        for file in fds.file:
            comments = comments_by_path(file)
            prefix = f"{file.package}." if file.package else ""
            for i, enum in enumerate(file.enum_type):
                self.enums[prefix + enum.name] = (enum, comments.get((5, i), ""))
            for i, msg in enumerate(file.message_type):
                self._index_message(msg, prefix, (4, i), comments)

    def _index_message(
        self,
        msg: descriptor_pb2.DescriptorProto,
        prefix: str,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        name = prefix + msg.name
        self.messages[name] = (msg, comments.get(path, ""))
        for i, fld in enumerate(msg.field):
            if (text := comments.get((*path, 2, i))) is not None:
                self.comments[f"{name}.{fld.name}"] = text
        for i, enum in enumerate(msg.enum_type):
            self.enums[f"{name}.{enum.name}"] = (enum, comments.get((*path, 4, i), ""))
        for i, nested in enumerate(msg.nested_type):
            self._index_message(nested, f"{name}.", (*path, 3, i), comments)

    # -- schemas -------------------------------------------------------------------

    def ref(self, full_name: str) -> Schema:
        """A schema for a message or enum type, queueing its component when needed."""
        if full_name in _WELL_KNOWN:
            schema = dict(_WELL_KNOWN[full_name])
            if full_name == "google.protobuf.Any":
                self.schemas.setdefault(full_name, _ANY)
            return schema
        if full_name not in self.schemas and full_name not in self.pending:
            self.pending.append(full_name)
        return {"$ref": f"#/components/schemas/{full_name}"}

    def field_schema(self, owner: str, fld: descriptor_pb2.FieldDescriptorProto) -> Schema:
        type_name = fld.type_name.lstrip(".")
        if fld.type == FDP.TYPE_MESSAGE and self.messages[type_name][0].options.map_entry:
            value = self.messages[type_name][0].field[1]
            schema: Schema = {
                "type": "object",
                "additionalProperties": self.field_schema(type_name, value),
            }
        else:
            single = self.ref(type_name) if type_name else dict(_SCALARS[fld.type])
            repeated = fld.label == FDP.LABEL_REPEATED
            schema = {"type": "array", "items": single} if repeated else single
        if text := self.comments.get(f"{owner}.{fld.name}"):
            schema["description"] = text
        behaviors = field_behaviors(fld)
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            schema["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            schema["writeOnly"] = True
        return schema

    def message_schema(self, full_name: str, exclude: frozenset[str] = frozenset()) -> Schema:
        msg, comment = self.messages[full_name]
        properties: dict[str, Schema] = {}
        required = []
        for fld in msg.field:
            if fld.name in exclude:
                continue
            name = _json_name(fld)
            properties[name] = self.field_schema(full_name, fld)
            if field_behavior_pb2.REQUIRED in field_behaviors(fld):
                required.append(name)
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if comment:
            schema["description"] = comment
        return schema

    def enum_schema(self, full_name: str) -> Schema:
        enum, comment = self.enums[full_name]
        schema: Schema = {"type": "string", "enum": [v.name for v in enum.value]}
        if comment:
            schema["description"] = comment
        return schema

    def drain(self) -> None:
        """Build every component schema referenced so far, and those they reference."""
        while self.pending:
            name = self.pending.pop()
            if name in self.enums:
                self.schemas[name] = self.enum_schema(name)
            else:
                self.schemas[name] = self.message_schema(name)

    # -- operations ----------------------------------------------------------------

    def resolve(self, message: str, dotted: str) -> tuple[str, descriptor_pb2.FieldDescriptorProto]:
        """The (owner message, field) a dotted path such as `listing.listing_id` names."""
        owner, fld = message, None
        for part in dotted.split("."):
            if fld is not None:
                owner = fld.type_name.lstrip(".")
            matches = [f for f in self.messages[owner][0].field if f.name == part]
            if not matches:
                raise ValueError(f"{message} has no field {dotted!r} (used in an http rule)")
            fld = matches[0]
        assert fld is not None
        return owner, fld

    def query_parameters(
        self, message: str, bound: set[str], prefix: tuple[str, str] = ("", ""), depth: int = 0
    ) -> Iterator[Schema]:
        """Query parameters for the fields bound neither to the path nor to the body.

        `prefix` is the (proto, JSON) path of `message` within the request, e.g.
        ("filter.", "filter."); nested messages become dotted names like `filter.minCount`.
        """
        for fld in self.messages[message][0].field:
            proto_path, json_path = prefix[0] + fld.name, prefix[1] + _json_name(fld)
            if proto_path in bound:
                continue
            type_name = fld.type_name.lstrip(".")
            nested = fld.type == FDP.TYPE_MESSAGE and type_name not in _WELL_KNOWN
            if nested and self.messages[type_name][0].options.map_entry:
                continue  # maps cannot be sent in a query string
            if nested:
                if fld.label != FDP.LABEL_REPEATED and depth < _MAX_QUERY_DEPTH:
                    yield from self.query_parameters(
                        type_name, bound, (f"{proto_path}.", f"{json_path}."), depth + 1
                    )
                continue
            schema = self.field_schema(message, fld)
            description = schema.pop("description", None)
            param: Schema = {"name": json_path, "in": "query", "schema": schema}
            if description:
                param["description"] = description
            if fld.label == FDP.LABEL_REPEATED:
                param["explode"] = True
            yield param

    def operation(
        self, am: AnnotatedMethod, binding: HttpBinding, op_id: str
    ) -> tuple[str, Schema]:
        request = am.method.input_type.lstrip(".")
        bound: set[str] = set()
        params: list[Schema] = []
        names_used: set[str] = set()

        def path_var(match: re.Match[str]) -> str:
            dotted, pattern = match.group(1), match.group(2)
            owner, fld = self.resolve(request, dotted)
            bound.add(dotted)
            name = fld.name if fld.name not in names_used else dotted.replace(".", "_")
            names_used.add(name)
            schema = self.field_schema(owner, fld)
            schema.pop("readOnly", None)
            param: Schema = {"name": name, "in": "path", "required": True, "schema": schema}
            if description := schema.pop("description", None):
                param["description"] = description
            if pattern and pattern != "*":
                param["description"] = (
                    f"{param.get('description', '')}\n\nFormat: `{pattern}`.".strip()
                )
            params.append(param)
            return "{" + name + "}"

        path = _TEMPLATE_VAR.sub(path_var, binding.path)
        op: Schema = {
            "operationId": op_id,
            "tags": [am.service.rsplit(".", 1)[1]],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": self.response_schema(am, binding)}},
                },
                "default": {"$ref": "#/components/responses/Error"},
            },
        }
        if am.comment:
            op["summary"] = am.comment.split(". ", 1)[0].split("\n", 1)[0].rstrip(".")
            op["description"] = am.comment
        if binding.body == "*":
            top_level = frozenset(p for p in bound if "." not in p)
            body = self.message_schema(request, top_level) if top_level else self.ref(request)
        elif binding.body:
            owner, fld = self.resolve(request, binding.body)
            bound.add(binding.body)
            body = self.field_schema(owner, fld)
        if binding.body:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
            if binding.body != "*":
                params.extend(self.query_parameters(request, bound))
        else:
            params.extend(self.query_parameters(request, bound))
        if params:
            op["parameters"] = params
        return path, op

    def response_schema(self, am: AnnotatedMethod, binding: HttpBinding) -> Schema:
        response = am.method.output_type.lstrip(".")
        if binding.response_body:
            owner, fld = self.resolve(response, binding.response_body)
            schema = self.field_schema(owner, fld)
        else:
            schema = self.ref(response)
        if am.method.server_streaming:
            return {"type": "array", "items": schema}
        return schema


def _json_name(fld: descriptor_pb2.FieldDescriptorProto) -> str:
    if fld.json_name:
        return fld.json_name
    head, *rest = fld.name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def build_openapi(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a JSON-ready dict) for every http-annotated RPC."""
    gen = _Generator()
    gen.index(fds)
    paths: dict[str, dict[str, Schema]] = {}
    tags: dict[str, str] = {}
    op_ids: set[str] = set()
    service_comments = {
        f"{file.package}.{svc.name}": comments_by_path(file).get((SERVICE, i), "")
        for file in fds.file
        for i, svc in enumerate(file.service)
    }
    for am in annotated_methods(fds):
        short = am.service.rsplit(".", 1)[1]
        tags[short] = service_comments[am.service]
        for n, binding in enumerate(am.bindings):
            if binding.verb not in _HTTP_METHODS:
                raise ValueError(
                    f"{am.service}.{am.method.name}: HTTP {binding.verb} is unsupported"
                )
            op_id = f"{short}_{am.method.name}" + (f"_{n}" if n else "")
            if op_id in op_ids:
                raise ValueError(f"duplicate operationId {op_id}: rename a service or method")
            op_ids.add(op_id)
            path, op = gen.operation(am, binding, op_id)
            if binding.verb in paths.setdefault(path, {}):
                raise ValueError(f"two RPCs bind {binding.verb.upper()} {path}")
            paths[path][binding.verb] = op
    gen.drain()
    gen.schemas["google.rpc.Status"] = _STATUS
    gen.schemas.setdefault("google.protobuf.Any", _ANY)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hygoshop API",
            "version": "v1",
            "description": (
                "Hygoshop's public HTTP/JSON API, generated from the protobuf contracts. "
                "Send your API key as `Authorization: Bearer <key>`. Errors are "
                "google.rpc.Status objects in JSON."
            ),
        },
        "tags": [
            {"name": t, "description": d} if d else {"name": t} for t, d in sorted(tags.items())
        ],
        "paths": paths,
        "components": {
            "schemas": gen.schemas,
            "responses": {
                "Error": {
                    "description": "An error (google.rpc.Status).",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/google.rpc.Status"}
                        }
                    },
                }
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Hygoshop API key, sent as `Authorization: Bearer <key>`.",
                }
            },
        },
        "security": [{"bearerAuth": []}],
    }


def render_openapi(fds: descriptor_pb2.FileDescriptorSet) -> str:
    """The document as deterministic JSON text (sorted keys, trailing newline)."""
    return json.dumps(build_openapi(fds), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_openapi(descriptor_path: Path, out_path: Path) -> None:
    """Write the OpenAPI document for the descriptor set at `descriptor_path`."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_openapi(load_descriptor_set(descriptor_path)), encoding="utf-8")
