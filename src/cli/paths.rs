//! Output paths checked against a command's inputs before anything runs: no output may be an
//! input, lie inside one (a model folder) or contain one (a folder `--overwrite` would
//! replace). Paths are compared resolved (absolute, symbolic links followed as far as they
//! exist), so `./m.onnx`, `m.onnx` and a link to it are the same file.

use anyhow::bail;
use std::path::{Path, PathBuf};

/// `path` absolute, resolved as far as it exists, the rest (an output not written yet) appended.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |path, name| path.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Refuses, naming both paths, any of `outputs` (with the flag that gave it) that is one of
/// `inputs`, lies inside one or contains one.
pub fn keep_apart<'a>(outputs: &[(&str, &Path)], inputs: impl IntoIterator<Item = &'a Path>) -> anyhow::Result<()> {
    let inputs: Vec<&Path> = inputs.into_iter().collect();
    for &(flag, output) in outputs {
        let out = resolved(output);
        for &input in &inputs {
            let read = resolved(input);
            let how = if out == read {
                "is"
            } else if out.starts_with(&read) {
                "lies inside"
            } else if read.starts_with(&out) {
                "contains"
            } else {
                continue;
            };
            bail!(
                "{flag} {}: the output {how} the input {}, which writing it would destroy; write elsewhere",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_that_are_in_or_around_an_input_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"x").unwrap();
        let folder = dir.path().join("q");
        std::fs::create_dir(&folder).unwrap();
        let refused = |out: &Path, input: &Path| keep_apart(&[("--out", out)], [input]).unwrap_err().to_string();
        assert!(refused(&model, &model).contains("the output is the input"));
        assert!(refused(&dir.path().join("./m.onnx"), &model).contains("is the input"));
        assert!(refused(&folder.join("new.yaml"), &folder).contains("lies inside"));
        assert!(refused(dir.path(), &model).contains("contains"));
        // Siblings and names that merely share a prefix are apart.
        keep_apart(&[("--out", &dir.path().join("m.onnx.parquet"))], [model.as_path()]).unwrap();
        keep_apart(&[("--out", &dir.path().join("q2"))], [folder.as_path()]).unwrap();
    }
}
