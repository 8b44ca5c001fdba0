"""A round trip through scim2-client against a running Roster (ROSTER_SCIM_URL,
ROSTER_TOKEN): discover, create a manager and a user, find the user by filter, patch it,
put it in a group (whose name becomes its tag), deactivate it. One line per step;
exits 1 at the first step that goes wrong."""

import os
import sys
import uuid

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import PatchOp, SearchRequest

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ROSTER = "urn:roster:params:scim:schemas:extension:2.0:User"

passed = 0


def step(name, ok, detail=""):
    global passed
    if not ok:
        print(f"FAILED   {name}: {detail}")
        print(f"roundtrip: {passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"SUCCESS  {name}")


def main():
    client = Client(
        base_url=os.environ["ROSTER_SCIM_URL"],
        headers={"Authorization": f"Bearer {os.environ['ROSTER_TOKEN']}"},
        timeout=30,
    )
    scim = SyncSCIMClient(client)
    scim.discover()
    User = scim.get_resource_model("User")
    step("discover", User is not None, "no User resource type")

    run = uuid.uuid4().hex[:8]

    def person(name, **extra):
        return User.model_validate(
            extra
            | {
                "schemas": [User.__schema__, ENTERPRISE, ROSTER],
                "userName": f"{name}-{run}@example.com",
                "externalId": f"{name}-{run}",
                "name": {"givenName": name.title(), "familyName": "Roundtrip"},
                "emails": [{"value": f"{name}-{run}@example.com", "type": "work", "primary": True}],
                "active": True,
            }
        )

    boss = scim.create(person("boss"))
    step("create a manager", boss.id is not None, repr(boss))
    ann = scim.create(person("ann", **{ENTERPRISE: {"department": "Sales", "manager": {"value": boss.id}}}))
    step("create a user with a manager", ann[ENTERPRISE].manager.value == boss.id, repr(ann))

    found = scim.query(User, query_parameters=SearchRequest(filter=f'userName eq "ANN-{run}@example.com"'))
    step("find by filter", found.total_results == 1 and found.resources[0].id == ann.id, repr(found))

    patched = scim.modify(
        User,
        ann.id,
        PatchOp[User].model_validate(
            {
                "Operations": [
                    {"op": "replace", "path": "title", "value": "Lead"},
                    {"op": "replace", "path": 'emails[type eq "work"].value', "value": f"ann.lee-{run}@example.com"},
                ]
            }
        ),
    )
    patched = patched or scim.query(User, ann.id)
    step(
        "patch",
        patched.title == "Lead" and patched.emails[0].value == f"ann.lee-{run}@example.com",
        repr(patched),
    )

    Group = scim.get_resource_model("Group")
    group = scim.create(Group.model_validate({"schemas": [Group.__schema__], "displayName": f"Safety {run}"}))
    scim.modify(
        Group,
        group.id,
        PatchOp[Group].model_validate(
            {"Operations": [{"op": "add", "path": "members", "value": [{"value": ann.id}]}]}
        ),
    )
    tagged = scim.query(User, ann.id)
    found = scim.query(Group, query_parameters=SearchRequest(filter=f'displayName eq "safety {run}"'))
    step(
        "group membership",
        f"safety {run}" in tagged[ROSTER].tags
        and [m.value for m in found.resources[0].members] == [ann.id],
        repr(found),
    )

    scim.delete(User, ann.id)
    after = scim.query(User, ann.id)
    step("deactivate", after.active is False, repr(after))
    print(f"roundtrip: {passed} passed, 0 failed")


if __name__ == "__main__":
    main()
