"""Catalog domain: listings and their rules; no gRPC, no SQL."""
