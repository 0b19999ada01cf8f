"""Bytes at rest: manifests, Parquet embeddings, the vector store, the SQL-like dialect."""
