"""Router: which provider serves a tenant for a category (tier x cost x health x override)."""
