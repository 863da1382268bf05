"""Search structures in memory: filters, posting lists, the metadata table, exact and HNSW
search, the vector index and what a search returns. Layer 2: imports the base only."""
