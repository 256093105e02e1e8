"""Everything that talks to a registry or to Harbor: OCI models, the distribution client,
the Harbor REST client and Harbor's webhook payloads."""
