//! Sourcedids → small problem numbers, for aggregating many attempts per problem.
//!
//! A day holds ~190 000 distinct sourcedids but only a few hundred problems: each sourcedid
//! is `<problem part>:<learner: 32 hex>`, and the problem part repeats for every learner. So
//! the problem part is split once and remembered, and only the learner part is checked per
//! sourcedid. The answer is always the one [`split_sourcedid`] gives for the whole string
//! (a property test holds the two together).

use std::collections::HashMap;

// A fast hash of good quality: these maps are probed once per attempt aggregated (std's
// SipHash cost more than the rest of the lookup).
use foldhash::fast::FixedState;

use crate::sourcedid::{split_sourcedid, HEX_ID_LEN};

/// A problem: the course key and the LTI block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Problem {
    pub course_id: String,
    pub block_id: String,
}

/// Numbers problems in the order first seen (0, 1, 2, ...).
#[derive(Debug, Default)]
pub struct ProblemIndex {
    /// Problem part (the sourcedid before its last ':') → its problem, None if malformed.
    by_part: HashMap<Box<[u8]>, Option<u32>, FixedState>,
    by_problem: HashMap<Problem, u32, FixedState>,
    problems: Vec<Problem>,
}

/// A learner part that passes the parser, put after a problem part to check that alone.
const ANY_LEARNER: &str = "00000000000000000000000000000000";

/// ASCII hex digits, as `u8::is_ascii_hexdigit` says, by byte.
const IS_HEX: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_hexdigit();
        b += 1;
    }
    table
};

impl ProblemIndex {
    /// The number of the sourcedid's problem; None for a malformed sourcedid (exactly when
    /// [`split_sourcedid`] fails on it).
    pub fn problem_of(&mut self, sourcedid: &str) -> Option<u32> {
        self.problem_of_bytes(sourcedid.as_bytes())
    }

    /// [`Self::problem_of`] for raw text bytes (the database's): bytes that are not UTF-8 make
    /// no well-formed sourcedid. Called once per attempt aggregated, so it checks only the
    /// learner part and looks the problem part up; the full parse runs once per new part.
    pub fn problem_of_bytes(&mut self, sourcedid: &[u8]) -> Option<u32> {
        // A well-formed learner part is 32 hex digits, so it holds no ':' and the last ':'
        // ends the problem part.
        let colon = memchr::memrchr(b':', sourcedid)?;
        let (part, learner) = (&sourcedid[..colon], &sourcedid[colon + 1..]);
        // Branch-free over the 32 bytes, so the compiler can vectorise it.
        let hex = learner.len() == HEX_ID_LEN
            && learner
                .iter()
                .fold(true, |ok, &b| ok & IS_HEX[usize::from(b)]);
        if !hex {
            return None;
        }
        if let Some(known) = self.by_part.get(part) {
            return *known;
        }
        let whole = std::str::from_utf8(part)
            .ok()
            .map(|part| format!("{part}:{ANY_LEARNER}"));
        let problem = whole
            .as_deref()
            .and_then(|w| split_sourcedid(w).ok())
            .map(|s| Problem {
                course_id: s.course_id.to_owned(),
                block_id: s.block_id.to_owned(),
            });
        let number = problem.map(|p| self.number(p));
        self.by_part.insert(part.into(), number);
        number
    }

    /// The number of the problem (course_id, block_id), numbering it if new.
    pub fn number_of(&mut self, course_id: &str, block_id: &str) -> u32 {
        // Few problems, many lookups: allocate only for a new one.
        let probe = Problem {
            course_id: course_id.to_owned(),
            block_id: block_id.to_owned(),
        };
        self.number(probe)
    }

    fn number(&mut self, problem: Problem) -> u32 {
        if let Some(&n) = self.by_problem.get(&problem) {
            return n;
        }
        // u32::MAX stays free: callers may use it for "no problem".
        let n = u32::try_from(self.problems.len())
            .ok()
            .filter(|&n| n != u32::MAX)
            .expect("fewer than 2^32 - 1 problems in one query");
        self.problems.push(problem.clone());
        self.by_problem.insert(problem, n);
        n
    }

    /// The problem numbered `n`.
    pub fn problem(&self, n: u32) -> &Problem {
        &self.problems[n as usize]
    }

    /// How many problems are numbered.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REAL: &str = "course-v1:SkillFactory+DST-3.0+28FEB2021:lms.skillfactory.ru-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52";

    #[test]
    fn learners_of_one_block_share_its_number() {
        let mut index = ProblemIndex::default();
        let other_learner = REAL.replace("3f4a2c4b", "00000000");
        let other_block = REAL.replace("ca3ecf8e", "11111111");
        assert_eq!(index.problem_of(REAL), Some(0));
        assert_eq!(index.problem_of(&other_learner), Some(0));
        assert_eq!(index.problem_of(&other_block), Some(1));
        assert_eq!(
            index.problem(0).block_id,
            "ca3ecf8e5f284c329eb7bd529e1a9f7e"
        );
        assert_eq!(
            index.problem(1).course_id,
            "course-v1:SkillFactory+DST-3.0+28FEB2021"
        );
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn a_bad_learner_part_is_malformed_even_on_a_known_block() {
        let mut index = ProblemIndex::default();
        assert!(index.problem_of(REAL).is_some());
        assert_eq!(index.problem_of(&REAL[..REAL.len() - 1]), None);
        assert_eq!(index.problem_of(&format!("{REAL}:x")), None);
        assert_eq!(index.problem_of("no colon"), None);
    }

    fn sourcedid_like() -> impl Strategy<Value = String> {
        let hex = "[0-9a-fA-F]{30,33}";
        let part = "[A-Za-z0-9.+:-]{0,6}";
        (part, part, part, "[a-z.-]{0,5}", hex, hex, any::<bool>()).prop_map(
            |(org, course, run, host, block, user, junk)| {
                let s = format!("course-v1:{org}+{course}+{run}:{host}-{block}:{user}");
                if junk {
                    s.replacen('+', ":", 1)
                } else {
                    s
                }
            },
        )
    }

    proptest! {
        // The shortcut answers as the full parser does, in any order of arrival.
        #[test]
        fn agrees_with_split_sourcedid(inputs in proptest::collection::vec(
            prop_oneof![sourcedid_like(), any::<String>()], 1..40)) {
            let mut index = ProblemIndex::default();
            for input in &inputs {
                let ours = index.problem_of(input).map(|n| index.problem(n).clone());
                let parser = split_sourcedid(input).ok().map(|s| Problem {
                    course_id: s.course_id.to_owned(),
                    block_id: s.block_id.to_owned(),
                });
                prop_assert_eq!(ours, parser, "{}", input);
            }
        }

        // Raw bytes: not UTF-8 is malformed; otherwise as the parser says.
        #[test]
        fn bytes_agree_with_split_sourcedid(inputs in proptest::collection::vec(
            prop_oneof![
                sourcedid_like().prop_map(String::into_bytes),
                sourcedid_like().prop_map(|s| { let mut b = s.into_bytes(); b[12] = 0xff; b }),
                any::<Vec<u8>>(),
            ], 1..40)) {
            let mut index = ProblemIndex::default();
            for input in &inputs {
                let ours = index.problem_of_bytes(input).map(|n| index.problem(n).clone());
                let parser = std::str::from_utf8(input).ok()
                    .and_then(|s| split_sourcedid(s).ok())
                    .map(|s| Problem {
                        course_id: s.course_id.to_owned(),
                        block_id: s.block_id.to_owned(),
                    });
                prop_assert_eq!(ours, parser, "{:?}", input);
            }
        }
    }
}
