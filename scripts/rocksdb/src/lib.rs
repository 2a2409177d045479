//! Empty: this package exists to build librocksdb-sys's static library.
