//! Criterion benches of every server under the same workloads. Not written
//! yet: the benches come with the comparison issue.
