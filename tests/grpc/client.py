"""A gRPC client otpd did not write: Python grpcio with stubs generated from
proto/ by grpcio-tools. Driven by tests/api/grpc.rs over stdin/stdout, one
JSON object per line:

  python3 client.py <stubs dir> <host:port> <api key> <key for demo only>

It starts a verification and prints {"id": …}; reads {"code": …} (the test
takes the code from its carrier sink); then checks a wrong code, the right
code, the right code again (a replay), and one error of each kind, and
prints every outcome as {"step", "code" (gRPC), "reason" (ErrorInfo),
"retry_delay", "valid", "status"}; last, it prints {"step": "outage"},
waits for a line (the test stops Redis) and reads the verification again.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from otp.v1 import otp_pb2, otp_pb2_grpc  # noqa: E402

ADDRESS, KEY = sys.argv[2], sys.argv[3]
channel = grpc.insecure_channel(ADDRESS)
stub = otp_pb2_grpc.VerificationServiceStub(channel)
AUTH = [("authorization", f"Bearer {KEY}")]


def say(value):
    print(json.dumps(value), flush=True)


def details(error):
    """The ErrorInfo reason and RetryInfo delay of a failed call."""
    found = {"reason": None, "retry_delay": None}
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                found["reason"] = info.reason
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                found["retry_delay"] = retry.retry_delay.seconds
    return found


def call(step, method, request, metadata=AUTH):
    try:
        response = method(request, metadata=metadata)
    except grpc.RpcError as error:
        say({"step": step, "code": error.code().name, **details(error)})
        return None
    verification = response.verification
    say({
        "step": step,
        "code": "OK",
        "valid": getattr(response, "valid", None),
        "status": otp_pb2.Status.Name(verification.status),
        "attempts_left": verification.attempts_left,
    })
    return response


health = health_pb2_grpc.HealthStub(channel).Check(
    health_pb2.HealthCheckRequest(service="otp.v1.VerificationService"))
say({"step": "health", "code": "OK", "status": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)})

started = call("start", stub.StartVerification, otp_pb2.StartVerificationRequest(
    service="demo", to="090-1234-5678", channel="sms", locale="en"))
say({"id": started.verification.id})
code = json.loads(sys.stdin.readline())["code"]
wrong = f"{(int(code) + 1) % 1_000_000:06d}"
verification_id = started.verification.id

call("wrong", stub.CheckVerification, otp_pb2.CheckVerificationRequest(service="demo", id=verification_id, code=wrong))
call("right", stub.CheckVerification, otp_pb2.CheckVerificationRequest(service="demo", id=verification_id, code=code))
call("replay", stub.CheckVerification, otp_pb2.CheckVerificationRequest(service="demo", id=verification_id, code=code))
call("get", stub.GetVerification, otp_pb2.GetVerificationRequest(service="demo", id=verification_id))
# One error of each kind.
call("no-key", stub.GetVerification, otp_pb2.GetVerificationRequest(service="demo", id=verification_id), metadata=[])
call("other-service", stub.GetVerification, otp_pb2.GetVerificationRequest(service="other", id=verification_id),
     metadata=[("authorization", f"Bearer {sys.argv[4]}")])
call("bad-number", stub.StartVerification, otp_pb2.StartVerificationRequest(service="demo", to="12345", channel="sms"))
call("attestation-not-taken", stub.StartVerification, otp_pb2.StartVerificationRequest(
    service="demo", to="090-1234-5678", channel="sms",
    attestation=otp_pb2.Attestation(provider="turnstile", token="0.token")))
call("unknown-id", stub.GetVerification, otp_pb2.GetVerificationRequest(service="demo", id="AAAAAAAAAAAAAAAAAAAAAAAA"))
call("resend-finished", stub.ResendVerification, otp_pb2.ResendVerificationRequest(service="demo", id=verification_id))
again = call("start-again", stub.StartVerification, otp_pb2.StartVerificationRequest(
    service="demo", to="090-1234-5679", channel="sms"))
call("resend-too-soon", stub.ResendVerification, otp_pb2.ResendVerificationRequest(service="demo", id=again.verification.id))
call("cancel", stub.CancelVerification, otp_pb2.CancelVerificationRequest(service="demo", id=again.verification.id))
say({"step": "outage"})
sys.stdin.readline()
call("store-down", stub.GetVerification, otp_pb2.GetVerificationRequest(service="demo", id=verification_id))
say({"step": "done"})
