//! Delta debugging (Zeller's ddmin): the smallest sublist of a list that still fails,
//! found by trying to drop chunks of ever finer granularity.
//!
//! The test is the caller's: it runs a candidate and says whether it still fails, and
//! which of the candidate's items the failing run actually used (a run that fails earlier
//! never reaches the later ones), so the list can shrink by more than the chunk dropped.
//! This module owns only the search; it never runs anything itself, and it stops when the
//! test says the budget is spent.

/// What the test made of one candidate.
pub enum Verdict<T> {
    /// It still fails; these of its items were used (a subset of the candidate, in order).
    Fails(Vec<T>),
    /// It passes, or fails another way.
    Passes,
    /// No more candidate runs are allowed: the search ends with what it has.
    OutOfBudget,
}

/// Reduces `items` (which fail) to a sublist that fails, keeping items in order.
pub fn ddmin<T: Clone>(mut items: Vec<T>, mut test: impl FnMut(&[T]) -> Verdict<T>) -> Vec<T> {
    let mut granularity = 2usize;
    while !items.is_empty() {
        let chunk_len = items.len().div_ceil(granularity.min(items.len()));
        let chunks: Vec<std::ops::Range<usize>> = (0..items.len())
            .step_by(chunk_len)
            .map(|start| start..(start + chunk_len).min(items.len()))
            .collect();
        // Complements first: dropping one chunk at a time is the step that usually pays.
        let complements = chunks.iter().map(|chunk| {
            items[..chunk.start]
                .iter()
                .chain(&items[chunk.end..])
                .cloned()
                .collect::<Vec<T>>()
        });
        match first_failing(complements, &mut test) {
            Step::Reduced(used) => {
                items = used;
                granularity = granularity.saturating_sub(1).max(2);
                continue;
            }
            Step::OutOfBudget => return items,
            Step::NoneFailed => {}
        }
        // With two chunks, each complement is the other chunk: subsets add nothing.
        if chunks.len() > 2 {
            let subsets = chunks.iter().map(|chunk| items[chunk.clone()].to_vec());
            match first_failing(subsets, &mut test) {
                Step::Reduced(used) => {
                    items = used;
                    granularity = 2;
                    continue;
                }
                Step::OutOfBudget => return items,
                Step::NoneFailed => {}
            }
        }
        if granularity >= items.len() {
            break;
        }
        granularity = (granularity * 2).min(items.len());
    }
    items
}

/// What trying one family of candidates came to.
enum Step<T> {
    /// A candidate failed; these of its items were used.
    Reduced(Vec<T>),
    NoneFailed,
    OutOfBudget,
}

/// Tests `candidates` in order until one fails.
fn first_failing<T>(
    candidates: impl Iterator<Item = Vec<T>>,
    test: &mut impl FnMut(&[T]) -> Verdict<T>,
) -> Step<T> {
    for candidate in candidates {
        match test(&candidate) {
            Verdict::Fails(used) => return Step::Reduced(used),
            Verdict::Passes => {}
            Verdict::OutOfBudget => return Step::OutOfBudget,
        }
    }
    Step::NoneFailed
}

#[cfg(test)]
mod tests {
    //! ddmin finds a minimal failing sublist, uses what the test reports as used, and
    //! stops when the budget is spent.
    use super::*;

    #[test]
    fn finds_the_items_that_matter() {
        let items: Vec<u32> = (0..100).collect();
        let mut runs = 0;
        let found = ddmin(items, |candidate| {
            runs += 1;
            if candidate.contains(&17) && candidate.contains(&83) {
                Verdict::Fails(candidate.to_vec())
            } else {
                Verdict::Passes
            }
        });
        assert_eq!(found, vec![17, 83]);
        assert!(runs < 100, "{runs} runs");
    }

    #[test]
    fn a_failure_that_uses_fewer_items_shrinks_the_list_at_once() {
        let items: Vec<u32> = (0..64).collect();
        let mut runs = 0;
        let found = ddmin(items, |candidate| {
            runs += 1;
            if candidate.contains(&5) {
                // The run fails at item 5 and never reaches the later ones.
                Verdict::Fails(
                    candidate
                        .iter()
                        .copied()
                        .filter(|item| *item <= 5)
                        .collect(),
                )
            } else {
                Verdict::Passes
            }
        });
        assert_eq!(found, vec![5]);
        assert!(runs <= 12, "{runs} runs");
    }

    #[test]
    fn stops_when_the_budget_is_spent() {
        let items: Vec<u32> = (0..100).collect();
        let mut runs = 0;
        let found = ddmin(items, |candidate| {
            runs += 1;
            if runs > 3 {
                return Verdict::OutOfBudget;
            }
            if candidate.contains(&42) {
                Verdict::Fails(candidate.to_vec())
            } else {
                Verdict::Passes
            }
        });
        assert_eq!(runs, 4);
        assert!(found.contains(&42));
        assert!(found.len() < 100);
    }
}
