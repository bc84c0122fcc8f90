//! `bitsearch merge`: the shard tables of one sensitivity run joined into one table.

use crate::cli::printer::Printer;
use crate::cli::{MergeArgs, paths};
use bitsearch_records::{SensitivityTable, merge};
use std::path::PathBuf;

pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    paths::keep_apart(&[("--out", &args.out)], args.tables.iter().map(PathBuf::as_path))?;
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
