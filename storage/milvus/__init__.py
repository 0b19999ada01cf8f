"""Milvus, embedded (milvus-lite) or a server: the store, columnar inserts, how its errors are told,
versioned collections behind an alias, filters, and on milvus-lite each collection's exact copy."""
