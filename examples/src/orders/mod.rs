//! The order domain (in progress).
