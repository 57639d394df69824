//! Times `BatchSplitter` on a generated body of ~25 MB of API-like records, fed in 64 KiB
//! pieces (as an HTTP body arrives), against `split_records` on the whole body:
//! `cargo run --release -p lms_etl_parse --example stream_timing [-- MAX_BATCH_BYTES]`
use std::time::Instant;

use lms_etl_parse::{split_records, BatchSplitter};

const BODY_BYTES: usize = 25_000_000;
const PIECE: usize = 64 * 1024;

/// A record like the API's, with escapes and a non-ASCII character now and then.
fn record(i: usize) -> String {
    let user = format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (kind, correct) = match i % 3 {
        0 => ("run", "null"),
        1 => ("submit", "1"),
        _ => ("submit", "0"),
    };
    let note = if i % 7 == 0 { "\\\"caf\u{e9}\\\"" } else { "" };
    format!(
        r#"{{"lti_user_id": "{user}", "passback_params": "{{'oauth_consumer_key': '{note}', 'lis_result_sourcedid': 'course-v1:SkillFactory+DST-3.0+28FEB2021:lms.skillfactory.ru-ca3ecf8e5f284c329eb7bd529e1a9f7e:{user}', 'lis_outcome_service_url': 'https://lms.skillfactory.ru/courses/course-v1:SkillFactory+DST-3.0+28FEB2021/xblock/block-v1:SkillFactory+DST-3.0+28FEB2021+type@lti+block@ca3ecf8e5f284c329eb7bd529e1a9f7e/handler_noauth/grade_handler'}}", "is_correct": {correct}, "attempt_type": "{kind}", "created_at": "2026-11-24 10:11:{:02}.{:06}"}}"#,
        i % 60,
        i % 1_000_000
    )
}

fn main() {
    let max_batch_bytes: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("MAX_BATCH_BYTES: a number of bytes"))
        .unwrap_or(4 << 20);
    let mut body = String::from("[");
    let mut count = 0;
    while body.len() < BODY_BYTES {
        if count > 0 {
            body.push_str(",\n");
        }
        body.push_str(&record(count));
        count += 1;
    }
    body.push(']');
    let mb = body.len() as f64 / 1e6;

    for _ in 0..5 {
        let t = Instant::now();
        let mut splitter = BatchSplitter::new(max_batch_bytes);
        let (mut batches, mut records) = (0, 0);
        for piece in body.as_bytes().chunks(PIECE) {
            for batch in splitter.push(piece).expect("a JSON array") {
                batches += 1;
                records += batch.records;
            }
        }
        if let Some(last) = splitter.finish().expect("a complete array") {
            batches += 1;
            records += last.records;
        }
        let t_stream = t.elapsed();
        assert_eq!(records, count);

        let t = Instant::now();
        let whole = split_records(&body).expect("a JSON array").len();
        let t_whole = t.elapsed();
        assert_eq!(whole, count);
        println!(
            "{mb:.1} MB, {count} records: BatchSplitter {:?} ({:.0} MB/s, {batches} batches of <= {max_batch_bytes} bytes), split_records {:?} ({:.0} MB/s)",
            t_stream,
            mb / t_stream.as_secs_f64(),
            t_whole,
            mb / t_whole.as_secs_f64()
        );
    }
}
