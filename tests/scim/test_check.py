"""check.py counts a failure apart only for the very check README.md lists it for."""

import unittest
from types import SimpleNamespace

from check import known

PHONE = "phoneNumbers: must be an international number in E.164 form, e.g. +380971234567"
DATE = (
    "urn:roster:params:scim:schemas:extension:2.0:User:birthDate: "
    '"6cfd278b-248f-45f8-9fab-66fa285fe837" is not a date in YYYY-MM-DD or DD.MM.YYYY form'
)


def result(title: str, reason: str):
    return SimpleNamespace(title=title, reason=reason)


class Known(unittest.TestCase):
    def test_a_listed_reason_of_a_listed_check_is_known(self):
        reason = f"Failed to add attribute 'phoneNumbers': {PHONE}"
        self.assertTrue(known(result("check_add_attribute", reason)))

    def test_every_problem_of_a_check_that_sends_everything_may_be_listed(self):
        self.assertTrue(known(result("object_replacement", f"{PHONE}; {DATE}")))

    def test_an_email_kept_as_work_is_known_for_the_attribute_checks(self):
        reason = (
            "PATCH modify() returned unexpected value for 'emails'.\n"
            "Patched value: [Emails(value='a@b.com', type='other', primary=False)]\n"
            "Returned value: [Emails(value='a@b.com', type='work', primary=True)]"
        )
        self.assertTrue(known(result("check_replace_attribute", reason)))
        self.assertFalse(known(result("object_replacement", reason)))

    def test_a_listed_reason_of_another_check_is_a_failure(self):
        self.assertFalse(known(result("object_creation", PHONE)))
        self.assertFalse(known(result("object_replacement", "still exists after deletion")))

    def test_an_unlisted_problem_beside_listed_ones_is_a_failure(self):
        reason = f"{PHONE}; emails: must be a valid email address"
        self.assertFalse(known(result("object_replacement", reason)))

    def test_a_reason_that_only_contains_listed_words_is_a_failure(self):
        reason = f"userName: is required, after {PHONE}"
        self.assertFalse(known(result("check_add_attribute", reason)))


if __name__ == "__main__":
    unittest.main()
