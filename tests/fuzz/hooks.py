"""Schemathesis checks for Roster's /graphql.

Roster answers refused input with GraphQL errors that carry a code (BAD_USER_INPUT,
CONFLICT, NOT_FOUND, ...), as its contract says, so schemathesis's own
`not_a_server_error` (which counts every resolver error) does not fit. This check fails
what the server itself caused: a 5xx response, or an error with the code INTERNAL.
"""

import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

# A file cannot travel inside a JSON request: any value sent for an `Upload` must be refused
# cleanly (a GraphQL error coded BAD_USER_INPUT), never be a server failure.
schemathesis.graphql.scalar("Upload", st.text(max_size=20).map(nodes.String))


@schemathesis.check
def no_server_error(ctx, response, case):
    """No 5xx response, and no GraphQL error coded INTERNAL."""
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code == "INTERNAL":
            raise AssertionError(f"an internal error: {error}")
    return None
