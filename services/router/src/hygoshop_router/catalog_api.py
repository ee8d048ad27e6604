"""RouterService methods of the provider catalog and its health."""

from __future__ import annotations

from datetime import UTC, datetime

from hygoshop.router.v1 import router_pb2
from hygoshop_platform.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    require,
)
from hygoshop_platform.pagination import decode_token, page_size, split_page
from hygoshop_platform.server import Context
from hygoshop_platform.tenancy import current_caller
from hygoshop_router import convert
from hygoshop_router.access import DEFAULT_PAGE, ApiBase, catalog_reader
from hygoshop_router.domain.model import Provider
from hygoshop_router.domain.validation import PROVIDER_FIELDS, unknown_fields, validate_provider


class CatalogMethods(ApiBase):
    async def ListProviders(
        self, request: router_pb2.ListProvidersRequest, context: Context
    ) -> router_pb2.ListProvidersResponse:
        catalog_reader()
        size = page_size(request.page_size, DEFAULT_PAGE)
        if request.category:
            self._category(request.category, "category")
        query = ("providers", request.category)
        after = decode_token(request.page_token, query)
        rows = [
            p
            for pid, p in sorted(self._engine.catalog.items())
            if (not request.category or p.category == request.category)
            and (after is None or pid > str(after[0]))
        ]
        page, next_token = split_page(rows, size, lambda p: (p.provider_id,), query)
        return router_pb2.ListProvidersResponse(
            providers=[convert.provider_to_proto(p) for p in page], next_page_token=next_token
        )

    async def GetProvider(
        self, request: router_pb2.GetProviderRequest, context: Context
    ) -> router_pb2.Provider:
        catalog_reader()
        if not request.provider_id:
            raise InvalidArgument([FieldViolation("provider_id", "is required")])
        provider = self._engine.catalog.get(request.provider_id)
        if provider is None:
            raise NotFound("provider not found")
        return convert.provider_to_proto(provider)

    async def UpdateProvider(
        self, request: router_pb2.UpdateProviderRequest, context: Context
    ) -> router_pb2.Provider:
        caller = current_caller()
        if not caller.is_platform_admin:
            if not caller.scopes:
                raise Unauthenticated("an API key is required")
            raise PermissionDenied("only the platform administrator may edit the catalog")
        provider_id = request.provider.provider_id
        if not provider_id:
            raise InvalidArgument([FieldViolation("provider.provider_id", "is required")])
        paths = tuple(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                [FieldViolation("update_mask", f"is required; one of {', '.join(PROVIDER_FIELDS)}")]
            )
        require(unknown_fields(paths, PROVIDER_FIELDS))

        def change(current: Provider) -> Provider:
            updated, violations = convert.provider_fields_from_proto(
                request.provider, paths, current
            )
            require(violations + validate_provider(updated))
            return updated

        updated = await self._engine.providers.update_provider(provider_id, change, paths)
        if updated is None:
            raise NotFound("provider not found")
        self._engine.replace_provider(updated)
        return convert.provider_to_proto(updated)

    async def ListProviderHealth(
        self, request: router_pb2.ListProviderHealthRequest, context: Context
    ) -> router_pb2.ListProviderHealthResponse:
        tenant_id = catalog_reader()
        size = page_size(request.page_size, DEFAULT_PAGE)
        if request.category:
            self._category(request.category, "category")
        query = ("health", request.category)
        after = decode_token(request.page_token, query)
        tenant = None if tenant_id is None else await self._engine.tenant_routing(tenant_id)
        rows = [
            p
            for pid, p in sorted(self._engine.catalog.items())
            if (not request.category or p.category == request.category)
            and (after is None or pid > str(after[0]))
        ]
        now = datetime.now(UTC).timestamp()
        page, next_token = split_page(rows, size, lambda p: (p.provider_id,), query)
        return router_pb2.ListProviderHealthResponse(
            provider_health=[
                convert.health_to_proto(p, self._engine.tenant_health(p.provider_id, tenant, now))
                for p in page
            ],
            next_page_token=next_token,
        )
