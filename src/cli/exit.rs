//! Exit codes, in one place. Documented in `lightsout --help`.

/// How a `lightsout` command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Everything passed.
    Ok = 0,
    /// A stage or grader failed.
    Failed = 1,
    /// The input (a file, a ticket, an argument) is invalid.
    Invalid = 2,
    /// The infrastructure failed (Docker, git, the file system).
    Infra = 3,
    /// The run stopped at an `approve` gate and waits for `lightsout approve` or `reject`.
    AwaitingApproval = 4,
    /// The run was cancelled.
    Cancelled = 130,
}

impl super::Failure {
    /// The exit code of a command that failed so.
    pub(super) fn exit(&self) -> Exit {
        match self {
            super::Failure::Invalid(..) | super::Failure::Message(_) => Exit::Invalid,
            super::Failure::Io(_) => Exit::Infra,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

pub(super) const HELP: &str = "\
Exit codes:
  0    success
  1    a stage or grader failed
  2    invalid input: a file, ticket or argument (every problem is listed with file:line:column)
  3    infrastructure fault (Docker, git, file system)
  4    the run waits at an approval gate (lightsout approve|reject <run>)
  130  cancelled";
