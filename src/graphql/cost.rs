//! What a list field costs in an operation's complexity: its selection's cost times the
//! number of items it may return, so that nested lists multiply as their responses do.
//!
//! A list with a `first` argument is counted at `first`. A list without one is counted at
//! a typical length, declared here; the lists whose length the input already bounds (tags
//! and attributes, at most 200 each) are leaves or nearly so, and the response-size budget
//! (`ROSTER_MAX_RESPONSE`) cuts off whatever outgrows its estimate.

/// Approvers of one user, typically: a manager, a higher manager, one or two who only see.
pub const APPROVERS: usize = 5;
/// Learning tracks assigned to one user, or defined for a tenant.
pub const LEARNING_TRACKS: usize = 10;
/// Attributes of one user.
pub const ATTRIBUTES: usize = 10;
/// Tags of one user.
pub const TAGS: usize = 10;

/// No field is counted at more than this, so that sums over the fields of a document (at
/// most `ROSTER_MAX_COMPLEXITY` of them, checked before) never overflow.
const CEILING: usize = u32::MAX as usize;

/// A page of `first` items; an explicit `first: null` is a page of the field's `default`,
/// as its resolver reads it.
pub fn page(first: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let items = usize::try_from(first.unwrap_or(default)).unwrap_or(0);
    list(items, child_complexity)
}

/// A list of `items` items, each costing `child_complexity`.
pub fn list(items: usize, child_complexity: usize) -> usize {
    items
        .saturating_mul(child_complexity.max(1))
        .saturating_add(1)
        .min(CEILING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_costs_its_items() {
        assert_eq!(page(Some(100), 50, 3), 301);
        assert_eq!(page(None, 50, 3), 151);
        assert_eq!(page(Some(0), 50, 3), 1);
        assert_eq!(page(Some(-5), 50, 3), 1);
    }

    #[test]
    fn nested_lists_multiply_without_overflowing() {
        let mut cost = 1;
        for _ in 0..20 {
            cost = page(Some(500), 50, cost);
        }
        assert_eq!(cost, CEILING);
        assert!(CEILING.checked_mul(1 << 20).is_some());
    }
}
