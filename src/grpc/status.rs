//! Problems as gRPC statuses, one to one: the HTTP status picks the gRPC
//! code, the problem `code` goes into `google.rpc.ErrorInfo.reason` (domain
//! `otpd`), and `Retry-After` into `google.rpc.RetryInfo`.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::http::Problem;

/// The gRPC code for an HTTP status of a problem.
pub fn code_for(http: u16) -> Code {
    match http {
        400 | 413 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        _ => Code::Internal,
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
    Status::with_error_details(
        code_for(problem.status().as_u16()),
        problem.detail(),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_status_has_its_grpc_code() {
        let table = [
            (400, Code::InvalidArgument),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::NotFound),
            (409, Code::FailedPrecondition),
            (422, Code::InvalidArgument),
            (429, Code::ResourceExhausted),
            (503, Code::Unavailable),
        ];
        for (http, grpc) in table {
            assert_eq!(code_for(http), grpc, "{http}");
        }
    }
}
