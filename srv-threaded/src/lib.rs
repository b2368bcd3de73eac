//! srv-threaded: a fixed pool of threads that all block in `accept()` on
//! one listener, or one thread per connection. Not written yet: this crate
//! has no server until its issue is done.
