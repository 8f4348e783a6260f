"""The client layer: HTTP to Apollo (retries, pacing), the answer store and the credit ledger."""

from apollo_frames.client.http import ApiResponse, ApolloClient, client_scope

__all__ = ["ApiResponse", "ApolloClient", "client_scope"]
