"""One module per operation: people and organization enrichment, search, push."""
