"""Helpers of the Urban Data Node conformance suite: starting nodes, generating data, reference
answers from DuckDB, and comparing them. See ../README.md."""
