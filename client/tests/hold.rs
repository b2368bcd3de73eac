//! `client hold` against real servers over real sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use common::{client, fake_server, json, num, target};
use zen_utils::protocol::SERVER_BUSY;
use zen_utils::testkit::TestServer;
use zen_utils::Config;

#[test]
fn srv_single_closes_every_idle_connection_in_turn() {
    let config = Config {
        idle_timeout: Some(Duration::from_millis(100)),
        ..Config::default()
    };
    let server = TestServer::start(srv_single::serve, config);
    let (report, output) = json("hold", server.addr(), &["-c", "3", "-d", "3s"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "connections"), 3.0);
    assert_eq!(num(&report, "connected"), 3.0);
    // srv-single takes them one at a time, each after the one before was
    // closed for being idle.
    assert_eq!(num(&report, "idle_timeout.count"), 3.0, "{report}");
    assert_eq!(num(&report, "open"), 0.0);
    assert_eq!(num(&report, "busy"), 0.0);
    assert_eq!(num(&report, "closed"), 0.0);
    let after: Vec<f64> = ["after_min", "after_median", "after_max"]
        .iter()
        .map(|key| num(&report, &format!("idle_timeout.{key}")))
        .collect();
    assert!(after[0] > 0.0 && after[0] <= after[1] && after[1] <= after[2]);
    assert_eq!(server.stop().errors, 3);
}

#[test]
fn connections_a_server_keeps_stay_open() {
    let server = TestServer::start(srv_single::serve, Config::default());
    let (report, output) = json("hold", server.addr(), &["-c", "5", "-d", "200ms"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "open"), 5.0);
    assert_eq!(num(&report, "connected"), 5.0);
    assert_eq!(num(&report, "idle_timeout.count"), 0.0);
    assert_eq!(num(&report, "idle_timeout.after_max"), 0.0);
}

#[test]
fn a_full_server_is_reported_busy() {
    // The first connection is kept; every later one is turned away, as a
    // server at its --max-conns does.
    let addr = fake_server(|mut stream, n| {
        if n == 0 {
            let _ = stream.read(&mut [0; 16]);
        } else {
            let _ = stream.write_all(SERVER_BUSY);
        }
    });
    let (report, output) = json("hold", addr, &["-c", "4", "-d", "1s"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "open"), 1.0, "{report}");
    assert_eq!(num(&report, "busy"), 3.0, "{report}");
    assert_eq!(num(&report, "closed"), 0.0);
}

#[test]
fn a_close_without_a_message_is_closed() {
    let addr = fake_server(|stream, _| drop(stream));
    let (report, output) = json("hold", addr, &["-c", "3", "-d", "1s"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "closed"), 3.0, "{report}");
    assert_eq!(num(&report, "open"), 0.0);
}

#[test]
fn prints_a_readable_report() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepted and kept until the test ends.
    thread::spawn(move || {
        let _kept: Vec<_> = listener.incoming().take(2).collect();
        thread::sleep(Duration::from_secs(30));
    });
    let mut args = vec!["hold".to_owned()];
    args.extend(target(addr));
    args.extend(["-c", "2", "-d", "100ms"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = client(&args);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    for line in [
        "connections     2 held idle for 0.10s\n",
        "connected       2\n",
        "open at end     2 ",
        "server busy     0\n",
        "idle timeout    0\n",
        "connect failed  0 ",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
}

#[test]
fn nothing_to_connect_to_is_one_line_and_a_failure() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut args = vec!["hold".to_owned()];
    args.extend(target(addr));
    args.extend(["-c", "2", "-d", "1s"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = client(&args);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("client: cannot connect to {addr}: ")));
}

#[test]
fn conns_and_duration_are_required() {
    for args in [
        &["hold"][..],
        &["hold", "-c", "3"],
        &["hold", "-d", "1s"],
        &["hold", "-c", "0", "-d", "1s"],
    ] {
        let output = client(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_server_that_floods_does_not_hold_the_hold_past_its_end() {
    // Two connections flooded with bytes for ever: the hold still ends
    // after its duration and reports both open (neither was closed).
    let addr = fake_server(|mut stream, _| {
        let dots = [b'.'; 64 * 1024];
        while stream.write_all(&dots).is_ok() {}
    });
    let (report, output) = json("hold", addr, &["-c", "2", "-d", "300ms"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(num(&report, "connected"), 2.0);
    assert_eq!(num(&report, "open"), 2.0);
}

#[test]
fn impossible_numbers_are_refused_in_one_line() {
    let addr = fake_server(|_, _| {}).to_string();
    let (host, port) = addr.split_once(':').unwrap();
    for args in [
        &["-c", "10000000000", "-d", "1s"][..],
        &["-c", "1", "-d", "1s", "--timeout", "0"],
    ] {
        let mut all = vec!["hold", host, "-p", port];
        all.extend(args);
        let output = client(&all);
        assert!(!output.status.success(), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot open 10000000000 connections")
                || stderr.contains("must be more than 0"),
            "{args:?}: {stderr}"
        );
    }
}
