//! Problems as gRPC statuses: the problem's kind picks the gRPC code (one
//! for each kind, no fallback), the problem `code` goes into
//! `google.rpc.ErrorInfo.reason` (domain `otpd`), and the wait into
//! `google.rpc.RetryInfo`.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::api::{Kind, Problem};

/// The gRPC code for each kind of problem.
pub fn code_for(kind: Kind) -> Code {
    match kind {
        Kind::BadRequest
        | Kind::PayloadTooLarge
        | Kind::UnsupportedMediaType
        | Kind::Unprocessable
        | Kind::HeadersTooLarge => Code::InvalidArgument,
        Kind::Unauthorized => Code::Unauthenticated,
        Kind::Forbidden => Code::PermissionDenied,
        Kind::NotFound => Code::NotFound,
        Kind::MethodNotAllowed => Code::Unimplemented,
        Kind::RequestTimeout => Code::DeadlineExceeded,
        Kind::Conflict => Code::FailedPrecondition,
        Kind::TooManyRequests => Code::ResourceExhausted,
        Kind::Internal => Code::Internal,
        Kind::Unavailable => Code::Unavailable,
    }
}

pub fn from_problem(problem: Problem) -> Status {
    let mut details = ErrorDetails::with_error_info(
        problem.code(),
        "otpd",
        std::collections::HashMap::<String, String>::new(),
    );
    let retry_after = problem
        .headers()
        .iter()
        .find(|(name, _)| *name == "retry-after")
        .and_then(|(_, value)| value.parse::<u64>().ok());
    if let Some(seconds) = retry_after {
        details.set_retry_info(Some(Duration::from_secs(seconds)));
    }
    Status::with_error_details(code_for(problem.kind()), problem.detail(), details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_problem_has_its_grpc_code() {
        let table = [
            (Kind::BadRequest, Code::InvalidArgument),
            (Kind::Unauthorized, Code::Unauthenticated),
            (Kind::Forbidden, Code::PermissionDenied),
            (Kind::NotFound, Code::NotFound),
            (Kind::Conflict, Code::FailedPrecondition),
            (Kind::Unprocessable, Code::InvalidArgument),
            (Kind::TooManyRequests, Code::ResourceExhausted),
            (Kind::Unavailable, Code::Unavailable),
            (Kind::Internal, Code::Internal),
            // Once the fallback of HTTP 405, 408 and 413: INTERNAL.
            (Kind::MethodNotAllowed, Code::Unimplemented),
            (Kind::RequestTimeout, Code::DeadlineExceeded),
            (Kind::PayloadTooLarge, Code::InvalidArgument),
        ];
        for (kind, grpc) in table {
            assert_eq!(code_for(kind), grpc, "{kind:?}");
        }
    }
}
