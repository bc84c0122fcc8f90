//! The solver each kind of plan names: what plans and quantized folders record, and how a
//! kind is read back from them.

use crate::PointKind;

impl PointKind {
    /// The solver name plans and manifests record for a plan of this kind.
    pub fn solver(self) -> &'static str {
        match self {
            PointKind::Ilp => "HiGHS (good_lp)",
            PointKind::Greedy => "greedy (least loss per unit saved)",
            PointKind::Uniform => "uniform bit-width",
        }
    }

    /// The kind of a recorded solver name; None for a name no solver writes.
    pub fn of_solver(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.solver() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solver_names_read_back() {
        for kind in PointKind::ALL {
            assert_eq!(PointKind::of_solver(kind.solver()), Some(kind));
        }
        assert_eq!(PointKind::of_solver("CPLEX"), None);
    }
}
