//! Injected trouble: the broken records a share of the data set is served as (fixed per
//! record), and the per-request failures (5xx, 429, dropped or truncated bodies).

use std::sync::atomic::{AtomicU64, Ordering};

use super::generator::{hash2, unit, SplitMix64};

/// How a malformed record is broken; each kind makes `lms_etl_parse` reject the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformation {
    /// `passback_params` stops inside a string literal.
    UnterminatedPassback,
    /// `passback_params` lacks the `:` after its first key.
    PassbackMissingColon,
    /// `attempt_type` is `"peek"`.
    UnknownAttemptType,
    /// `created_at` is `"2026-13-45 99:61:00"`.
    ImpossibleCreatedAt,
    /// `created_at` is `"yesterday"`.
    WordCreatedAt,
    /// The record has no `created_at` key.
    MissingCreatedAt,
    /// `lti_user_id` is `null`.
    NullUserId,
}

impl Malformation {
    /// The five kinds of damage are equally likely; within a kind, the variants share.
    /// Reads only the low bits, which the malformed/valid decision does not use.
    pub fn pick(bits: u64) -> Self {
        let variant = (bits >> 16) & 1 == 0;
        match (bits & 0xffff) % 5 {
            0 if variant => Malformation::UnterminatedPassback,
            0 => Malformation::PassbackMissingColon,
            1 => Malformation::UnknownAttemptType,
            2 if variant => Malformation::ImpossibleCreatedAt,
            2 => Malformation::WordCreatedAt,
            3 => Malformation::MissingCreatedAt,
            _ => Malformation::NullUserId,
        }
    }
}

/// An error answer a request gets instead of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// `--fail-first`: 503 while the burst lasts.
    Burst,
    ServerError(u16),
    TooManyRequests,
}

/// Damage to the body of an otherwise good answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// Stream part of the body, then abort the connection.
    DropConnection,
    /// Send a 200 whose body is cut short.
    Truncate,
}

/// Fault shares and counters from the command line.
#[derive(Debug)]
pub struct FaultPlan {
    pub fail_first: u64,
    pub fail_5xx: f64,
    pub fail_429: f64,
    pub drop_connections: f64,
    pub truncate_bodies: f64,
    seed: u64,
    requests: AtomicU64,
}

const SALT_REQUEST: u64 = 0x7265_7175_6573_7404;

impl FaultPlan {
    pub fn new(
        seed: u64,
        fail_first: u64,
        fail_5xx: f64,
        fail_429: f64,
        drop_connections: f64,
        truncate_bodies: f64,
    ) -> Self {
        FaultPlan {
            fail_first,
            fail_5xx,
            fail_429,
            drop_connections,
            truncate_bodies,
            seed,
            requests: AtomicU64::new(0),
        }
    }

    /// Numbers the request and draws its fate. Counter-based, so one client sending its
    /// requests one by one sees the same faults on every run.
    pub fn next_request(&self) -> (u64, RequestDraw) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        (
            n,
            RequestDraw(SplitMix64::new(hash2(self.seed ^ SALT_REQUEST, n))),
        )
    }

    /// The error answer for request `n`, if any: the burst, then an overloaded backend, then
    /// rate limiting, all before the credentials are looked at, as a gateway would.
    pub fn before_auth(&self, n: u64, draw: &mut RequestDraw) -> Option<RequestFault> {
        const CODES: [u16; 3] = [500, 502, 503];
        if n < self.fail_first {
            return Some(RequestFault::Burst);
        }
        let (u_5xx, code, u_429) = (draw.unit(), draw.0.below(3), draw.unit());
        if u_5xx < self.fail_5xx {
            return Some(RequestFault::ServerError(CODES[code as usize]));
        }
        (u_429 < self.fail_429).then_some(RequestFault::TooManyRequests)
    }

    /// The fault for the body of an otherwise good answer.
    pub fn on_body(&self, draw: &mut RequestDraw) -> Option<BodyFault> {
        let (u_drop, u_truncate) = (draw.unit(), draw.unit());
        if u_drop < self.drop_connections {
            Some(BodyFault::DropConnection)
        } else if u_truncate < self.truncate_bodies {
            Some(BodyFault::Truncate)
        } else {
            None
        }
    }
}

/// The random numbers of one request.
pub struct RequestDraw(SplitMix64);

impl RequestDraw {
    pub fn unit(&mut self) -> f64 {
        unit(self.0.next_u64())
    }

    /// Where to cut a body of `len` bytes: at least one byte goes out, at least one is kept
    /// back, so the result is never a complete JSON array.
    pub fn cut(&mut self, len: usize) -> usize {
        match len {
            0 | 1 => 0,
            _ => 1 + self.0.below(len as u64 - 1) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_malformation_kind_is_picked() {
        let mut seen: Vec<Malformation> = (0..200u64)
            .map(|i| Malformation::pick(hash2(1, i)))
            .collect();
        seen.sort_by_key(|m| *m as u8);
        seen.dedup();
        assert_eq!(seen.len(), 7);
    }

    #[test]
    fn the_first_requests_fail_as_a_burst_then_clear() {
        let plan = FaultPlan::new(1, 2, 0.0, 0.0, 0.0, 0.0);
        let fates: Vec<_> = (0..4)
            .map(|_| {
                let (n, mut draw) = plan.next_request();
                plan.before_auth(n, &mut draw)
            })
            .collect();
        assert_eq!(
            fates,
            [
                Some(RequestFault::Burst),
                Some(RequestFault::Burst),
                None,
                None
            ]
        );
    }

    #[test]
    fn full_shares_always_fault_and_zero_shares_never() {
        let always = FaultPlan::new(1, 0, 1.0, 0.0, 1.0, 0.0);
        let never = FaultPlan::new(1, 0, 0.0, 0.0, 0.0, 0.0);
        for _ in 0..100 {
            let (n, mut draw) = always.next_request();
            assert!(matches!(
                always.before_auth(n, &mut draw),
                Some(RequestFault::ServerError(500 | 502 | 503))
            ));
            assert_eq!(always.on_body(&mut draw), Some(BodyFault::DropConnection));
            let (n, mut draw) = never.next_request();
            assert_eq!(never.before_auth(n, &mut draw), None);
            assert_eq!(never.on_body(&mut draw), None);
        }
    }

    #[test]
    fn a_cut_keeps_the_body_short_but_not_empty() {
        let (_, mut draw) = FaultPlan::new(1, 0, 0.0, 0.0, 0.0, 0.0).next_request();
        assert_eq!(draw.cut(2), 1);
        for _ in 0..100 {
            let at = draw.cut(10);
            assert!((1..10).contains(&at));
        }
    }
}
