"""Tasks: seeded data generators with their metric and a trivial baseline."""
