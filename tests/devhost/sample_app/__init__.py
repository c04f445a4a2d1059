"""A small function app for the devhost tests (every trigger kind the devhost runs)."""
