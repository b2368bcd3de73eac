//! The report: the tables (`tables.rs`, and `apart.rs` for the experiments
//! run apart), the SVG charts (`charts.rs`) and report.html (`html.rs`),
//! all made from the results alone.

pub(crate) mod apart;
pub(crate) mod charts;
pub(crate) mod html;
pub(crate) mod tables;
