"""The pure core: records, parsing, validation and sync decisions. No network, storage or Azure imports."""
