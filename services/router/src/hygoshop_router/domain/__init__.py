"""Router domain: ranking, health and validation; no gRPC, no SQL."""
