//! srv-async: tokio's single-threaded runtime, a task per connection. Not
//! written yet: this crate has no server until its issue is done.
