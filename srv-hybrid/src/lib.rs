//! srv-hybrid: async on many threads, work-stealing or one runtime per
//! core. Not written yet: this crate has no server until its issue is done.
