//! Properties of `split_sourcedid`: every well-formed sourcedid splits into the parts it was
//! built from and prints back to itself; any other input is an error at a char boundary
//! inside it, never a panic.

use lms_etl_parse::split_sourcedid;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    // Anything but the two delimiters, non-ASCII and spaces included.
    "[^+:]{1,12}"
}

fn hex32() -> impl Strategy<Value = String> {
    "[0-9a-fA-F]{32}"
}

proptest! {
    #[test]
    fn a_built_sourcedid_splits_into_its_parts(
        org in name(), course in name(), run in name(),
        host in "[^+:]{0,8}[^+:-]", block in hex32(), user in hex32(),
    ) {
        let text = format!("course-v1:{org}+{course}+{run}:{host}-{block}:{user}");
        let s = split_sourcedid(&text).unwrap();
        prop_assert_eq!(s.org, org.as_str());
        prop_assert_eq!(s.course, course.as_str());
        prop_assert_eq!(s.course_run, run.as_str());
        prop_assert_eq!(s.host, host.as_str());
        prop_assert_eq!(s.block_id, block.as_str());
        prop_assert_eq!(s.user_id, user.as_str());
        prop_assert_eq!(s.course_id, format!("course-v1:{org}+{course}+{run}"));
        prop_assert_eq!(s.to_string(), text);
    }

    #[test]
    fn any_input_splits_or_fails_at_a_char_boundary(input in any::<String>()) {
        if let Err(e) = split_sourcedid(&input) {
            prop_assert!(e.position <= input.len());
            prop_assert!(input.is_char_boundary(e.position));
        }
    }

    #[test]
    fn a_cut_sourcedid_never_splits(
        block in hex32(), user in hex32(), cut in 0usize..80,
    ) {
        let text = format!("course-v1:Org+C-1.0+2026:lms.example-{block}:{user}");
        let cut = cut.min(text.len() - 1);
        let err = split_sourcedid(&text[..cut]).unwrap_err();
        prop_assert!(err.position <= cut);
    }
}
