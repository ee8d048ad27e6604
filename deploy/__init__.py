"""Running Hygoshop locally: the stack (services + gateway) and the `make run` launcher."""
