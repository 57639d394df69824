//! Times `parse_chunk` on a saved API answer: `cargo run --release -p lms_etl_parse --example parse_chunk_timing -- chunk.json`
fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: parse_chunk_timing <chunk.json>");
    let text = std::fs::read_to_string(path).expect("readable file");
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let split = lms_etl_parse::split_records(&text)
            .expect("a JSON array")
            .len();
        let t_split = t.elapsed();
        let t = std::time::Instant::now();
        let records = lms_etl_parse::parse_chunk(&text).expect("a JSON array");
        let ok = records.iter().filter(|r| r.is_ok()).count();
        println!(
            "{} bytes, {split} records: split {:?}, parse_chunk {:?} ({ok} valid)",
            text.len(),
            t_split,
            t.elapsed()
        );
    }
}
