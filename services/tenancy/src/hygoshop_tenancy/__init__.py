"""Tenancy: tenants, tiers, API keys, and the gateway's auth check."""
