//! `bitsearch merge`: the shard tables of one sensitivity run joined into one table.

use crate::cli::MergeArgs;
use crate::cli::printer::Printer;
use bitsearch_records::{SensitivityTable, merge};

pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    let tables = args
        .tables
        .iter()
        .map(|path| Ok((path.clone(), SensitivityTable::read(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge(tables)?;
    merged.write(&args.out)?;
    let mut out = Printer::stdout();
    out.line(format_args!(
        "{}: {} of {} probes from {} tables",
        args.out.display(),
        merged.rows.len(),
        merged.meta.probes_total,
        args.tables.len()
    ))?;
    Ok(())
}
