//! E-mail notifications (filled in by the report work).
