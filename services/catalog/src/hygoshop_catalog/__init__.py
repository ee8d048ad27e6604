"""Catalog: listings, variants, prices, inventory and images of each tenant."""
