"""Creature names: the `NameSource` protocol (base), the seeded local generator (local, generator), and the
`remote` backend (remote) that serves an OpenAI-compatible model's names (openai_client, prompts, extract,
capped_body) from a pool ahead of requests; with a fleet, that pool is shared by every instance through
Redis (shared), under leases that bound the model calls fleet-wide.
"""
