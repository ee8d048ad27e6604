"""Read the protobuf descriptor set: the RPCs with `google.api.http` rules and comments.

Shared by the OpenAPI generator and the Envoy config renderer, so both see the same API.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedScalarFieldContainer
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

# The googleapis stubs type extensions as plain FieldDescriptors; say what they extend.
# Importing their modules also registers them, which parsing needs to keep them readable.
_HTTP = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.MethodOptions, http_pb2.HttpRule]",
    annotations_pb2.http,
)
_FIELD_BEHAVIOR = cast(
    "_ExtensionFieldDescriptor[descriptor_pb2.FieldOptions, RepeatedScalarFieldContainer[int]]",
    field_behavior_pb2.field_behavior,
)
# Paths inside FileDescriptorProto (see SourceCodeInfo.Location.path in descriptor.proto).
SERVICE, METHOD = 6, 2


def load_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    """Parse a descriptor set (made with protoc --include_imports --include_source_info).

    The google.api options (http, field_behavior) are readable because this module
    imports them before parsing.
    """
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


@dataclass(frozen=True)
class HttpBinding:
    """One HTTP route of one RPC (the rule itself, then each of its additional_bindings)."""

    verb: str  # lower-case HTTP method
    path: str  # the URL template as written in the proto, e.g. /v1/listings/{listing_id}
    body: str  # "", "*" or a request field name
    response_body: str


@dataclass(frozen=True)
class AnnotatedMethod:
    """An RPC that has a google.api.http rule."""

    package: str  # e.g. hygoshop.catalog.v1
    service: str  # full name, e.g. hygoshop.catalog.v1.CatalogService
    method: descriptor_pb2.MethodDescriptorProto
    bindings: tuple[HttpBinding, ...]
    comment: str

    @property
    def grpc_path(self) -> str:
        """The HTTP/2 path of the RPC, which the transcoder rewrites requests to."""
        return f"/{self.service}/{self.method.name}"


def _bindings(rule: http_pb2.HttpRule) -> Iterator[HttpBinding]:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        yield HttpBinding(rule.custom.kind.lower(), rule.custom.path, rule.body, rule.response_body)
    elif pattern is not None:
        yield HttpBinding(pattern, getattr(rule, pattern), rule.body, rule.response_body)
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


def annotated_methods(fds: descriptor_pb2.FileDescriptorSet) -> list[AnnotatedMethod]:
    """Every RPC with a google.api.http rule, in descriptor order."""
    found = []
    for file in fds.file:
        comments = comments_by_path(file)
        for s, service in enumerate(file.service):
            for m, method in enumerate(service.method):
                if not method.options.HasExtension(_HTTP):
                    continue
                rule = method.options.Extensions[_HTTP]
                found.append(
                    AnnotatedMethod(
                        package=file.package,
                        service=f"{file.package}.{service.name}",
                        method=method,
                        bindings=tuple(_bindings(rule)),
                        comment=comments.get((SERVICE, s, METHOD, m), ""),
                    )
                )
    return found


def field_behaviors(fld: descriptor_pb2.FieldDescriptorProto) -> frozenset[int]:
    """The field's google.api.field_behavior values (REQUIRED, OUTPUT_ONLY, ...)."""
    return frozenset(fld.options.Extensions[_FIELD_BEHAVIOR])


def comments_by_path(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Leading (else trailing) comments by source location path, without the `// ` space."""
    out = {}
    for loc in file.source_code_info.location:
        text = loc.leading_comments or loc.trailing_comments
        if text:
            lines = [line.removeprefix(" ") for line in text.strip("\n").split("\n")]
            out[tuple(loc.path)] = "\n".join(lines).strip()
    return out
