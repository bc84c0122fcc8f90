//! `bitsearch report`: the HTML report, and its path.

use crate::cli::ReportArgs;
use crate::cli::printer::Printer;
use bitsearch_reports::{ReportInputs, write_report};

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let inputs = ReportInputs {
        sensitivity: args.sensitivity.clone(),
        plans: args.plans.clone(),
        frontier: args.frontier.clone(),
        samples: args.samples.clone(),
        evals: args.evals.clone(),
        out: args.out.clone(),
    };
    let index = write_report(&inputs)?;
    let mut out = Printer::stdout();
    out.line(format_args!("{}", index.display()))?;
    Ok(())
}
