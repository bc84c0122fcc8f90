//! The generation settings every generating stage shares and the sensitivity table records: the
//! workload spec and the names it is written with. Plain data, so records can hold it typed.

mod kinds;
mod spec;

pub use kinds::{Device, Pairing, Prediction, SamplerKind, TimeKind};
pub use spec::{SpecError, WorkloadSpec};

/// The prompts of a prompts file's `text`: one per line, trimmed, blank lines and lines starting
/// with `#` skipped; an error when none is left.
pub fn prompt_lines(text: &str) -> Result<Vec<String>, &'static str> {
    let prompts: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
    if prompts.is_empty() { Err("no prompts (one per line)") } else { Ok(prompts) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prompts_file_skips_blank_and_comment_lines() {
        let text = "# held out\n a red circle \n\n\ta blue square\n";
        assert_eq!(super::prompt_lines(text).unwrap(), ["a red circle", "a blue square"]);
        assert_eq!(super::prompt_lines("# only a comment\n\n"), Err("no prompts (one per line)"));
    }
}
