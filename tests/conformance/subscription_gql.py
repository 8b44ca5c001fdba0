"""A Python subscription client against Roster: gql's websockets transport, offering
graphql-transport-ws alone, follows `importJobProgress` of a real bulk job, submitted over
HTTP, to its end.

    ROSTER_URL=http://127.0.0.1:8080 ROSTER_TOKEN=<admin token> python subscription_gql.py
"""

import asyncio
import json
import os
import sys
import urllib.request

import gql
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

ROWS = 2500
PROGRESS = """
subscription($id: ID!) {
  importJobProgress(id: $id) { status processed progress summary { created failed } }
}
"""

checks = 0
failures = []


def check(ok, what):
    global checks
    checks += 1
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def submit(base, token):
    """Submits a bulk job of ROWS users over HTTP; answers its id, or None."""
    users = [
        {
            "externalId": f"gql-{i}",
            "email": f"gql-{i}@example.com",
            "firstName": "Python",
            "lastName": f"User {i}",
            "tags": ["subscribed"],
        }
        for i in range(ROWS)
    ]
    body = json.dumps(
        {
            "query": "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id } }",
            "variables": {"u": users},
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/graphql",
        data=body,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request) as response:
        answer = json.load(response)
    check(
        bool(answer.get("data", {}).get("importUsers", {}).get("id")),
        f"importUsers answers a job ({json.dumps(answer)[:120]})",
    )
    return answer.get("data", {}).get("importUsers", {}).get("id")


async def follow(url, token, job):
    """Every progress event of `job`, and the subprotocol the transport settled on."""
    transport = WebsocketsTransport(
        url=url,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"Authorization": f"Bearer {token}"},
    )
    events = []
    async with Client(transport=transport) as session:
        request = GraphQLRequest(PROGRESS, variable_values={"id": job})
        async for result in session.subscribe(request):
            events.append(result["importJobProgress"])
    return transport.subprotocol, events


def main():
    base = os.environ.get("ROSTER_URL")
    token = os.environ.get("ROSTER_TOKEN")
    if not base or not token:
        print("ROSTER_URL and ROSTER_TOKEN are required", file=sys.stderr)
        sys.exit(2)
    print(f"gql {gql.__version__}")
    job = submit(base, token)
    if job:
        url = base.replace("http", "ws", 1) + "/graphql/ws"
        try:
            subprotocol, events = asyncio.run(asyncio.wait_for(follow(url, token, job), 180))
            print("events: " + " ".join(f"{e['status']}:{e['processed']}" for e in events))
            check(
                subprotocol == WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
                f"the transport speaks graphql-transport-ws ({subprotocol})",
            )
            last = events[-1] if events else {}
            check(last.get("status") == "COMPLETED", f"the last event is final ({last.get('status')})")
            check(
                last.get("processed") == ROWS and last.get("summary", {}).get("created") == ROWS,
                "every row was created",
            )
            check(
                all(a["processed"] <= b["processed"] for a, b in zip(events, events[1:])),
                "progress never goes back",
            )
        except Exception as error:  # noqa: BLE001 - any failure is the check's
            causes = []
            while error is not None:
                causes.append(f"{type(error).__name__}: {error}")
                error = error.__cause__ or error.__context__
            check(False, f"the subscription runs to its end ({'; '.join(causes)})")
    print(f"subscription: gql {checks - len(failures)} passed, {len(failures)} failed")
    sys.exit(0 if not failures else 1)


if __name__ == "__main__":
    main()
