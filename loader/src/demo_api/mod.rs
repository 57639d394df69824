//! A stand-in for the LMS statistics API (filled in by the demo API work).
