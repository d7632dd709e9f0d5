//! `expect: failure`: which non-zero exits are the failure a stage expects (the bug reproduced)
//! and which say that the command never got to fail (the environment's fault).
//!
//! An exit status alone cannot say that the named test ran and failed; it can say when nothing
//! ran. The shell's 126 and 127 and the codes of a process ended by a signal are the
//! environment's fault, not the bug's. The rest is taken as the expected failure until the test
//! results are read: [`expected_failure`] is the one place that decision is made, and where
//! the result readers (`JUnit` and the runners' output) are to be asked "did the named test run,
//! and fail?" when they are there.

/// What a non-zero exit of an `expect: failure` stage means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The command ran and failed: what the stage expects.
    Expected(String),
    /// The command never got to fail (not found, not executable, killed): an infrastructure
    /// fault, with the reason and a hint.
    NotRun(String),
}

/// The highest signal number Linux has (`SIGRTMAX`).
const MAX_SIGNAL: i64 = 64;

/// The name of a signal that commonly ends a process, for the reason.
fn signal_name(n: i64) -> Option<&'static str> {
    Some(match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return None,
    })
}

/// Judges the non-zero exit `code` of an `expect: failure` stage.
pub fn expected_failure(code: i64) -> Failure {
    match code {
        127 => Failure::NotRun(
            "exited 127, the shell's code for a command that was not found: nothing ran, so nothing was reproduced; check that the image has the tool on its PATH (`image:`, or its `ENV PATH`) and that the command is spelled right".into(),
        ),
        126 => Failure::NotRun(
            "exited 126, the shell's code for a command that was found but could not be executed (no execute permission, a directory, or a binary for another machine): nothing was reproduced; check the command and its permissions".into(),
        ),
        c if (129..=128 + MAX_SIGNAL).contains(&c) => {
            let n = c - 128;
            let name = signal_name(n).map_or_else(|| format!("signal {n}"), |s| format!("signal {n} ({s})"));
            let why = match n {
                9 => "often the memory limit (`resources.memory`) or a kill from outside",
                _ => "a crash or a kill, not a test that failed",
            };
            Failure::NotRun(format!(
                "exited {c}, which is how a process ended by {name} exits: {why}; that is not a reproduced bug (if a crash is the bug, let the test runner report it as a failed test, for instance by running the crashing code in a subprocess of the test)"
            ))
        }
        c => Failure::Expected(format!("exited {c}, as `expect: failure` wants")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_command_that_ran_and_failed_is_the_expected_failure() {
        for code in [1, 2, 101, 128, 255] {
            assert!(matches!(expected_failure(code), Failure::Expected(_)), "{code}");
        }
        for (code, says) in [(127, "not found"), (126, "could not be executed"), (137, "SIGKILL"), (139, "SIGSEGV")] {
            let judged = expected_failure(code);
            assert!(matches!(&judged, Failure::NotRun(why) if why.contains(says)), "{code}: {judged:?}");
        }
        assert!(matches!(expected_failure(128 + 40), Failure::NotRun(why) if why.contains("signal 40")));
    }
}
