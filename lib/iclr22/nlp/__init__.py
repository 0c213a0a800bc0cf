"""NLP papers: Trans-Encoder."""
