//! Every server under the same four workloads, in answers per second,
//! each measured by `client load`'s engine run in-process for a fixed
//! number of answers (see [`benches::Load::run`]).
//!
//! ```text
//! cargo bench -p benches                      # all groups, all servers
//! cargo bench -p benches -- one_connection    # one group
//! cargo bench -p benches -- 'pipelined/srv-poll'
//! ```
//!
//! - `one_connection`: 1 connection, 1 question in flight: the round trip
//!   is the cost, and every model should be alike.
//! - `many_connections`: 16 connections, 1 in flight each: the concurrent
//!   models overlap the round trips; srv-single serves them one by one.
//! - `pipelined`: 4 connections, 16 in flight each: one read and one write
//!   per batch of questions.
//! - `work_wait`: 16 connections, `--work wait:1ms`: waiting overlaps in
//!   every concurrent model (ideal: 16,000 answers/s), not in srv-single
//!   (1,000 answers/s at best).

use std::num::NonZeroUsize;
use std::time::Duration;

use benches::{config, servers, Load};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zen_utils::{Work, WorkKind};

fn group(c: &mut Criterion, name: &str, load: Load, work: Option<Work>) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for server in servers() {
        let running = (server.start)(config(work));
        group.bench_function(server.name, |b| {
            b.iter_custom(|answers| load.run(running.addr(), answers));
        });
    }
    group.finish();
}

fn load(connections: usize, pipeline: usize) -> Load {
    Load {
        connections,
        pipeline: NonZeroUsize::new(pipeline).unwrap(),
    }
}

fn every_server(c: &mut Criterion) {
    group(c, "one_connection", load(1, 1), None);
    group(c, "many_connections", load(16, 1), None);
    group(c, "pipelined", load(4, 16), None);
    let wait = Work {
        kind: WorkKind::Wait,
        duration: Duration::from_millis(1),
    };
    group(c, "work_wait", load(16, 1), Some(wait));
}

criterion_group!(benches, every_server);
criterion_main!(benches);
