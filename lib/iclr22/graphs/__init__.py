"""Graph papers: Cold Brew, GIANT-XRT, graph-relational domain adaptation."""
