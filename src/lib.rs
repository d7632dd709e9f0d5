//! lightsout: a declarative pipeline-as-code runner for dark software factories.
//!
//! The data path is the architecture: [`spec`] reads the user's files into typed data with
//! locations, [`compile`] turns them (with [`policy`]) into an immutable [`plan::Plan`], and the
//! command line in [`cli`] shows, validates and (later) runs it.

pub mod cli;
pub mod compile;
pub mod diag;
pub mod egress;
pub mod executor;
pub mod plan;
pub mod policy;
pub mod run;
pub mod spec;
pub mod stages;
pub mod ticket;
