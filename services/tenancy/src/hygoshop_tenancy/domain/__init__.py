"""Tenancy's pure domain logic: no gRPC, no SQL."""
