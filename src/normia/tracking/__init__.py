"""MLflow tracking: an embedded sqlite store by default, a server by URI; rank 0 only; metrics sent in batches."""
