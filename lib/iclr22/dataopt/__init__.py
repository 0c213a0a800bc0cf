"""Dataset optimization papers: DIVA, the dataset derivative."""
