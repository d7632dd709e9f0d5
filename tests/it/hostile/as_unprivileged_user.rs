//! The local executor's attacks again, with `lightsout` run by an unprivileged user (uid 65533)
//! when the test process is root, as CI's is. The sandbox is set up differently for a root
//! runner and for an unprivileged one, and both must hold. When the test process is not root
//! these run as the invoker, like the originals; they never pass without running.

use std::os::unix::fs::MetadataExt as _;

use super::super::runner::{UID, as_unprivileged_user, is_root};
use super::super::support::{Repo, finished, log_text};

/// Each name is a test of `hostile` (or the path to another one), run as the unprivileged user.
macro_rules! as_unprivileged_user {
    ($($name:ident = $test:path;)*) => {$(
        #[test]
        fn $name() {
            as_unprivileged_user($test);
        }
    )*};
}

as_unprivileged_user! {
    local_no_tcp_with_network_none = super::local_no_tcp_with_network_none;
    local_no_udp_with_network_none = super::local_no_udp_with_network_none;
    local_no_dns_with_network_none = super::local_no_dns_with_network_none;
    local_host_files_outside_the_workspace_are_not_visible =
        super::local_host_files_outside_the_workspace_are_not_visible;
    local_the_docker_socket_is_not_there = super::local_the_docker_socket_is_not_there;
    local_the_outputs_file_cannot_be_a_symlink_to_a_host_file =
        super::local_the_outputs_file_cannot_be_a_symlink_to_a_host_file;
    local_host_system_directories_are_read_only = super::local_host_system_directories_are_read_only;
    local_the_runners_environment_is_out_of_reach = super::local_the_runners_environment_is_out_of_reach;
    local_a_process_left_behind_dies_with_the_stage = super::local_a_process_left_behind_dies_with_the_stage;
    local_a_stage_past_its_timeout_is_killed = super::local_a_stage_past_its_timeout_is_killed;
    local_egress_admits_the_allow_list_only_and_records_every_decision =
        super::local_egress_admits_the_allow_list_only_and_records_every_decision;
    local_egress_cannot_go_around_the_proxy = super::local_egress_cannot_go_around_the_proxy;
    the_local_executor_sandboxes_with_bubblewrap = super::super::run::the_local_executor_sandboxes_with_bubblewrap;
    local_a_stage_never_gets_host_root_nor_leaves_setuid_files =
        super::super::fence::local_a_stage_never_gets_host_root_nor_leaves_setuid_files;
    local_no_secret_in_arguments_nor_runner_environment =
        super::super::fence::local_no_secret_in_arguments_nor_runner_environment;
    local_special_result_files_fail_cleanly = super::super::fence::local_special_result_files_fail_cleanly;
    local_a_huge_sparse_file_never_reaches_host_git = super::super::fence::local_a_huge_sparse_file_never_reaches_host_git;
    local_logs_are_capped_and_keep_their_end = super::super::fence::local_logs_are_capped_and_keep_their_end;
    local_a_very_deep_tree_does_not_bring_the_runner_down =
        super::super::fence::local_a_very_deep_tree_does_not_bring_the_runner_down;
    local_locked_directories_hide_nothing_from_the_runner =
        super::super::fence::local_locked_directories_hide_nothing_from_the_runner;
    local_a_stage_past_its_timeout_gets_term_and_a_grace_period =
        super::super::fence::local_a_stage_past_its_timeout_gets_term_and_a_grace_period;
}

/// The variants above test what they say: the runner is the unprivileged user (it owns the run's
/// record), and so is the stage in its sandbox.
#[test]
fn the_runner_and_its_sandbox_are_the_unprivileged_user() {
    as_unprivileged_user(|| {
        let repo = Repo::new("  who:\n    run: echo uid=$(id -u) > $LIGHTSOUT_OUTPUT\n    outputs: [uid]\n");
        let (code, ev, err) = repo.run(&["--executor", "local"]);
        assert_eq!(code, 0, "{err}\n{}", log_text(&ev, "who"));
        let me = std::fs::metadata("/proc/self").expect("/proc/self").uid();
        let runner = if is_root() { UID } else { me };
        let run = repo.run_ids().pop().expect("run");
        assert_eq!(std::fs::metadata(repo.record(&run)).expect("record").uid(), runner);
        assert_eq!(finished(&ev, "who")[0]["outputs"]["uid"], runner.to_string());
    });
}
