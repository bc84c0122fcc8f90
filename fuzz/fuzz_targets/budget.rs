//! Budgets and sweeps as `solve` takes them from flags and `serve` from any client's request:
//! a parsed sweep makes exactly its points, each a positive finite amount.
#![no_main]

use bitsearch_records::budget::MAX_SWEEP_POINTS;
use bitsearch_records::{Budget, Sweep};
use libfuzzer_sys::fuzz_target;

fn assert_positive(text: &str, budget: Budget) {
    let v = budget.amount.number();
    assert!(v.is_finite() && v > 0.0, "{text}: {v}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(budget) = text.parse::<Budget>() {
        assert_positive(text, budget);
    }
    if let Ok(sweep) = text.parse::<Sweep>() {
        assert!((2..=MAX_SWEEP_POINTS).contains(&sweep.points), "{text}");
        let budgets = sweep.budgets();
        assert_eq!(budgets.len(), sweep.points, "{text}");
        for budget in budgets {
            assert_positive(text, budget);
        }
    }
});
