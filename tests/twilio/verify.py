"""An app written for Twilio Verify with the official `twilio` package
(PyPI, unmodified), pointed at otpd by the SDK's own base-URL override.
Each scenario prints one JSON line: what the SDK's objects or its
TwilioRestException said. tests/api/verify_v2.rs runs it and judges.

Environment: OTPD_URL, ACCOUNT_SID, AUTH_TOKEN, SERVICE_SID, TEST_NUMBER
(a test number whose code is TEST_CODE), OTHER_NUMBER (a real one)."""

import json
import os
import sys

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

env = os.environ


def client(token=None):
    made = Client(env["ACCOUNT_SID"], token or env["AUTH_TOKEN"])
    made.verify.base_url = env["OTPD_URL"]  # the one change an app makes
    return made


service = client().verify.v2.services(env["SERVICE_SID"])
number, code = env["TEST_NUMBER"], env["TEST_CODE"]
wrong = "000000" if code != "000000" else "111111"


def report(name, call):
    try:
        result = call()
        line = {"name": name, "ok": True, **result}
    except TwilioRestException as error:
        line = {"name": name, "ok": False, "status": error.status, "code": error.code,
                "message": error.msg}
    print(json.dumps(line), flush=True)


def created(to):
    verification = service.verifications.create(to=to, channel="sms")
    return {"sid": verification.sid, "status": verification.status, "to": verification.to,
            "channel": verification.channel, "valid": verification.valid,
            "service_sid": verification.service_sid, "account_sid": verification.account_sid}


def checked(code_given, **target):
    check = service.verification_checks.create(code=code_given, **target)
    return {"sid": check.sid, "status": check.status, "valid": check.valid, "to": check.to}


report("create", lambda: created(number))
first = service.verifications.create(to=number, channel="sms")
report("fetch", lambda: {"sid": service.verifications(first.sid).fetch().sid,
                         "status": service.verifications(first.sid).fetch().status})
report("check-wrong", lambda: checked(wrong, to=number))
report("check-right", lambda: checked(code, verification_sid=first.sid))
report("replay", lambda: checked(code, to=number))
third = service.verifications.create(to=number, channel="sms")
for attempt in range(5):
    report(f"attempt-{attempt + 1}", lambda: checked(wrong, to=number))
# By sid: otpd answers a check by number of a finished verification as it
# answers an unknown number (20404), so as not to tell its state.
report("max-attempts", lambda: checked(wrong, verification_sid=third.sid))
again = service.verifications.create(to=env["OTHER_NUMBER"], channel="sms")
report("cancel", lambda: {"status": service.verifications(again.sid).update(status="canceled").status})
report("bad-token", lambda: {"sid": client("not-the-token").verify.v2.services(env["SERVICE_SID"])
                             .verifications.create(to=number, channel="sms").sid})
report("invalid-number", lambda: created("+81123"))
for n in range(4):
    report(f"burst-{n + 1}", lambda: created(f"+8190555500{n:02d}"))
# A resource otpd does not serve: the app's `except TwilioRestException`
# must still catch the answer (lists raise TwilioException on any error,
# from Twilio too).
report("rate-limit", lambda: {"sid": service.rate_limits("RK" + "0" * 32).fetch().sid})
sys.exit(0)
