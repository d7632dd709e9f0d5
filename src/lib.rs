//! lightsout: a declarative pipeline-as-code runner for dark software factories.
//!
//! The data path is the architecture: [`spec`] reads the user's files into typed data with
//! locations, [`compile`] turns them (with [`policy`]) into an immutable [`plan::Plan`], [`run`]
//! schedules its stages, [`stages`] carries each out, and [`executor`] runs commands in a
//! sandbox (docker or local, with the [`egress`] proxy). What happens is [`events`], recorded by
//! [`store`] and shown by [`report`]. Beside the path: [`workspace`] (the run's git worktree and
//! host git), [`secrets`] (masking), [`untrusted`] (reading what a stage wrote), [`template`].
//!
//! The layering rule: arrows go one way, `cli → run → stages → executor`, and `compile → spec`;
//! every module may use `plan`, `events`, `diag` and `policy`. `tests/it/layers.rs` checks
//! every `crate::` path against this rule; the arrows that still break it are listed there, to
//! be removed, never added to.

pub mod cli;
pub mod compile;
pub mod diag;
pub mod egress;
pub mod events;
pub mod executor;
pub mod plan;
pub mod policy;
pub mod report;
pub mod run;
pub mod secrets;
pub mod spec;
pub mod stages;
pub mod store;
pub mod template;
pub mod ticket;
pub mod untrusted;
pub mod workspace;
