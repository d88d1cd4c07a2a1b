//! What can go wrong calling the API.

use envplane_api::Problem;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API could not be reached, or the connection broke.
    #[error("calling {url}: {message}{}", hint(url))]
    Transport {
        /// The URL called.
        url: String,
        /// What the transport said.
        message: String,
    },
    /// The API answered with a problem (RFC 9457).
    #[error("{}", describe(.status, .problem))]
    Problem {
        /// The HTTP status.
        status: u16,
        /// The problem document.
        problem: Box<Problem>,
    },
    /// The API answered something other than a problem with an error status.
    #[error("the API answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body as sent.
        body: String,
    },
    /// The answer is not the document the route promises.
    #[error("reading {what}: {message}")]
    Decode {
        /// What was being read.
        what: String,
        /// Why it could not be.
        message: String,
    },
}

/// A refused connection to the local default most likely means no plane is running there.
fn hint(url: &str) -> &'static str {
    if url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost") {
        " (is `envplane serve` running?)"
    } else {
        ""
    }
}

/// A problem as people read it: title, status, detail, then each field at fault.
fn describe(status: &u16, problem: &Problem) -> String {
    let mut text = format!("{} ({status}): {}", problem.title, problem.detail);
    for error in &problem.errors {
        // A problem with one field at fault usually says it in its detail already.
        if problem.detail.contains(&error.detail) {
            continue;
        }
        text.push_str(&format!("\n  {}: {}", error.field, error.detail));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use envplane_domain::FieldError;

    fn problem(detail: &str, errors: &[(&str, &str)]) -> Problem {
        Problem {
            kind: "urn:envplane:problem:validation".into(),
            title: "Validation failed".into(),
            status: 422,
            detail: detail.into(),
            field: errors.first().map(|(f, _)| (*f).to_owned()),
            errors: errors
                .iter()
                .map(|(field, detail)| FieldError {
                    field: (*field).to_owned(),
                    detail: (*detail).to_owned(),
                })
                .collect(),
            operation: None,
        }
    }

    #[test]
    fn a_problem_says_each_fault_once() {
        let one = problem(
            "cluster.frontend.min: must not exceed max",
            &[("cluster.frontend.min", "must not exceed max")],
        );
        assert_eq!(
            describe(&422, &one),
            "Validation failed (422): cluster.frontend.min: must not exceed max"
        );
        let two = problem(
            "2 fields are invalid",
            &[("name", "too long"), ("tier", "unknown tier")],
        );
        assert_eq!(
            describe(&422, &two),
            "Validation failed (422): 2 fields are invalid\n  name: too long\n  tier: unknown tier"
        );
    }
}
