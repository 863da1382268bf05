"""The merchandiser's tools over the contract: neighbour tables, tag/audit, duplicates.
Layer 5: imports catalog/ and below."""
